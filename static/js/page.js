/* Behaviour every page shares, kept out of the HTML so the Content-Security-Policy can forbid
 * inline scripts: selects marked data-submit-on-change submit their form (the language menu). */
(function () {
  "use strict";
  document.querySelectorAll("select[data-submit-on-change]").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
})();
