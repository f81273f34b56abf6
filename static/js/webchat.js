/* OmniRouter web chat widget. Embed on any page with one tag:
 *
 *   <script src="https://support.example.com/static/js/webchat.js" data-account="KEY" defer></script>
 *
 * It talks to /ws/webchat/KEY/ on the server the script came from. The visitor token that makes
 * a returning visitor the same customer is kept in localStorage. No dependencies, no build step.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || window.OmniWebchat) {
    return;
  }
  var accountKey = script.getAttribute("data-account") || "";
  var server = new URL(script.src, window.location.href);
  var socketUrl =
    (server.protocol === "https:" ? "wss://" : "ws://") +
    server.host +
    "/ws/webchat/" +
    encodeURIComponent(accountKey) +
    "/";
  var storageKey = "omnirouter.webchat." + accountKey + ".visitor";

  var STRINGS = {
    en: {
      open: "Chat with us",
      close: "Close chat",
      title: "Chat with us",
      placeholder: "Type a message",
      label: "Your message",
      send: "Send",
      end: "End chat",
      typing: "The agent is typing…",
      offline: "Reconnecting…",
      refused: "Chat is not available on this page.",
      ended: "This chat has ended. Write again any time.",
      you: "You",
    },
    ja: {
      open: "チャットで相談",
      close: "チャットを閉じる",
      title: "チャットで相談",
      placeholder: "メッセージを入力",
      label: "メッセージ",
      send: "送信",
      end: "チャットを終了",
      typing: "担当者が入力中…",
      offline: "再接続しています…",
      refused: "このページではチャットをご利用いただけません。",
      ended: "チャットは終了しました。いつでもまたご連絡ください。",
      you: "あなた",
    },
  };
  var lang = (document.documentElement.lang || navigator.language || "en").slice(0, 2);
  var t = STRINGS[lang] || STRINGS.en;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  // A stylesheet from the server, not an inline <style>: pages with a Content-Security-Policy
  // then only need to allow this server in style-src.
  document.head.appendChild(
    el("link", { rel: "stylesheet", href: new URL("../css/webchat.css", script.src).href })
  );

  var launcher = el("button", {
    type: "button",
    class: "omni-wc-launcher",
    "aria-expanded": "false",
    "aria-controls": "omni-wc-panel",
  }, t.open);
  var panel = el("section", {
    id: "omni-wc-panel",
    class: "omni-wc",
    role: "dialog",
    "aria-label": t.title,
    hidden: "",
  });
  var head = el("div", { class: "omni-wc-head" });
  head.appendChild(el("h2", {}, t.title));
  var endButton = el("button", { type: "button", class: "omni-wc-end" }, t.end);
  head.appendChild(endButton);
  var log = el("ol", { class: "omni-wc-log", role: "log", "aria-live": "polite" });
  var choices = el("div", { class: "omni-wc-choices", "aria-label": t.title });
  var status = el("p", { class: "omni-wc-status", "aria-live": "polite" });
  var form = el("form", { class: "omni-wc-form" });
  var label = el("label", { for: "omni-wc-input", class: "omni-wc-sr" }, t.label);
  var input = el("input", {
    id: "omni-wc-input",
    type: "text",
    autocomplete: "off",
    maxlength: "4000",
    placeholder: t.placeholder,
  });
  var send = el("button", { type: "submit" }, t.send);
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(choices);
  panel.appendChild(status);
  panel.appendChild(form);
  document.body.appendChild(panel);
  document.body.appendChild(launcher);

  var socket = null;
  var retryMs = 1000;
  var refused = false;
  var shown = {}; // message id -> element
  var pending = {}; // client id -> element
  var typingTimer = null;
  var lastTypingSent = 0;
  var sequence = 0;

  function visitorToken() {
    try {
      return window.localStorage.getItem(storageKey) || "";
    } catch (e) {
      return "";
    }
  }

  function forgetToken() {
    try {
      window.localStorage.removeItem(storageKey);
    } catch (e) {
      /* nothing kept */
    }
  }

  function keepToken(token) {
    try {
      window.localStorage.setItem(storageKey, token);
    } catch (e) {
      /* private mode: the visitor is new on each visit */
    }
  }

  function render(message) {
    if (message.id && shown[message.id]) {
      return shown[message.id];
    }
    var mine = message.direction === "in";
    var kind = mine ? "in" : message.author === "system" ? "system" : "out";
    var item = el("li", { class: "omni-wc-msg omni-wc-" + kind });
    if (kind !== "system") {
      item.appendChild(el("small", {}, mine ? t.you : message.author_name || ""));
    }
    item.appendChild(document.createTextNode(message.text));
    if (message.id) {
      item.setAttribute("data-id", String(message.id));
      shown[message.id] = item;
    }
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function showChoices(list) {
    choices.textContent = "";
    (list || []).forEach(function (labelText) {
      var button = el("button", { type: "button" }, labelText);
      button.addEventListener("click", function () {
        sendText(labelText);
      });
      choices.appendChild(button);
    });
  }

  function seen(ids) {
    if (ids.length && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "seen", ids: ids }));
    }
  }

  function onFrame(frame) {
    if (frame.type === "hello") {
      keepToken(frame.visitor);
      if (frame.account && STRINGS[frame.account.language]) {
        t = STRINGS[frame.account.language];
      }
      var unseen = [];
      (frame.messages || []).forEach(function (message) {
        render(message);
        if (message.direction === "out" && message.status === "sent") {
          unseen.push(message.id);
        }
      });
      var last = (frame.messages || []).slice(-1)[0];
      showChoices(last && last.direction === "out" ? last.choices : []);
      status.textContent = "";
      seen(unseen);
    } else if (frame.type === "ack" && frame.client_id) {
      var waiting = pending[frame.client_id];
      delete pending[frame.client_id];
      if (waiting) {
        waiting.classList.remove("omni-wc-pending");
        waiting.setAttribute("data-id", String(frame.message.id));
        shown[frame.message.id] = waiting;
      } else {
        render(frame.message);
      }
    } else if (frame.type === "message.new") {
      var message = frame.payload;
      if (message.direction === "in") {
        render(message);
        return;
      }
      clearTimeout(typingTimer);
      status.textContent = "";
      render(message);
      showChoices(message.choices);
      seen([message.id]);
    } else if (frame.type === "typing") {
      status.textContent = t.typing;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () {
        status.textContent = "";
      }, 4000);
    } else if (frame.type === "conversation.changed" && frame.payload.status === "ended") {
      showChoices([]);
    } else if (frame.type === "error") {
      status.textContent = frame.message;
    }
  }

  function connect() {
    var url = socketUrl;
    var token = visitorToken();
    if (token) {
      url += "?visitor=" + encodeURIComponent(token);
    }
    socket = new WebSocket(url);
    socket.addEventListener("open", function () {
      retryMs = 1000;
      Object.keys(pending).forEach(function (clientId) {
        var item = pending[clientId];
        socket.send(
          JSON.stringify({ type: "message", text: item.getAttribute("data-text"), client_id: clientId })
        );
      });
    });
    socket.addEventListener("message", function (event) {
      onFrame(JSON.parse(event.data));
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4401 && visitorToken()) {
        // the server did not issue the token we kept: start as a new visitor
        forgetToken();
        connect();
        return;
      }
      if (event.code === 4403 || event.code === 4404) {
        refused = true;
        status.textContent = t.refused;
        return;
      }
      status.textContent = t.offline;
      // Full jitter, as in livesocket.js (this widget runs on customers' sites, so it carries
      // its own copy): a restarted server is not met by every widget at the same instant.
      setTimeout(connect, Math.random() * retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  function sendText(text) {
    text = text.trim();
    if (!text || refused) {
      return;
    }
    sequence += 1;
    var clientId = Date.now().toString(36) + "-" + sequence;
    var item = render({ direction: "in", author: "customer", text: text });
    item.classList.add("omni-wc-pending");
    item.setAttribute("data-text", text);
    pending[clientId] = item;
    showChoices([]);
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", text: text, client_id: clientId }));
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendText(input.value);
    input.value = "";
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTypingSent > 2000 && socket && socket.readyState === WebSocket.OPEN) {
      lastTypingSent = now;
      socket.send(JSON.stringify({ type: "typing" }));
    }
  });
  endButton.addEventListener("click", function () {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "end" }));
    }
  });

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    launcher.textContent = open ? t.close : t.open;
    if (open) {
      if (!socket) {
        connect();
      }
      input.focus();
    }
  }

  launcher.addEventListener("click", function () {
    setOpen(panel.hidden);
  });

  window.OmniWebchat = {
    open: function () {
      setOpen(true);
    },
    close: function () {
      setOpen(false);
    },
  };
})();
