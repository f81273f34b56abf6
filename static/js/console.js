/* OmniRouter agent console: offers and accepted work over the /ws/agent/ WebSocket.
 *
 * The server is the truth. On every (re)connect it sends the full state; events after that are
 * merged into it. Merges only move a work forward (pushed -> opened -> ended), because an event
 * published just before a state frame may arrive just after it. The protocol is described in
 * docs/websocket-protocol.md. Strings go through Django's JavaScript catalog (/jsi18n/).
 * The socket itself (reconnects, resync timer) is livesocket.js.
 */
import { openLiveSocket } from "./livesocket.js";

(function () {
  const gettext = window.gettext || ((s) => s);
  const interpolate = window.interpolate || ((fmt, obj, named) =>
    named ? fmt.replace(/%\(\w+\)s/g, (m) => String(obj[m.slice(2, -2)]))
          : fmt.replace(/%s/g, () => String(obj.shift())));
  const fmt = (template, values) => interpolate(template, values, true);

  const config = JSON.parse(document.getElementById("console-config").textContent);
  const MUTE_KEY = "omnirouter.console.muted";
  const LIVE = { pushed: 0, opened: 1 };
  const rank = (state) => (state in LIVE ? LIVE[state] : 2);

  const el = {
    status: document.getElementById("status-select"),
    meter: document.getElementById("capacity-meter"),
    capacityText: document.getElementById("capacity-text"),
    connection: document.getElementById("connection"),
    reconnectNow: document.getElementById("reconnect-now"),
    mute: document.getElementById("mute-toggle"),
    notice: document.getElementById("console-notice"),
    offerList: document.getElementById("offer-list"),
    offerCount: document.getElementById("offer-count"),
    noOffers: document.getElementById("no-offers"),
    workTabs: document.getElementById("work-tabs"),
    workPanels: document.getElementById("work-panels"),
    workCount: document.getElementById("work-count"),
    noWork: document.getElementById("no-work"),
    announcer: document.getElementById("announcer"),
    offerTemplate: document.getElementById("offer-template"),
    panelTemplate: document.getElementById("work-panel-template"),
    dialog: document.getElementById("decline-dialog"),
    declineForm: document.getElementById("decline-form"),
    declineSubject: document.getElementById("decline-subject"),
    declineChoice: document.getElementById("decline-choice"),
    declineSelect: document.getElementById("decline-reason-select"),
    declineFree: document.getElementById("decline-free"),
    declineText: document.getElementById("decline-reason-text"),
    declineError: document.getElementById("decline-error"),
    declineCancel: document.getElementById("decline-cancel"),
  };

  const model = {
    works: new Map(), // id -> work payload (live only)
    ended: new Set(), // ids seen ending: stale events must not bring them back
    presence: null,
    statuses: [],
    queues: [],
    colleagues: [], // agents sharing a queue: {id, name, queue_ids}
    skills: [],
    declineReasons: [],
    requireReason: false,
    allowDecline: true,
    clockOffsetMs: 0, // server time minus browser time
    selectedWork: null,
    haveState: false,
  };

  // --- Time ------------------------------------------------------------------------------

  const serverNow = () => Date.now() + model.clockOffsetMs;

  function setClock(nowIso, sentAtMs) {
    const server = Date.parse(nowIso);
    if (Number.isNaN(server)) return;
    const receivedAt = Date.now();
    // With a round trip known, the server's "now" was taken about half-way through it.
    const local = sentAtMs ? (sentAtMs + receivedAt) / 2 : receivedAt;
    model.clockOffsetMs = server - local;
  }

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h) return fmt(gettext("%(h)s h %(m)s min"), { h, m });
    if (m) return fmt(gettext("%(m)s min %(s)s s"), { m, s: String(sec).padStart(2, "0") });
    return fmt(gettext("%(s)s s"), { s: sec });
  }

  // --- Connection ------------------------------------------------------------------------

  let live = null;
  let heartbeatTimer = null;
  let refSeq = 0;
  const pending = new Map(); // ref -> {onAck, onError, sentAt}

  function connect() {
    live = openLiveSocket(config.wsPath, {
      resyncSeconds: config.resyncSeconds,
      onMessage: handle,
      onOpen: startHeartbeat,
      onState: showConnection,
      onClose: (event) => {
        stopHeartbeat();
        failPending();
        setActionsEnabled(false);
        if (event.code === 4401) {
          stop(gettext("You are signed out. Log in again to keep receiving work."), true);
        } else if (event.code === 4403) {
          stop(gettext("This account is not an agent: the console cannot receive work."), false);
        }
      },
      // The server sends the full state on every connect; later, ask again now and then, so an
      // event lost on the way (the layer restarted, the socket half-dropped) is repaired.
      resync: (reason) => {
        if (reason === "timer") send({ type: "sync" }, null, null, true);
      },
    });
  }

  function showConnection(status) {
    // "open" is drawn when the state frame arrives: connected means showing the server's state.
    // "stopped" is drawn by stop(), which says why.
    if (status.state === "connecting") setConnection("connecting", gettext("Connecting…"));
    if (status.state === "offline") {
      el.reconnectNow.hidden = false;
      showReconnectCountdown();
    }
  }

  function showReconnectCountdown() {
    const status = live && live.status;
    if (!status || status.state !== "offline") return;
    const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
    setConnection(
      "offline",
      fmt(gettext("Offline: reconnecting in %(s)s s"), { s: seconds }),
    );
  }

  function stop(message, offerLogin) {
    el.reconnectNow.hidden = true;
    setConnection("offline", gettext("Disconnected"));
    showNotice(message, offerLogin ? config.loginUrl : null);
  }

  function setConnection(state, text) {
    el.connection.dataset.state = state;
    el.connection.className = "badge " + ({ online: "ok", connecting: "warn", offline: "bad" }[state] || "");
    el.connection.textContent = text;
    if (state !== "offline") el.reconnectNow.hidden = true;
    document.body.classList.toggle("console-offline", state !== "online");
    syncConnectionButtons();
  }

  // Accept, Decline, Close and Transfer cannot reach the server while the console is not
  // connected: they are disabled rather than failing when pressed.
  function syncConnectionButtons(root = document) {
    const connected = el.connection.dataset.state === "online";
    for (const button of root.querySelectorAll("[data-needs-connection]")) {
      button.disabled = !connected;
      button.title = connected ? "" : gettext("Not connected: this waits until the console is back online.");
    }
  }

  // The item's details as labelled rows: nested fields read "Customer › Name".
  function payloadRows(payload, prefix = [], rows = []) {
    for (const [key, value] of Object.entries(payload || {})) {
      const path = [...prefix, key];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        payloadRows(value, path, rows);
      } else {
        const text = Array.isArray(value)
          ? value.map((v) => (v && typeof v === "object" ? JSON.stringify(v) : String(v))).join(", ")
          : value === null || value === undefined ? "–" : String(value);
        rows.push([path.map(humanKey).join(" › "), text]);
      }
    }
    return rows;
  }

  function humanKey(key) {
    const words = String(key).replace(/[_-]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function startHeartbeat() {
    stopHeartbeat();
    const seconds = Math.max(1, Number(config.heartbeatSeconds) || 10);
    heartbeatTimer = setInterval(() => {
      const sentAt = Date.now();
      send({ type: "heartbeat" }, (ack) => ack.now && setClock(ack.now, sentAt), null, true);
    }, seconds * 1000);
  }

  function stopHeartbeat() {
    clearInterval(heartbeatTimer);
    heartbeatTimer = null;
  }

  const isOpen = () => Boolean(live && live.isOpen());

  function send(message, onAck, onError, quiet) {
    if (!isOpen()) {
      if (!quiet) showNotice(gettext("Not connected. Try again when the console is back online."));
      if (onError) onError({ code: "offline" });
      return false;
    }
    refSeq += 1;
    const ref = String(refSeq);
    pending.set(ref, { onAck, onError, sentAt: Date.now() });
    live.send({ ...message, ref });
    return true;
  }

  function failPending() {
    for (const entry of pending.values()) {
      if (entry.onError) entry.onError({ code: "offline" });
    }
    pending.clear();
  }

  // --- Messages from the server ----------------------------------------------------------

  function handle(message) {
    switch (message.type) {
      case "state":
        applyState(message);
        break;
      case "offer":
        mergeWork(message.payload, true);
        break;
      case "work.changed":
        mergeWork(message.payload, false);
        break;
      case "presence.changed":
        tellStatusChange(model.presence, message.payload);
        model.presence = message.payload;
        renderPresence();
        break;
      case "ack":
        settle(message, "onAck");
        break;
      case "error":
        if (!pending.has(message.ref)) showNotice(errorText(message));
        settle(message, "onError");
        break;
      default:
        break; // events for other parts of the console (messaging) are not ours to draw
    }
  }

  function settle(message, which) {
    const entry = pending.get(message.ref);
    if (!entry) return;
    pending.delete(message.ref);
    if (entry[which]) entry[which](message);
  }

  function applyState(state) {
    setClock(state.now);
    model.presence = state.presence;
    model.statuses = state.statuses || [];
    model.queues = state.queues || [];
    model.colleagues = state.colleagues || [];
    model.skills = state.skills || [];
    model.declineReasons = state.decline_reasons || [];
    model.requireReason = Boolean(state.require_decline_reason);
    model.allowDecline = state.allow_decline !== false;
    const before = model.works;
    model.works = new Map((state.work || []).map((w) => [w.id, w]));
    // An offer first seen in a later state (its event was lost, or came while offline) is
    // announced like one pushed live; offers already there when the page opened are not.
    const fresh = model.haveState
      ? [...model.works.values()].filter((w) => w.state === "pushed" && !before.has(w.id))
      : [];
    model.haveState = true;
    // Connected means "showing the server's state", not merely "socket open".
    setConnection("online", gettext("Connected"));
    document.body.dataset.consoleState = "ready";
    hideNotice();
    renderAll();
    fresh.forEach(notifyOffer);
  }

  function mergeWork(payload, isOffer) {
    if (!payload || typeof payload.id !== "number" || model.ended.has(payload.id)) return;
    const known = model.works.get(payload.id);
    if (known && rank(payload.state) < rank(known.state)) return;
    if (rank(payload.state) >= 2) {
      model.ended.add(payload.id);
      model.works.delete(payload.id);
      if (known && known.state === "pushed" && !known.localOutcome) {
        announceEndedOffer(payload);
      }
    } else {
      model.works.set(payload.id, { ...(known || {}), ...payload });
      if (isOffer && !known && payload.state === "pushed") notifyOffer(payload);
    }
    renderAll();
  }

  function announceEndedOffer(work) {
    const texts = {
      timed_out: gettext("The offer “%(subject)s” timed out and went back to the queue."),
      canceled: gettext("The offer “%(subject)s” was withdrawn."),
      declined: gettext("The offer “%(subject)s” was declined."),
    };
    const text = texts[work.state];
    if (text) announce(fmt(text, { subject: work.subject }));
  }

  // Messages of the routing services are English; known codes get a translated text.
  function errorText(error) {
    const known = {
      already_accepted: gettext("You have already accepted this work."),
      expired: gettext("This offer has timed out."),
      not_found: gettext("That work, queue or status does not exist or is not yours."),
      no_decline: gettext("Your presence configuration does not allow declining work."),
      reason_required: gettext("A reason is required to decline this work."),
      reason: gettext("Choose one of the listed decline reasons."),
      status: gettext("That status is not available to you."),
      offline: gettext("Not connected. Try again when the console is back online."),
      same_agent: gettext("You already hold this work."),
    };
    // A transfer to a person the engine refuses: the code is its reason.
    const cannot = {
      not_member: gettext("That agent cannot take this work: not a member of its queue."),
      offline: gettext("That agent cannot take this work: offline."),
      channel: gettext("That agent cannot take this work: not available for its channel."),
      no_console: gettext("That agent cannot take this work: no live console."),
      capacity: gettext("That agent cannot take this work: at capacity."),
      skill: gettext("That agent cannot take this work: missing a skill it needs."),
    };
    if (error.type === "error" && error.action === "transfer" && cannot[error.code]) {
      return cannot[error.code];
    }
    return known[error.code] || error.message || gettext("Something went wrong.");
  }

  // --- Notices: sound, title flash, screen reader -----------------------------------------

  let audio = null;
  let flashTimer = null;
  const baseTitle = document.title;
  let muted = window.localStorage.getItem(MUTE_KEY) === "1";

  function unlockAudio() {
    // Browsers start audio only after a user gesture; create the context on the first one.
    if (!audio && (window.AudioContext || window.webkitAudioContext)) {
      audio = new (window.AudioContext || window.webkitAudioContext)();
    }
    if (audio && audio.state === "suspended") audio.resume();
  }

  function chime() {
    if (muted || !audio) return;
    const start = audio.currentTime + 0.01;
    [[784, 0], [1047, 0.16]].forEach(([frequency, offset]) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + offset);
      osc.stop(start + offset + 0.32);
    });
  }

  function flashTitle() {
    if (muted || flashTimer) return;
    let on = false;
    flashTimer = setInterval(() => {
      const offers = pendingOffers().length;
      if (!offers || (document.hasFocus() && document.visibilityState === "visible")) {
        stopFlash();
        return;
      }
      on = !on;
      document.title = on
        ? fmt(gettext("(%(n)s) New offer"), { n: offers })
        : baseTitle;
    }, 1000);
  }

  function stopFlash() {
    clearInterval(flashTimer);
    flashTimer = null;
    document.title = baseTitle;
  }

  function notifyOffer(work) {
    chime();
    flashTitle();
    announce(fmt(gettext("New offer: %(subject)s"), { subject: work.subject }));
  }

  function announce(text) {
    el.announcer.textContent = "";
    // A change after a tick is announced even when the text repeats.
    setTimeout(() => { el.announcer.textContent = text; }, 50);
  }

  function renderMute() {
    el.mute.setAttribute("aria-pressed", muted ? "true" : "false");
    el.mute.textContent = muted ? gettext("Notices muted") : gettext("Mute notices");
  }

  el.mute.addEventListener("click", () => {
    muted = !muted;
    window.localStorage.setItem(MUTE_KEY, muted ? "1" : "0");
    if (muted) stopFlash();
    renderMute();
  });
  window.addEventListener("storage", (event) => {
    if (event.key === MUTE_KEY) {
      muted = event.newValue === "1";
      renderMute();
    }
  });
  ["pointerdown", "keydown"].forEach((type) =>
    document.addEventListener(type, unlockAudio, { passive: true }));
  window.addEventListener("focus", stopFlash);

  function showNotice(text, linkUrl) {
    el.notice.textContent = text;
    if (linkUrl) {
      const link = document.createElement("a");
      link.href = linkUrl;
      link.textContent = gettext("Log in");
      el.notice.append(" ", link);
    }
    el.notice.hidden = false;
  }

  // A status the agent did not pick (an offer timed out, a supervisor set it, a lost console)
  // is said in the notice, so a change never goes unnoticed.
  let requestedStatus;
  function tellStatusChange(before, after) {
    if (!before || !after || before.status_id === after.status_id) return;
    if (requestedStatus !== undefined && after.status_id === requestedStatus) return;
    const text = fmt(gettext("Your status changed from %(before)s to %(after)s."), {
      before: before.status, after: after.status,
    });
    showNotice(text);
    announce(text);
  }

  function hideNotice() {
    el.notice.hidden = true;
    el.notice.textContent = "";
  }

  // --- Rendering -------------------------------------------------------------------------

  const pendingOffers = () =>
    [...model.works.values()]
      .filter((w) => w.state === "pushed" && !w.localOutcome && remainingMs(w) > 0)
      .sort((a, b) => a.pushed_at.localeCompare(b.pushed_at) || a.id - b.id);

  const openWork = () =>
    [...model.works.values()]
      .filter((w) => w.state === "opened" && !w.localOutcome)
      .sort((a, b) => (a.opened_at || "").localeCompare(b.opened_at || "") || a.id - b.id);

  function remainingMs(work) {
    if (!work.expires_at) return Infinity;
    return Date.parse(work.expires_at) - serverNow();
  }

  function customerOf(work) {
    const customer = work.payload && work.payload.customer;
    let name = "";
    if (customer && typeof customer === "object") name = customer.name || customer.email || "";
    else if (typeof customer === "string") name = customer;
    // A self-service case the sender has not confirmed from the customer's address yet.
    if (work.payload && work.payload.unverified === true) {
      name = `${name || gettext("Customer")} (${gettext("UNVERIFIED: not confirmed by the customer")})`;
    }
    return name;
  }

  function renderAll() {
    renderPresence();
    renderOffers();
    renderWork();
    setActionsEnabled(isOpen());
  }

  function renderPresence() {
    const presence = model.presence;
    const select = el.status;
    const wanted = presence ? String(presence.status_id ?? "") : "";
    const options = model.statuses.map((s) => {
      const option = document.createElement("option");
      option.value = s.id === null ? "" : String(s.id);
      option.textContent = s.channels && s.channels.length
        ? `${s.name} (${s.channels.join(", ")})`
        : s.name;
      return option;
    });
    // An admin may have set a status the configuration no longer offers: still show it.
    if (presence && !options.some((o) => o.value === wanted)) {
      const option = document.createElement("option");
      option.value = wanted;
      option.textContent = presence.status_id === null ? gettext("Offline") : presence.status;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = wanted;
    select.dataset.online = presence && presence.online ? "true" : "false";

    if (presence) {
      const total = Math.max(1, presence.capacity);
      el.meter.max = total;
      el.meter.low = total * 0.6;
      el.meter.high = total * 0.9;
      el.meter.value = presence.used_capacity;
      el.capacityText.textContent = fmt(gettext("%(used)s / %(total)s units"), {
        used: presence.used_capacity,
        total: presence.capacity,
      });
    }
  }

  function renderOffers() {
    const offers = pendingOffers();
    const keep = new Set(offers.map((w) => String(w.id)));
    for (const card of [...el.offerList.children]) {
      if (!keep.has(card.dataset.workId)) card.remove();
    }
    offers.forEach((work, index) => {
      let card = el.offerList.querySelector(`[data-work-id="${work.id}"]`);
      if (!card) card = buildOfferCard(work);
      fillOfferCard(card, work);
      if (el.offerList.children[index] !== card) {
        el.offerList.insertBefore(card, el.offerList.children[index] || null);
      }
    });
    el.offerCount.textContent = String(offers.length);
    el.noOffers.hidden = offers.length > 0;
    if (!offers.length) stopFlash();
  }

  function buildOfferCard(work) {
    const card = el.offerTemplate.content.firstElementChild.cloneNode(true);
    card.dataset.workId = String(work.id);
    const article = card.querySelector("article");
    const subject = card.querySelector(".subject");
    subject.id = `offer-${work.id}-subject`;
    article.setAttribute("aria-labelledby", subject.id);
    card.querySelector(".accept").addEventListener("click", () => accept(work.id));
    card.querySelector(".decline").addEventListener("click", () => decline(work.id));
    return card;
  }

  function fillOfferCard(card, work) {
    card.querySelector(".channel").textContent = work.channel_label || work.channel;
    card.querySelector(".queue").textContent = work.queue;
    const priority = card.querySelector(".priority");
    priority.textContent = fmt(gettext("Priority %(p)s"), { p: work.priority ?? "–" });
    priority.hidden = work.priority === undefined;
    card.querySelector(".subject").textContent = work.subject;
    const customer = customerOf(work);
    card.querySelector(".customer").textContent = customer;
    card.querySelector(".customer-row").hidden = !customer;
    card.querySelector(".why").textContent = work.why || "–";
    card.querySelector(".decline").hidden = !model.allowDecline;
    syncConnectionButtons(card);
    tickOffer(card, work);
  }

  function tickOffer(card, work) {
    const now = serverNow();
    card.querySelector(".waiting").textContent = duration(now - Date.parse(work.enqueued_at));
    const left = remainingMs(work);
    const text = card.querySelector(".countdown-text");
    const fill = card.querySelector(".countdown-fill");
    if (left === Infinity) {
      text.textContent = "";
      fill.style.width = "100%";
      return;
    }
    const total = Date.parse(work.expires_at) - Date.parse(work.pushed_at);
    text.textContent = fmt(gettext("Expires in %(s)s s"), { s: Math.max(0, Math.ceil(left / 1000)) });
    fill.style.width = `${total > 0 ? Math.max(0, Math.min(100, (100 * left) / total)) : 0}%`;
    card.classList.toggle("urgent", left < 10000);
  }

  function renderWork() {
    const works = openWork();
    const ids = works.map((w) => String(w.id));
    if (!ids.includes(String(model.selectedWork))) {
      model.selectedWork = works.length ? works[works.length - 1].id : null;
    }
    for (const node of [...el.workTabs.children, ...el.workPanels.children]) {
      if (!ids.includes(node.dataset.workId)) node.remove();
    }
    works.forEach((work, index) => {
      let tab = el.workTabs.querySelector(`[data-work-id="${work.id}"]`);
      let panel = el.workPanels.querySelector(`[data-work-id="${work.id}"]`);
      if (!tab) {
        [tab, panel] = buildWorkTab(work);
        el.workPanels.append(panel);
      }
      if (el.workTabs.children[index] !== tab) {
        el.workTabs.insertBefore(tab, el.workTabs.children[index] || null);
      }
      fillWorkPanel(tab, panel, work);
      const selected = work.id === model.selectedWork;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = selected ? 0 : -1;
      panel.hidden = !selected;
    });
    el.workCount.textContent = String(works.length);
    el.noWork.hidden = works.length > 0;
    el.workTabs.hidden = !works.length;
  }

  function buildWorkTab(work) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.className = "work-tab";
    tab.setAttribute("role", "tab");
    tab.id = `work-${work.id}-tab`;
    tab.dataset.workId = String(work.id);
    tab.setAttribute("aria-controls", `work-${work.id}-panel`);
    tab.addEventListener("click", () => selectWork(work.id));
    tab.addEventListener("keydown", onTabKey);

    const panel = el.panelTemplate.content.firstElementChild.cloneNode(true);
    panel.id = `work-${work.id}-panel`;
    panel.dataset.workId = String(work.id);
    panel.dataset.itemId = String(work.item_id);
    panel.setAttribute("aria-labelledby", tab.id);
    const note = panel.querySelector("textarea");
    note.id = `work-${work.id}-note`;
    panel.querySelector(".note-label").htmlFor = note.id;
    const kind = panel.querySelector(".transfer-kind");
    kind.id = `work-${work.id}-transfer-kind`;
    panel.querySelector(".kind-label").htmlFor = kind.id;
    const target = panel.querySelector(".transfer-target");
    target.id = `work-${work.id}-queue`;
    panel.querySelector(".queue-label").htmlFor = target.id;
    const level = panel.querySelector(".transfer-level");
    level.id = `work-${work.id}-level`;
    panel.querySelector(".level-label").htmlFor = level.id;
    const handNote = panel.querySelector(".transfer-note-input");
    handNote.id = `work-${work.id}-transfer-note`;
    panel.querySelector(".transfer-note-label").htmlFor = handNote.id;
    kind.addEventListener("change", () => {
      const known = model.works.get(work.id);
      if (known) fillTransferTargets(panel, known);
    });
    panel.querySelector(".close-form").addEventListener("submit", (event) => {
      event.preventDefault();
      closeWork(work.id, note.value);
    });
    panel.querySelector(".transfer-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (target.value) {
        transferWork(work.id, kind.value, Number(target.value), level.value, handNote.value);
      }
    });
    return [tab, panel];
  }

  function fillWorkPanel(tab, panel, work) {
    tab.textContent = work.subject;
    tab.title = `${work.channel_label || work.channel} · ${work.queue}`;
    panel.querySelector(".subject").textContent = work.subject;
    panel.querySelector(".channel").textContent = work.channel_label || work.channel;
    panel.querySelector(".queue").textContent = work.queue;
    const customer = customerOf(work);
    panel.querySelector(".customer").textContent = customer;
    panel.querySelector(".customer-row").hidden = !customer;
    panel.querySelector(".priority").textContent = work.priority ?? "–";
    const ngettext = window.ngettext || ((one, many, n) => (n === 1 ? one : many));
    panel.querySelector(".units").textContent = fmt(
      ngettext("%(n)s unit", "%(n)s units", work.units), { n: work.units });
    panel.querySelector(".why").textContent = work.why || "–";
    const skills = work.skills || [];
    panel.querySelector(".skills").textContent = skills
      .map((need) => {
        const text = Number(need.min_level) > 0
          ? fmt(gettext("%(name)s (level %(level)s or above)"), { name: need.name, level: need.min_level })
          : need.name;
        return need.additional ? fmt(gettext("%(skill)s, preferred"), { skill: text }) : text;
      })
      .join(", ");
    panel.querySelector(".skills-row").hidden = !skills.length;
    const handover = panel.querySelector(".transfer-note");
    handover.hidden = !work.transfer;
    if (work.transfer) {
      panel.querySelector(".transfer-from").textContent = work.transfer.from
        ? fmt(gettext("Note from %(name)s:"), { name: work.transfer.from })
        : gettext("Transfer note:");
      panel.querySelector(".transfer-text").textContent = work.transfer.note || gettext("(no note)");
    }
    const payload = panel.querySelector(".payload");
    const json = JSON.stringify(work.payload || {}, null, 2);
    if (payload.textContent !== json) {
      payload.textContent = json;
      const rows = payloadRows(work.payload);
      panel.querySelector(".payload-rows").replaceChildren(...rows.map(([label, text]) => {
        const row = document.createElement("div");
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = label;
        dd.textContent = text;
        row.append(dt, dd);
        return row;
      }));
      panel.querySelector(".payload-box").hidden = !rows.length;
    }
    syncConnectionButtons(panel);
    tickWork(panel, work);
    fillTransferTargets(panel, work);
  }

  // The transfer form's second list follows its first: queues other than the work's own,
  // agents who share the work's queue, or skills.
  function fillTransferTargets(panel, work) {
    const kind = panel.querySelector(".transfer-kind").value;
    const select = panel.querySelector(".transfer-target");
    const label = panel.querySelector(".queue-label");
    label.textContent = label.dataset[kind] || label.textContent;
    panel.querySelector(".level-row").hidden = kind !== "skill";
    let choices;
    let prompt;
    if (kind === "agent") {
      choices = model.colleagues.filter((a) => a.queue_ids.includes(work.queue_id));
      prompt = choices.length ? gettext("Choose an agent…") : gettext("No one else works this queue");
    } else if (kind === "skill") {
      choices = model.skills;
      prompt = gettext("Choose a skill…");
    } else {
      choices = model.queues.filter((q) => q.id !== work.queue_id);
      prompt = gettext("Choose a queue…");
    }
    const current = select.value;
    const signature = kind + "/" + choices.map((c) => `${c.id}:${c.name}`).join("|");
    if (select.dataset.signature !== signature) {
      const placeholder = new Option(prompt, "");
      select.replaceChildren(placeholder, ...choices.map((c) => new Option(c.name, String(c.id))));
      select.dataset.signature = signature;
      select.value = choices.some((c) => String(c.id) === current) ? current : "";
    }
  }

  function tickWork(panel, work) {
    const since = panel.querySelector(".since");
    since.textContent = work.opened_at
      ? fmt(gettext("%(t)s ago"), { t: duration(serverNow() - Date.parse(work.opened_at)) })
      : "–";
  }

  function selectWork(id) {
    model.selectedWork = id;
    renderWork();
  }

  function onTabKey(event) {
    const tabs = [...el.workTabs.children];
    const index = tabs.indexOf(event.currentTarget);
    let next = null;
    if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
    if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
    if (event.key === "Home") next = tabs[0];
    if (event.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      event.preventDefault();
      selectWork(Number(next.dataset.workId));
      next.focus();
    }
  }

  function setActionsEnabled(enabled) {
    el.status.disabled = !enabled || !model.haveState;
    document.querySelectorAll(".offer-card button, .work-panel button").forEach((button) => {
      if (!button.dataset.busy) button.disabled = !enabled;
    });
  }

  // Countdowns, waiting times and time since accepted, once a second (and at once on resume).
  function tick() {
    let expired = false;
    for (const card of el.offerList.children) {
      const work = model.works.get(Number(card.dataset.workId));
      if (!work) continue;
      if (remainingMs(work) <= 0) expired = true;
      else tickOffer(card, work);
    }
    for (const panel of el.workPanels.children) {
      const work = model.works.get(Number(panel.dataset.workId));
      if (work) tickWork(panel, work);
    }
    // The card goes when its countdown ends; the sweep has re-routed (or is re-routing) it and
    // its work.changed event will confirm.
    if (expired) renderOffers();
    showReconnectCountdown();
  }

  // --- Actions ---------------------------------------------------------------------------

  function busy(button, on) {
    if (!button) return;
    if (on) {
      button.dataset.busy = "1";
      button.disabled = true;
    } else {
      delete button.dataset.busy;
      button.disabled = !isOpen();
    }
  }

  function workFailed(error) {
    // "offline" without a frame type is this console's own connection (send() says so itself).
    const show = error.code !== "offline" || error.type === "error";
    const text = errorText(error);
    if (show) showNotice(text);
    // The work may have moved on (timed out, taken elsewhere): fetch the truth. The state it
    // brings clears notices, so the refusal is shown again once it has been drawn.
    send({ type: "sync" }, () => { if (show) showNotice(text); }, null, true);
  }

  function finish(workId, outcome) {
    const work = model.works.get(workId);
    if (work) work.localOutcome = outcome;
    renderAll();
  }

  function accept(workId) {
    const button = el.offerList.querySelector(`[data-work-id="${workId}"] .accept`);
    busy(button, true);
    send(
      { type: "accept", work_id: workId },
      (ack) => {
        mergeWork(ack.work, false);
        model.selectedWork = workId;
        hideNotice();
        renderAll();
        const tab = el.workTabs.querySelector(`[data-work-id="${workId}"]`);
        if (tab) tab.focus();
      },
      (error) => {
        busy(button, false);
        workFailed(error);
      },
    );
  }

  let declining = null;

  function decline(workId) {
    const work = model.works.get(workId);
    if (!work) return;
    const reasons = model.declineReasons;
    if (!model.requireReason && !reasons.length) {
      sendDecline(workId, "");
      return;
    }
    declining = workId;
    el.declineSubject.textContent = work.subject;
    el.declineError.textContent = "";
    el.declineChoice.hidden = !reasons.length;
    el.declineFree.hidden = Boolean(reasons.length);
    const options = reasons.map((label) => new Option(label, label));
    options.unshift(new Option(
      model.requireReason ? gettext("Choose a reason…") : gettext("No reason"), ""));
    el.declineSelect.replaceChildren(...options);
    el.declineSelect.required = model.requireReason;
    el.declineText.value = "";
    el.declineText.required = model.requireReason;
    el.dialog.showModal();
    (reasons.length ? el.declineSelect : el.declineText).focus();
  }

  el.declineForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = (el.declineChoice.hidden ? el.declineText.value : el.declineSelect.value).trim();
    if (model.requireReason && !reason) {
      el.declineError.textContent = gettext("Choose a reason to decline this offer.");
      return;
    }
    const workId = declining;
    el.dialog.close();
    if (workId !== null) sendDecline(workId, reason);
  });
  el.declineCancel.addEventListener("click", () => el.dialog.close());
  [el.declineSelect, el.declineText].forEach((field) =>
    field.addEventListener("input", () => { el.declineError.textContent = ""; }));
  el.dialog.addEventListener("close", () => { declining = null; });

  function sendDecline(workId, reason) {
    const button = el.offerList.querySelector(`[data-work-id="${workId}"] .decline`);
    busy(button, true);
    send(
      { type: "decline", work_id: workId, reason },
      (ack) => {
        finish(workId, "declined");
        mergeWork(ack.work, false);
      },
      (error) => {
        busy(button, false);
        workFailed(error);
      },
    );
  }

  function closeWork(workId, note) {
    const button = el.workPanels.querySelector(`[data-work-id="${workId}"] .close-form button`);
    busy(button, true);
    send(
      { type: "close", work_id: workId, note },
      (ack) => {
        finish(workId, "closed");
        mergeWork(ack.work, false);
        announce(gettext("Work closed."));
      },
      (error) => {
        busy(button, false);
        workFailed(error);
      },
    );
  }

  function transferWork(workId, kind, targetId, minLevel, note) {
    const panel = el.workPanels.querySelector(`[data-work-id="${workId}"]`);
    const button = panel && panel.querySelector(".transfer-form button");
    const message = { type: "transfer", work_id: workId, note };
    if (kind === "agent") message.agent = targetId;
    else if (kind === "skill") {
      message.skill = targetId;
      message.min_level = minLevel === "" ? 0 : Number(minLevel);
    } else message.queue = targetId;
    busy(button, true);
    send(
      message,
      (ack) => {
        finish(workId, "transferred");
        mergeWork(ack.work, false);
        announce(gettext("Work transferred."));
      },
      (error) => {
        busy(button, false);
        workFailed({ ...error, action: "transfer" });
      },
    );
  }

  el.status.addEventListener("change", () => {
    const value = el.status.value;
    requestedStatus = value === "" ? null : Number(value);
    el.status.disabled = true;
    send(
      { type: "status", status: value === "" ? null : Number(value) },
      (ack) => {
        model.presence = ack.presence;
        el.status.disabled = false;
        renderPresence();
      },
      (error) => {
        el.status.disabled = !isOpen();
        if (error.code !== "offline") showNotice(errorText(error));
        renderPresence(); // back to what the server says
      },
    );
  });

  el.reconnectNow.addEventListener("click", () => live.reconnectNow());

  renderMute();
  setInterval(tick, 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") tick();
  });
  connect();
})();
