/* OmniRouter conversation tab: the live transcript of a messaging work item in the agent console.
 *
 *   const view = OmniConversation.mount(element, { conversationId: 42, tab: tabElement });
 *   view.setActive(true);   // the tab is shown: its messages count as read
 *   view.destroy();
 *
 * On the console page it also mounts itself: every work panel whose item carries a
 * conversation_id (payload) gets a conversation view, and the panel's tab shows the unread count
 * (data-unread). One WebSocket (/ws/agent/conversations/) serves every mounted conversation;
 * state comes from GET /api/conversations/<id>/ on mount, on each reconnect and every
 * resyncSeconds of the page (console-config), so a lost event loses nothing. The socket itself is
 * livesocket.js. No build step.
 */
import { openLiveSocket } from "./livesocket.js";

(function () {
  const gettext = window.gettext || ((s) => s);
  const interpolate =
    window.interpolate || ((fmt, obj) => fmt.replace(/%\((\w+)\)s/g, (_, k) => String(obj[k])));
  const fmt = (text, values) => interpolate(text, values, true);

  const views = new Map(); // conversation id -> view
  let live = null;
  let refSeq = 0;
  const waiting = new Map(); // ref -> {resolve, reject}

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function pageResyncSeconds() {
    const node = document.getElementById("console-config");
    try {
      return node ? JSON.parse(node.textContent).resyncSeconds : undefined;
    } catch (error) {
      return undefined;
    }
  }

  function ensureSocket() {
    if (live) return;
    live = openLiveSocket("/ws/agent/conversations/", {
      resyncSeconds: pageResyncSeconds(),
      onMessage: onFrame,
      onClose: () => {
        for (const pending of waiting.values()) pending.reject({ message: gettext("Connection lost.") });
        waiting.clear();
        if (!views.size) {
          // Nothing to show: stay closed until a conversation is mounted again.
          live.close();
          live = null;
        }
      },
      resync: () => views.forEach((view) => view.reload()),
    });
  }

  function request(frame) {
    return new Promise((resolve, reject) => {
      refSeq += 1;
      if (!live || !live.send({ ...frame, ref: refSeq })) {
        reject({ message: gettext("Not connected; try again in a moment.") });
        return;
      }
      waiting.set(refSeq, { resolve, reject });
    });
  }

  function onFrame(frame) {
    if ((frame.type === "ack" || frame.type === "error") && waiting.has(frame.ref)) {
      const pending = waiting.get(frame.ref);
      waiting.delete(frame.ref);
      if (frame.type === "ack") pending.resolve(frame);
      else pending.reject(frame);
      return;
    }
    const payload = frame.payload || {};
    const view = views.get(payload.conversation_id || payload.id);
    if (!view) return;
    if (frame.type === "message.new") view.addMessage(payload.message, true);
    else if (frame.type === "message.status") view.setStatus(payload);
    else if (frame.type === "typing") view.showTyping();
    else if (frame.type === "conversation.changed") view.setConversation(payload);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  const STATUS_LABELS = {
    queued: () => gettext("Queued"),
    sent: () => gettext("Sent"),
    delivered: () => gettext("Delivered"),
    failed: () => gettext("Failed"),
    received: () => gettext("Received"),
  };

  function timeOf(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  class ConversationView {
    constructor(element, options) {
      this.id = Number(options.conversationId);
      this.tab = options.tab || null;
      this.root = element;
      this.active = options.active !== false;
      this.unread = 0;
      this.rows = new Map();
      this.typingTimer = null;
      this.lastTyping = 0;
      this.build();
      views.set(this.id, this);
      ensureSocket();
      this.reload();
    }

    build() {
      const uid = `conv-${this.id}`;
      this.root.classList.add("conv");
      this.root.dataset.conversationId = String(this.id);
      const main = el("div", { class: "conv-main" });
      main.append(el("h4", { id: `${uid}-h`, class: "visually-hidden" }, gettext("Conversation")));
      this.log = el("ol", {
        class: "conv-log transcript",
        role: "log",
        "aria-live": "polite",
        "aria-labelledby": `${uid}-h`,
      });
      this.typing = el("p", { class: "conv-typing", "aria-live": "polite" });
      this.quick = el("div", { class: "conv-quick", "aria-label": gettext("Quick replies") });
      const form = el("form", { class: "conv-form" });
      const label = el("label", { for: `${uid}-text`, class: "visually-hidden" }, gettext("Reply"));
      this.input = el("textarea", {
        id: `${uid}-text`,
        class: "conv-text",
        rows: "2",
        maxlength: "4000",
        placeholder: gettext("Write a reply… (Enter sends, Shift+Enter for a new line)"),
      });
      this.sendButton = el("button", { type: "submit", class: "conv-send" }, gettext("Send"));
      form.append(label, this.input, this.sendButton);
      this.error = el("p", { class: "form-errors", role: "alert" });
      const actions = el("div", { class: "conv-actions" });
      this.endButton = el("button", { type: "button", class: "secondary conv-end" }, gettext("End conversation"));
      this.caseButton = el("button", { type: "button", class: "secondary conv-case" }, gettext("Open a case"));
      actions.append(this.endButton, this.caseButton);
      main.append(this.log, this.typing, this.quick, form, this.error, actions);
      this.side = el("aside", { class: "conv-side", "aria-label": gettext("Customer") });
      this.root.replaceChildren(main, this.side);

      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.send();
      });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.send();
        }
      });
      this.input.addEventListener("input", () => {
        const now = Date.now();
        if (now - this.lastTyping > 2000) {
          this.lastTyping = now;
          request({ type: "typing", conversation_id: this.id }).catch(() => {});
        }
      });
      this.endButton.addEventListener("click", () => {
        request({ type: "close", conversation_id: this.id }).then(
          () => this.reload(),
          (error) => this.fail(error),
        );
      });
      this.caseButton.addEventListener("click", () => this.openCase());
    }

    async reload() {
      try {
        const response = await fetch(`/api/conversations/${this.id}/`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) throw { message: fmt(gettext("Could not load the conversation (%(s)s)."), { s: response.status }) };
        const data = await response.json();
        this.setConversation(data);
        this.renderQuickReplies(data.quick_replies || []);
        for (const message of data.messages) this.addMessage(message, false);
        this.renderCustomer(data);
      } catch (error) {
        this.fail(error);
      }
    }

    setConversation(data) {
      this.status = data.status;
      this.root.dataset.status = data.status;
      this.root.classList.toggle("conv-ended", data.status === "ended");
      this.input.disabled = this.sendButton.disabled = this.endButton.disabled = data.status === "ended";
      if (data.status === "ended") this.typing.textContent = gettext("This conversation has ended.");
    }

    renderQuickReplies(list) {
      this.quick.replaceChildren(
        ...list.map((reply) => {
          const button = el("button", { type: "button", title: reply.text }, reply.title);
          button.addEventListener("click", () => {
            this.input.value = this.input.value ? `${this.input.value} ${reply.text}` : reply.text;
            this.input.focus();
          });
          return button;
        }),
      );
    }

    addMessage(message, live) {
      let row = this.rows.get(message.id);
      if (!row) {
        row = el("li", { class: `msg msg-${message.direction} msg-${message.author}`, "data-message-id": String(message.id) });
        row.append(el("span", { class: "msg-meta" }), el("span", { class: "msg-text" }, message.text), el("span", { class: "msg-error" }));
        this.rows.set(message.id, row);
        // Ids grow with time: a live event that beat the initial load still lands in order.
        const after = [...this.log.children].find((other) => Number(other.dataset.messageId) > message.id);
        this.log.insertBefore(row, after || null);
        this.log.scrollTop = this.log.scrollHeight;
        if (live && message.direction === "in") {
          this.typing.textContent = "";
          if (!this.isVisible()) this.setUnread(this.unread + 1);
        }
      }
      row.dataset.status = message.status;
      this.paintMeta(row, message);
    }

    paintMeta(row, message) {
      const parts = [message.author_name, timeOf(message.created_at)];
      if (message.direction === "out") parts.push((STATUS_LABELS[message.status] || (() => message.status))());
      row.querySelector(".msg-meta").textContent = parts.join(" · ");
      row.querySelector(".msg-error").textContent = message.error || "";
      row.classList.toggle("msg-status-failed", message.status === "failed");
      row._message = message;
    }

    setStatus(payload) {
      const row = this.rows.get(payload.message_id);
      if (!row || !row._message) return;
      const message = { ...row._message, status: payload.status, error: payload.error };
      row.dataset.status = payload.status;
      this.paintMeta(row, message);
    }

    showTyping() {
      this.typing.textContent = gettext("The customer is typing…");
      clearTimeout(this.typingTimer);
      this.typingTimer = setTimeout(() => {
        if (this.status !== "ended") this.typing.textContent = "";
      }, 4000);
    }

    send() {
      const text = this.input.value.trim();
      if (!text) return;
      this.sendButton.disabled = true;
      this.error.textContent = "";
      request({ type: "reply", conversation_id: this.id, text }).then(
        () => {
          this.input.value = "";
          this.sendButton.disabled = false;
          this.input.focus();
        },
        (error) => {
          this.sendButton.disabled = false;
          this.fail(error);
        },
      );
    }

    async openCase() {
      const subject = window.prompt(gettext("Subject of the new case"));
      if (!subject || !subject.trim()) return;
      const response = await fetch(`/api/conversations/${this.id}/cases/`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ subject: subject.trim() }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        this.fail({ message: body.detail || gettext("Could not open the case.") });
        return;
      }
      this.typing.textContent = fmt(gettext("Case #%(id)s opened."), { id: body.id });
      this.reload();
    }

    async renderCustomer(data) {
      const customer = data.customer;
      const box = el("div", { class: "conv-customer" });
      box.append(el("h4", {}, customer.display_name || gettext("Customer")));
      if (data.also_wrote) {
        // A returning customer: where else they wrote (translated on the server, plural forms).
        box.append(el("p", { class: "also-wrote", "data-conversation-id": String(data.also_wrote.conversation_id) }, data.also_wrote.text));
      }
      const ids = el("ul", { class: "identities" });
      for (const identity of customer.identities) {
        const item = el("li");
        item.append(el("span", { class: "badge" }, identity.kind_label), ` ${identity.value}`);
        ids.append(item);
      }
      box.append(ids, this.identityForm(customer));
      const answers = Object.entries(data.bot_answers || {});
      if (answers.length) {
        const dl = el("dl", { class: "bot-answers" });
        for (const [key, value] of answers) dl.append(el("dt", {}, key), el("dd", {}, String(value)));
        box.append(el("h4", {}, gettext("Bot answers")), dl);
      }
      const link = el("a", { href: data.customer_url, target: "_blank", rel: "noopener" }, gettext("Full customer record"));
      box.append(link);
      this.suggestions = el("div", { class: "conv-suggestions" });
      box.append(this.suggestions);
      box.append(this.timelinePanel(customer));
      this.side.replaceChildren(box);
      this.loadTimeline(customer, "", 1);
    }

    identityForm(customer) {
      // "Add an address": the customer gives a phone or e-mail another customer may have.
      const form = el("form", { class: "identity-form" });
      const uid = `conv-${this.id}-identity`;
      const kind = el("select", { id: `${uid}-kind`, "aria-label": gettext("Kind of address") });
      for (const [value, label] of [["email", gettext("E-mail")], ["phone", gettext("Phone")], ["whatsapp", gettext("WhatsApp")]]) {
        kind.append(el("option", { value }, label));
      }
      const input = el("input", { id: `${uid}-value`, type: "text", maxlength: "200", autocomplete: "off", "aria-label": gettext("Address the customer gives") });
      const button = el("button", { type: "submit", class: "secondary small" }, gettext("Add an address"));
      const result = el("p", { class: "identity-result muted", role: "status" }, this.identityNote || "");
      form.append(kind, input, button, result);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (!input.value.trim()) return;
        const response = await fetch(`/api/customers/${customer.id}/identities/`, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ kind: kind.value, value: input.value.trim(), conversation: this.id }),
        });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          result.textContent = body.detail || gettext("Could not add the address.");
          return;
        }
        const said = {
          added: () => gettext("Added to this customer."),
          already: () => gettext("This customer has it already."),
          code_sent: () => fmt(gettext("A code went to %(to)s: the customer types it back here."), { to: body.claim.sent_to }),
          suggested: () => gettext("Another customer has it: shown below as a suggested match."),
        };
        this.identityNote = (said[body.status] || (() => body.status))();
        result.textContent = this.identityNote;
        input.value = "";
        this.reload();
      });
      return form;
    }

    timelinePanel(customer) {
      const section = el("section", { class: "conv-timeline", "aria-label": gettext("Timeline") });
      section.append(el("h4", {}, gettext("Timeline")));
      const search = el("form", { class: "timeline-search", role: "search" });
      const q = el("input", { type: "search", maxlength: "200", placeholder: gettext("Search messages and cases"), "aria-label": gettext("Search messages and cases") });
      search.append(q, el("button", { type: "submit", class: "secondary small" }, gettext("Search")));
      search.addEventListener("submit", (event) => {
        event.preventDefault();
        this.loadTimeline(customer, q.value.trim(), 1);
      });
      this.timeline = el("div", { class: "conv-history" });
      this.more = el("button", { type: "button", class: "secondary small timeline-more", hidden: "" }, gettext("Show older"));
      section.append(search, this.timeline, this.more);
      return section;
    }

    async loadTimeline(customer, q, page) {
      try {
        const params = new URLSearchParams({ q, page: String(page) });
        const response = await fetch(`/api/customers/${customer.id}/timeline/?${params}`, { credentials: "same-origin" });
        if (!response.ok) return;
        const body = await response.json();
        if (page === 1) {
          this.timeline.replaceChildren();
          this.renderSuggestions(customer, body.suggestions || []);
        }
        const entries = body.results.filter((e) => !(e.type === "conversation" && e.conversation.id === this.id));
        if (page === 1 && !entries.length) {
          this.timeline.append(el("p", { class: "muted" }, q ? gettext("Nothing matches.") : gettext("No earlier conversations or cases.")));
        }
        for (const entry of entries) this.timeline.append(this.timelineEntry(entry));
        this.more.hidden = !body.next_page;
        this.more.onclick = () => this.loadTimeline(customer, q, body.next_page);
      } catch (error) {
        /* the side panel is a help, not the work: the transcript stays usable */
      }
    }

    timelineEntry(entry) {
      if (entry.type === "case") {
        const item = entry.case;
        const row = el("p", { class: "past-case" }, `${gettext("Case")} #${item.id} · ${item.origin_label} · ${new Date(item.created_at).toLocaleString()} · ${item.subject} · ${item.status_label}`);
        if (item.unverified) row.append(" ", el("span", { class: "unverified-label" }, gettext("Unverified")));
        return row;
      }
      const conversation = entry.conversation;
      const matches = new Set(conversation.matches || []);
      const details = el("details", { class: "past-conversation", "data-conversation-id": String(conversation.id) });
      if (matches.size) details.open = true;
      const summary = el("summary");
      summary.append(el("span", { class: "badge channel" }, conversation.channel_label), ` ${new Date(conversation.started_at).toLocaleString()} · ${conversation.status_label}`);
      details.append(summary);
      const list = el("ol", { class: "transcript" });
      for (const message of conversation.messages) {
        const row = el("li", { class: `msg msg-${message.direction} msg-${message.author}` });
        if (matches.has(message.id)) row.classList.add("msg-match");
        row.append(el("span", { class: "msg-meta" }, `${message.author_name} · ${timeOf(message.created_at)}`), el("span", { class: "msg-text" }, message.text));
        list.append(row);
      }
      details.append(list);
      return details;
    }

    renderSuggestions(customer, suggestions) {
      this.suggestions.replaceChildren();
      if (!suggestions.length) return;
      this.suggestions.append(el("h4", {}, gettext("Suggested matches")));
      for (const match of suggestions) {
        const row = el("p", { class: "suggestion" });
        row.append(fmt(gettext("Customer #%(id)s also has %(kind)s %(value)s."), { id: match.customer_id, kind: match.kind_label, value: match.value }), " ");
        if (match.can_merge) {
          const button = el("button", { type: "button", class: "small" }, gettext("Merge"));
          button.addEventListener("click", async () => {
            const response = await fetch(`/api/customers/${customer.id}/suggestions/merge/`, {
              method: "POST",
              credentials: "same-origin",
              headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
              body: JSON.stringify({ other: match.customer_id }),
            });
            const body = await response.json().catch(() => ({}));
            if (!response.ok) this.fail({ message: body.detail || gettext("Could not merge.") });
            this.reload();
          });
          row.append(button);
        } else {
          row.append(el("span", { class: "muted" }, gettext("A supervisor can merge them.")));
        }
        this.suggestions.append(row);
      }
    }

    isVisible() {
      return this.active && !document.hidden && !this.root.closest("[hidden]");
    }

    setActive(active) {
      this.active = active;
      if (this.isVisible()) this.setUnread(0);
    }

    setUnread(count) {
      this.unread = count;
      if (this.tab) {
        if (count) this.tab.dataset.unread = String(count);
        else delete this.tab.dataset.unread;
        this.tab.setAttribute("aria-description", count ? fmt(gettext("%(n)s unread"), { n: count }) : "");
      }
      this.root.dispatchEvent(new CustomEvent("omni:unread", { bubbles: true, detail: { conversationId: this.id, count } }));
    }

    fail(error) {
      this.error.textContent = (error && error.message) || gettext("Something went wrong.");
    }

    destroy() {
      views.delete(this.id);
      clearTimeout(this.typingTimer);
      this.root.replaceChildren();
    }
  }

  function mount(element, options) {
    const existing = views.get(Number(options.conversationId));
    if (existing && existing.root === element) return existing;
    if (existing) existing.destroy();
    return new ConversationView(element, options);
  }

  // --- Console auto-mount: a conversation view in each messaging work panel -------------------
  function conversationIdOf(panel) {
    const pre = panel.querySelector(".payload");
    if (!pre) return null;
    try {
      const payload = JSON.parse(pre.textContent || "{}");
      return payload.conversation_id || null;
    } catch (error) {
      return null;
    }
  }

  function scanPanels(container) {
    for (const panel of container.querySelectorAll(".work-panel[data-work-id]")) {
      if (panel.dataset.conversationMounted) continue;
      const id = conversationIdOf(panel);
      if (!id) continue;
      panel.dataset.conversationMounted = String(id);
      const slot = el("div", { class: "conv-slot" });
      const facts = panel.querySelector(".facts");
      (facts || panel.firstChild).after(slot);
      const tab = document.getElementById(panel.getAttribute("aria-labelledby") || "");
      const view = mount(slot, { conversationId: id, tab, active: !panel.hidden });
      panel._conversationView = view;
    }
    for (const view of [...views.values()]) {
      if (!document.body.contains(view.root)) view.destroy();
    }
    for (const panel of container.querySelectorAll(".work-panel[data-conversation-mounted]")) {
      if (panel._conversationView) panel._conversationView.setActive(!panel.hidden);
    }
  }

  function autoMount() {
    const container = document.getElementById("work-panels");
    if (!container) return;
    const observer = new MutationObserver(() => scanPanels(container));
    observer.observe(container, { childList: true, subtree: true, attributes: true, attributeFilter: ["hidden"], characterData: true });
    scanPanels(container);
    document.addEventListener("visibilitychange", () => scanPanels(container));
  }

  window.OmniConversation = { mount, views };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoMount);
  else autoMount();
})();
