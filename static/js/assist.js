/* OmniRouter assistance in the agent console: beside each accepted item, what the center's own
 * history suggests (GET /api/work-items/<id>/prediction/ and /suggestions/):
 *
 * - the queue the model would pick, its confidence and the terms that weighed most;
 * - values read from the first messages (order number, e-mail, phone, product, language,
 *   category), each kept as read or corrected by the agent (stored as feedback);
 * - the most similar resolved items with how they were resolved: "Use" copies the resolution
 *   into the close note, "Not helpful" says so (both stored as feedback).
 *
 * With no usable model the box says "Suggestions unavailable" and why. It mounts itself on every
 * work panel (data-item-id), like conversation.js. No build step.
 */
(function () {
  const gettext = window.gettext || ((s) => s);
  const interpolate =
    window.interpolate || ((fmt, obj) => fmt.replace(/%\((\w+)\)s/g, (_, k) => String(obj[k])));
  const fmt = (text, values) => interpolate(text, values, true);

  const FIELD_LABELS = {
    order_number: () => gettext("Order number"),
    email: () => gettext("E-mail"),
    phone: () => gettext("Phone"),
    product: () => gettext("Product"),
    language: () => gettext("Language"),
    category: () => gettext("Category"),
  };

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(String(response.status));
    return response.json();
  }

  async function sendFeedback(itemId, body, status) {
    try {
      const response = await fetch(`/api/work-items/${itemId}/assist-feedback/`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body),
      });
      const data = await response.json().catch(() => ({}));
      status.textContent = response.ok ? gettext("Thanks: noted.") : data.detail || gettext("Not saved.");
      return response.ok;
    } catch (error) {
      status.textContent = gettext("Not saved: connection lost.");
      return false;
    }
  }

  function renderPrediction(box, itemId, prediction) {
    const status = el("p", { class: "assist-status muted", role: "status" });
    const queue = prediction.available && prediction.predictions && prediction.predictions.queue;
    if (queue) {
      const terms = queue.top_terms.map((t) => t[0]).join(", ");
      box.append(
        el("p", {
          class: "assist-queue",
          text: fmt(gettext("Suggested queue: %(queue)s (%(confidence)s %)"), {
            queue: queue.label,
            confidence: Math.round(queue.confidence * 100),
          }),
        }),
        terms ? el("p", { class: "assist-why muted", text: fmt(gettext("Because of: %(terms)s"), { terms }) }) : null,
      );
    }
    const found = Object.entries(prediction.prefill || {});
    if (found.length) {
      const list = el("dl", { class: "assist-prefill" });
      for (const [field, value] of found) {
        const label = (FIELD_LABELS[field] || (() => field))();
        const input = el("input", { type: "text", value: String(value), "aria-label": label, maxlength: "200" });
        const save = el("button", { type: "button", class: "secondary small", text: gettext("Keep") });
        save.addEventListener("click", () => {
          const corrected = input.value.trim();
          const body = {
            field,
            kind: corrected === String(value) ? "accepted" : "corrected",
            suggested_value: String(value),
            corrected_value: corrected === String(value) ? "" : corrected,
          };
          if (field === "category" && queue) body.prediction = queue.id;
          sendFeedback(itemId, body, status);
        });
        list.append(el("div", {}, el("dt", { text: label }), el("dd", {}, input, save)));
      }
      box.append(el("h4", { text: gettext("Read from the first messages") }), list);
    }
    box.append(status);
  }

  function renderSuggestions(box, panel, itemId, answer) {
    const status = el("p", { class: "assist-status muted", role: "status" });
    if (!answer.available) {
      box.append(
        el("p", { class: "assist-unavailable", text: gettext("Suggestions unavailable") }),
        el("p", { class: "muted", text: answer.reason || "" }),
      );
      return;
    }
    box.append(el("h4", { text: gettext("Similar resolved items") }));
    if (!answer.suggestions.length) {
      box.append(el("p", { class: "muted", text: gettext("No similar resolved item.") }));
      return;
    }
    const list = el("ol", { class: "assist-suggestions" });
    for (const s of answer.suggestions) {
      const use = el("button", { type: "button", class: "small", text: gettext("Use") });
      const unhelpful = el("button", { type: "button", class: "secondary small", text: gettext("Not helpful") });
      const base = { field: "suggestion", suggested_item: s.item_id, suggested_value: s.disposition };
      use.addEventListener("click", () => {
        const note = panel.querySelector(".close-form textarea");
        if (note && !note.value.trim()) note.value = s.resolution;
        sendFeedback(itemId, { ...base, kind: "used" }, status);
      });
      unhelpful.addEventListener("click", () => sendFeedback(itemId, { ...base, kind: "not_helpful" }, status));
      list.append(
        el(
          "li",
          { "data-suggested-item": String(s.item_id) },
          el("p", { class: "assist-subject", text: s.subject }),
          el("p", {
            class: "muted",
            text: fmt(gettext("%(queue)s · %(disposition)s · %(similarity)s % similar"), {
              queue: s.queue,
              disposition: s.disposition || "–",
              similarity: Math.round(s.similarity * 100),
            }),
          }),
          el("p", { class: "assist-resolution", text: s.resolution }),
          el("div", { class: "actions" }, use, unhelpful),
        ),
      );
    }
    box.append(list, status);
  }

  async function mountPanel(panel) {
    const itemId = panel.dataset.itemId;
    const box = el("section", { class: "assist-box", "aria-label": gettext("Suggestions") });
    box.append(el("h4", { class: "assist-title", text: gettext("Suggestions") }));
    const forms = panel.querySelector(".work-forms");
    (forms || panel.lastChild).before(box);
    try {
      const [prediction, suggestions] = await Promise.all([
        getJson(`/api/work-items/${itemId}/prediction/`),
        getJson(`/api/work-items/${itemId}/suggestions/`),
      ]);
      renderPrediction(box, itemId, prediction);
      renderSuggestions(box, panel, itemId, suggestions);
    } catch (error) {
      box.append(el("p", { class: "assist-unavailable", text: gettext("Suggestions unavailable") }));
    }
    box.dataset.ready = "true";
  }

  function scan(container) {
    for (const panel of container.querySelectorAll(".work-panel[data-item-id]")) {
      if (panel.dataset.assistMounted) continue;
      panel.dataset.assistMounted = "true";
      mountPanel(panel);
    }
  }

  const container = document.getElementById("work-panels");
  if (container) {
    new MutationObserver(() => scan(container)).observe(container, { childList: true });
    scan(container);
  }
})();
