/* OmniRouter supervisor dashboard: live figures over /ws/supervisor/, trends, actions.
 *
 * The server sends whole snapshots (throttled; see docs/websocket-protocol.md), so the page only
 * renders what it is given: no merging, nothing lost if a frame is. Between snapshots the ages
 * on screen (waits, time in state or status) tick up by themselves. Actions go through the REST
 * API; their effect comes back as the next snapshot. Words come translated from the page
 * (#sv-labels); data (queue, agent, status names) is written with textContent only.
 */

import { PALETTE, lineChart } from "./charts.js";
import { openLiveSocket } from "./livesocket.js";

const readJSON = (id) => JSON.parse(document.getElementById(id).textContent);
const L = readJSON("sv-labels");
const STATUSES = readJSON("sv-statuses");
const SKILLS = readJSON("sv-skills");
const CONFIG = readJSON("sv-config");
const CSRF = document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
const fmt = (template, values) =>
  template.replace(/%\((\w+)\)s/g, (_m, key) => String(values[key])).replace(/%%/g, "%");

const state = {
  snap: readJSON("sv-snapshot"),
  receivedAt: performance.now(),
  sort: { key: "name", dir: 1 },
  pending: new Set(),
  history: null,
};

// --- Formatting ------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A cell whose seconds keep counting up between snapshots. */
function age(seconds, { grows = true, tag = "td", cls = "num" } = {}) {
  const attrs = { class: cls };
  if (grows && seconds !== null && seconds !== undefined) attrs.dataset = { age: seconds };
  return h(tag, attrs, duration(seconds));
}

function elapsedSeconds() {
  return Math.floor((performance.now() - state.receivedAt) / 1000);
}

function tick() {
  const elapsed = elapsedSeconds();
  for (const el of document.querySelectorAll("[data-age]")) {
    el.textContent = duration(Number(el.dataset.age) + elapsed);
  }
}

// --- Rendering -------------------------------------------------------------------------------

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function slText(percent) {
  return percent === null || percent === undefined ? "–" : `${percent}%`;
}

function renderTotals(snap) {
  const t = snap.totals;
  setText("t-waiting", t.waiting);
  const longest = document.getElementById("t-longest");
  longest.textContent = duration(t.longest_wait_seconds);
  if (t.waiting) longest.dataset.age = t.longest_wait_seconds;
  else delete longest.dataset.age;
  setText("t-sl", slText(t.service_level_percent));
  setText("t-handled", t.handled_today);
  setText("t-abandoned", t.abandoned_today);
  setText("t-online", t.agents_online);
  setText("t-room", t.agents_with_room);
}

function renderQueues(snap) {
  const body = document.querySelector("#sv-queues tbody");
  if (!snap.queues.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "muted" }, L.no_queues)));
    return;
  }
  body.replaceChildren(...snap.queues.map((q) => {
    const growing = q.waiting > 0;
    let sl;
    if (q.service_level_percent === null) {
      sl = h("td", {}, h("span", { title: L.sl_none }, "–"),
             " ", h("span", { class: "muted" }, fmt(L.goal, { goal: q.service_level_goal_percent })));
    } else {
      const ok = q.service_level_met;
      sl = h("td", { class: "sv-sl" },
        h("span", { class: `sv-sl-value ${ok ? "ok" : "bad"}` }, slText(q.service_level_percent)),
        " ",
        h("span", { class: `badge ${ok ? "ok" : "bad"}` }, ok ? L.met : L.missed),
        " ",
        h("span", { class: "muted" }, fmt(L.goal, { goal: q.service_level_goal_percent })),
        h("span", { class: "sv-bar", "aria-hidden": "true" },
          h("span", { class: `sv-bar-fill ${ok ? "ok" : "bad"}`,
                      style: `width:${Math.min(100, q.service_level_percent)}%` }),
          h("span", { class: "sv-bar-goal", style: `left:${q.service_level_goal_percent}%` })));
    }
    return h("tr", { dataset: { queue: q.id }, class: q.waiting ? "sv-has-waiting" : null },
      h("th", { scope: "row" }, q.name),
      h("td", { class: "num sv-waiting" }, q.waiting),
      age(q.longest_wait_seconds, { grows: growing, cls: "num sv-longest" }),
      age(q.average_wait_seconds, { grows: growing }),
      h("td", { class: "num" }, q.offered),
      h("td", { class: "num" }, q.assigned),
      h("td", { class: "num" }, q.handled_today),
      h("td", { class: "num" }, duration(q.average_speed_to_answer_seconds)),
      h("td", { class: "num" }, q.abandoned_today),
      sl);
  }));
}

const sorters = {
  name: (a) => a.name.toLocaleLowerCase(),
  status: (a) => (a.status || "").toLocaleLowerCase(),
  seconds_in_status: (a) => a.seconds_in_status ?? -1,
  load: (a) => a.used_capacity / Math.max(1, a.capacity),
  refusals_today: (a) => a.declined_today + a.timed_out_today,
  handled_today: (a) => a.handled_today,
  average_handle_seconds: (a) => a.average_handle_seconds ?? -1,
};

function visibleAgents(snap) {
  const queue = document.getElementById("sv-agent-queue").value;
  const status = document.getElementById("sv-agent-status").value;
  const keep = (a) => {
    if (queue && !a.queue_ids.includes(Number(queue))) return false;
    if (status === "online") return a.online;
    if (status === "offline") return !a.online;
    if (status === "room") return a.has_room;
    if (status.startsWith("status:")) return a.status_id === Number(status.slice(7));
    return true;
  };
  const key = sorters[state.sort.key] || sorters.name;
  return snap.agents.filter(keep).sort((a, b) => {
    const ka = key(a), kb = key(b);
    if (ka < kb) return -state.sort.dir;
    if (ka > kb) return state.sort.dir;
    return a.name.localeCompare(b.name);
  });
}

function statusForm(agent) {
  const label = fmt(L.status_for, { agent: agent.name });
  const select = h("select", { "aria-label": label, name: "status" },
    ...STATUSES.filter((s) => s.is_online).map((s) =>
      h("option", { value: s.id, selected: s.id === agent.status_id }, s.name)),
    h("option", { value: "", selected: !agent.online }, L.offline));
  return h("form", {
    class: "sv-inline-form",
    onsubmit: (ev) => {
      ev.preventDefault();
      const status = select.value === "" ? null : Number(select.value);
      act(`/api/supervisor/agents/${agent.id}/presence/`, { status },
          (answer) => fmt(L.done_status, {
            agent: agent.name, status: answer && answer.online ? answer.status : L.offline,
          }));
    },
  }, select, h("button", { type: "submit", class: "secondary" }, L.set_status));
}

function renderAgents(snap) {
  const body = document.querySelector("#sv-agents tbody");
  if (deferWhileFocused(body, "agents")) return;
  const agents = visibleAgents(snap);
  if (!agents.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "muted" }, L.no_agents)));
    return;
  }
  body.replaceChildren(...agents.map((a) => {
    const statusCell = h("td", {},
      h("span", { class: `badge ${a.online ? "ok" : ""}` }, a.status || L.offline),
      a.online && !a.connected ? [" ", h("span", { class: "badge warn" }, L.no_live_console)] : null,
      a.has_room ? [" ", h("span", { class: "badge sv-room" }, L.room)] : null);
    const load = h("td", { class: "sv-load" },
      h("span", {}, `${a.used_capacity} / ${a.capacity}`),
      h("span", { class: "sv-bar", "aria-hidden": "true" },
        h("span", { class: `sv-bar-fill ${a.spare_capacity > 0 ? "ok" : "warn"}`,
                    style: `width:${Math.min(100, (100 * a.used_capacity) / Math.max(1, a.capacity))}%` })));
    const items = a.open_items.length
      ? h("ul", { class: "sv-items" }, ...a.open_items.map((i) =>
          h("li", {}, age(i.seconds_in_state, { tag: "span", cls: "sv-age" }),
            h("span", { class: "muted" }, ` ${L[i.state] || i.state} `),
            `#${i.item_id} ${i.subject}`)))
      : h("span", { class: "muted" }, a.open_count ? fmt(L.items_open, { count: a.open_count }) : L.none);
    return h("tr", { dataset: { agent: a.id, username: a.username },
                     class: a.has_room ? "sv-has-room" : null },
      h("th", { scope: "row" }, a.name),
      statusCell,
      age(a.seconds_in_status, { cls: "num sv-in-status" }),
      load,
      h("td", {}, items),
      h("td", { class: "num" }, `${a.declined_today} / ${a.timed_out_today}`),
      h("td", { class: "num" }, a.handled_today),
      h("td", { class: "num" }, duration(a.average_handle_seconds)),
      h("td", { class: "sv-skills" },
        h("div", { class: "sv-skill-chips" }, ...(a.skills || []).map((sk) =>
          h("span", { class: "badge" }, `${sk.name} ${sk.level}`))),
        h("button", { type: "button", class: "secondary small",
                      "aria-label": fmt(L.edit_skills_of, { agent: a.name }),
                      onclick: () => openSkillsDialog(a.id) }, L.edit_skills)),
      h("td", {}, statusForm(a)));
  }));
}

function renderWork(snap) {
  const body = document.querySelector("#sv-work tbody");
  if (!snap.work.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, L.no_work)));
  } else {
    body.replaceChildren(...snap.work.map((w) =>
      h("tr", { dataset: { work: w.id } },
        h("td", {}, w.agent),
        h("td", {}, `#${w.item_id} ${w.subject}`),
        h("td", {}, w.queue),
        h("td", {}, w.channel_label),
        h("td", {}, h("span", { class: `badge ${w.state === "opened" ? "ok" : "warn"}` },
                      L[w.state] || w.state_label)),
        age(w.seconds_in_state),
        h("td", { class: "sv-why" }, w.why))));
  }
  const more = document.getElementById("sv-work-more");
  more.hidden = snap.work_total <= snap.work.length;
  more.textContent = fmt(L.more_work, { shown: snap.work.length, total: snap.work_total });
}

function renderNext(snap) {
  const body = document.querySelector("#sv-next tbody");
  if (deferWhileFocused(body, "next")) return;
  if (!snap.next_in_line.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, L.no_waiting)));
    return;
  }
  body.replaceChildren(...snap.next_in_line.map((item) => {
    const otherQueues = snap.queues.filter((q) => q.id !== item.queue_id);
    const queueSelect = h("select", { "aria-label": fmt(L.move_to, { item: item.id }) },
      h("option", { value: "" }, L.choose_queue),
      ...otherQueues.map((q) => h("option", { value: q.id }, q.name)));
    const move = h("form", { class: "sv-inline-form", onsubmit: (ev) => {
      ev.preventDefault();
      if (!queueSelect.value) return;
      act(`/api/supervisor/items/${item.id}/move/`, { queue: Number(queueSelect.value) },
          fmt(L.done_move, { item: item.id, queue: queueSelect.selectedOptions[0].textContent }));
    } }, queueSelect, h("button", { type: "submit", class: "secondary" }, L.move));
    const push = h("button", { type: "button", class: "secondary",
                               "aria-label": fmt(L.push_to, { item: item.id }),
                               onclick: () => openPushDialog(item) }, L.push_open);
    return h("tr", { dataset: { item: item.id } },
      h("td", {}, `#${item.id} ${item.subject}`),
      h("td", {}, item.queue),
      h("td", {}, item.channel_label),
      h("td", { class: "num" }, item.priority),
      age(item.wait_seconds),
      h("td", {}, otherQueues.length ? move : h("span", { class: "muted" }, "–")),
      h("td", {}, push));
  }));
}

function renderBacklog(snap) {
  const body = document.querySelector("#sv-backlog tbody");
  const rows = snap.skills_backlog || [];
  if (!rows.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, L.no_backlog)));
    return;
  }
  body.replaceChildren(...rows.map((r) =>
    h("tr", { dataset: { skill: r.skill_id }, class: r.nobody_online_can_take ? "sv-gap" : null },
      h("th", { scope: "row" }, r.name),
      h("td", { class: "num" }, r.waiting),
      age(r.longest_wait_seconds),
      h("td", { class: "num" }, r.agents_online),
      h("td", { class: "num sv-gap-count" }, r.nobody_online_can_take))));
}

// --- Agents' skills --------------------------------------------------------------------------

const skillsDialog = document.getElementById("sv-skills-dialog");
const skillsError = document.getElementById("sv-skills-error");
let skillsAgentId = null;
document.getElementById("sv-skills-close").addEventListener("click", () => skillsDialog.close());
skillsDialog.addEventListener("close", () => { skillsAgentId = null; });

function dialogAgent() {
  return state.snap.agents.find((a) => a.id === skillsAgentId) || null;
}

function openSkillsDialog(agentId) {
  skillsAgentId = agentId;
  delete document.getElementById("sv-skills-list").dataset.signature;
  skillsError.textContent = "";
  fillSkillsDialog();
  if (!skillsDialog.open) skillsDialog.showModal();
}

/** The agent's skills with a level to change and a Remove button each; an Add form for the
 * skills they do not have. Drawn from the latest snapshot (each change brings a new one). */
function fillSkillsDialog() {
  const agent = dialogAgent();
  if (!agent) return;
  setText("sv-skills-h", fmt(L.skills_title, { agent: agent.name }));
  const list = document.getElementById("sv-skills-list");
  const skills = agent.skills || [];
  // Snapshots arrive while the dialog is open: redraw only when the skills changed, so a level
  // being typed or a skill being chosen is not reset under the supervisor's hands.
  const signature = `${agent.id}|` + skills.map((sk) => `${sk.id}:${sk.level}`).join(",");
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  list.replaceChildren(...(skills.length ? skills.map((sk) => {
    const level = h("input", { type: "number", min: 0, max: 99.99, step: 0.01, value: sk.level,
                               "aria-label": fmt(L.level_of, { skill: sk.name }) });
    return h("li", { dataset: { skill: sk.skill_id } },
      h("span", { class: "sv-skill-name" }, sk.name),
      // novalidate: the API's message says the rule (0 to 99.99), in the dialog's own words.
      h("form", { class: "sv-inline-form", novalidate: true, onsubmit: (ev) => {
        ev.preventDefault();
        skillCall("PATCH", `/api/agent-skills/${sk.id}/`, { level: level.value },
                  fmt(L.done_skill, { agent: agent.name, skill: sk.name, level: level.value }));
      } }, level, h("button", { type: "submit", class: "secondary" }, L.save)),
      h("button", { type: "button", class: "secondary",
                    "aria-label": fmt(L.remove_skill, { skill: sk.name }),
                    onclick: () => skillCall("DELETE", `/api/agent-skills/${sk.id}/`, null,
                      fmt(L.done_remove_skill, { agent: agent.name, skill: sk.name })) },
        L.remove));
  }) : [h("li", { class: "muted" }, L.no_skills)]));
  const held = new Set(skills.map((sk) => sk.skill_id));
  const missing = SKILLS.filter((sk) => !held.has(sk.id));
  const select = document.getElementById("sv-skill-add-skill");
  const chosen = select.value;
  select.replaceChildren(...missing.map((sk) => h("option", { value: sk.id }, sk.name)));
  if (missing.some((sk) => String(sk.id) === chosen)) select.value = chosen;
  document.getElementById("sv-skill-add").hidden = !missing.length;
}

document.getElementById("sv-skill-add").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const agent = dialogAgent();
  const select = document.getElementById("sv-skill-add-skill");
  const level = document.getElementById("sv-skill-add-level").value;
  if (!agent || !select.value) return;
  skillCall("POST", "/api/agent-skills/",
            { agent: agent.id, skill: Number(select.value), level },
            fmt(L.done_skill, { agent: agent.name, skill: select.selectedOptions[0].textContent,
                                level }));
});

async function skillCall(method, url, body, success) {
  skillsError.textContent = "";
  const reason = await send(method, url, body);
  if (reason === null) {
    say(success, true);
    requestRefresh();
  } else {
    skillsError.textContent = fmt(L.failed, { reason });
  }
}

// --- Push to agent ---------------------------------------------------------------------------

const pushDialog = document.getElementById("sv-push-dialog");
document.getElementById("sv-push-close").addEventListener("click", () => pushDialog.close());

/** The queue's members as the router sees them (GET eligible-agents): a Push button for those
 * a push would reach, the reason for the others. */
async function openPushDialog(item) {
  const list = document.getElementById("sv-push-agents");
  setText("sv-push-h", fmt(L.push_title, { item: item.id, subject: item.subject }));
  list.replaceChildren(h("li", { class: "muted" }, L.push_loading));
  if (!pushDialog.open) pushDialog.showModal();
  let choices;
  try {
    const response = await fetch(`/api/supervisor/items/${item.id}/eligible-agents/`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    choices = await response.json();
    if (!response.ok) throw new Error(choices.detail || response.statusText);
  } catch (error) {
    list.replaceChildren(h("li", { class: "muted" }, fmt(L.failed, { reason: error.message })));
    return;
  }
  if (!choices.agents.length) {
    list.replaceChildren(h("li", { class: "muted" }, L.push_nobody));
    return;
  }
  list.replaceChildren(...choices.agents.map((a) => h("li",
    { class: a.can_push ? null : "is-blocked", dataset: { agent: a.id } },
    h("span", { class: "sv-push-name" }, `${a.name} (${a.used_capacity}/${a.capacity})`),
    a.text ? h("span", { class: "muted sv-push-why" }, a.text) : null,
    a.can_push
      ? h("button", { type: "button", "aria-label": fmt(L.push_agent, { agent: a.name }),
                      onclick: () => {
                        pushDialog.close();
                        act(`/api/supervisor/items/${item.id}/push/`, { agent: a.id },
                            fmt(L.done_push, { item: item.id, agent: a.name }));
                      } }, L.push)
      : null)));
}

/** Keep a table still while someone is choosing in one of its lists; redraw once they leave it.
 * (A focused button does not hold it: after "Move" the row must show where the item went.) */
function deferWhileFocused(body, name) {
  const active = document.activeElement;
  if (active && active.tagName === "SELECT" && body.contains(active)) {
    state.pending.add(name);
    return true;
  }
  return false;
}

for (const [selector, name, render] of [["#sv-agents tbody", "agents", renderAgents],
                                        ["#sv-next tbody", "next", renderNext]]) {
  document.querySelector(selector).addEventListener("focusout", (ev) => {
    if (ev.currentTarget.contains(ev.relatedTarget)) return;
    if (state.pending.delete(name)) setTimeout(() => { render(state.snap); tick(); }, 0);
  });
}

function render() {
  const snap = state.snap;
  renderTotals(snap);
  renderQueues(snap);
  renderAgents(snap);
  renderWork(snap);
  renderNext(snap);
  renderBacklog(snap);
  if (skillsDialog.open) fillSkillsDialog();
  const time = new Date(snap.at).toLocaleTimeString();
  setText("sv-updated", fmt(L.updated, { time }));
}

function applySnapshot(snap) {
  state.snap = snap;
  state.receivedAt = performance.now();
  render();
}

// --- Sorting and filtering -------------------------------------------------------------------

for (const th of document.querySelectorAll("#sv-agents th[data-sort]")) {
  const button = th.querySelector("button");
  button.setAttribute("aria-label", fmt(L.sort_by, { column: button.textContent.trim() }));
  button.addEventListener("click", () => {
    const key = th.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    for (const other of document.querySelectorAll("#sv-agents th[data-sort]")) {
      other.removeAttribute("aria-sort");
    }
    th.setAttribute("aria-sort", state.sort.dir === 1 ? "ascending" : "descending");
    renderAgents(state.snap);
    tick();
  });
}
for (const id of ["sv-agent-queue", "sv-agent-status"]) {
  document.getElementById(id).addEventListener("change", () => { renderAgents(state.snap); tick(); });
}

// --- Actions ---------------------------------------------------------------------------------

const feedback = document.getElementById("sv-feedback");

function say(text, ok) {
  feedback.hidden = false;
  feedback.className = `sv-feedback ${ok ? "ok" : "bad"}`;
  feedback.textContent = text;
}

/** Call the API; null when it succeeded, else the reason it gives. */
async function send(method, url, body) {
  return (await request(method, url, body)).reason;
}

/** Call the API: ``{reason: null, data}`` when it succeeded (its JSON answer), else the reason. */
async function request(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": CSRF,
                 Accept: "application/json" },
      body: body === null ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { reason: String(error), data: null };
  }
  if (response.ok) {
    let data = null;
    try { data = await response.json(); } catch (_error) { /* no body */ }
    return { reason: null, data };
  }
  let reason = response.statusText;
  try {
    const data = await response.json();
    reason = data.detail || Object.values(data).flat().join(" ") || reason;
  } catch (_error) { /* not JSON: keep the status text */ }
  return { reason, data: null };
}

/** ``success``: the words to say, or a function of the server's answer giving them (so what
 * is said is what the server did, never what the page asked for). */
async function act(url, body, success) {
  const { reason, data } = await request("POST", url, body);
  if (reason === null) {
    say(typeof success === "function" ? success(data) : success, true);
    requestRefresh();
  } else {
    say(fmt(L.failed, { reason }), false);
  }
}

// --- Live connection -------------------------------------------------------------------------

let live = null;

function setLive(text, cls) {
  setText("sv-live-text", text);
  document.getElementById("sv-live").className = `sv-live ${cls}`;
}

function requestRefresh() {
  if (live) live.send({ type: "refresh" });
}

function showConnection(status) {
  if (status.state === "open") setLive(L.live, "is-live");
  else if (status.state === "offline") setLive(L.reconnecting, "is-down");
  else if (status.state === "stopped") {
    setLive(status.code === 4401 ? L.signed_out : L.forbidden, "is-down");
  }
}

// --- Alerts (exception rules that notify) -----------------------------------------------------

const MAX_ALERTS = 20;

function showAlert(alert) {
  if (!alert || !alert.rule) return;
  const queue = (state.snap && state.snap.queues || []).find((q) => q.id === alert.queue_id);
  const count = (alert.items || []).length;
  const text = fmt(count === 1 ? L.alert_one : L.alert_many, {
    time: new Date(alert.at).toLocaleTimeString(),
    queue: queue ? queue.name : `#${alert.queue_id}`,
    rule: alert.rule.name,
    count,
    trigger: L[`trigger_${alert.rule.trigger}`] || alert.rule.trigger,
  });
  const list = document.getElementById("sv-alerts");
  const li = document.createElement("li");
  li.textContent = text;
  list.prepend(li);
  while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
  document.getElementById("sv-alerts-panel").hidden = false;
}

function connect() {
  live = openLiveSocket("/ws/supervisor/", {
    resyncSeconds: CONFIG.resyncSeconds,
    onState: showConnection,
    onMessage: (frame) => {
      if (frame.type === "snapshot") applySnapshot(frame.snapshot);
      else if (frame.type === "alert") showAlert(frame.alert);
    },
    // A snapshot follows every connect by itself; the timer asks for one in case the server's
    // own refresh went quiet.
    resync: (reason) => {
      if (reason === "timer") requestRefresh();
    },
  });
}

// --- Trends ----------------------------------------------------------------------------------

async function loadHistory() {
  const hours = Number(document.getElementById("sv-trend-hours").value || 4);
  const queue = document.getElementById("sv-trend-queue").value;
  const since = new Date(Date.now() - hours * 3600 * 1000).toISOString();
  const params = new URLSearchParams({ since });
  if (queue) params.set("queue", queue);
  try {
    const response = await fetch(`/api/supervisor/history/?${params}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    state.history = await response.json();
    drawTrends();
  } catch (_error) { /* the next refresh retries */ }
}

function drawTrends() {
  const hist = state.history;
  if (!hist) return;
  const to = Date.parse(hist.until);
  // Start where the data starts when that is later than asked (a new install, a fresh queue),
  // so a few minutes of samples are not squeezed against the right edge of a 24-hour axis.
  const firstSample = Math.min(...hist.queues.flatMap((q) => q.samples.map((s) => Date.parse(s.at))));
  const from = Number.isFinite(firstSample)
    ? Math.max(Date.parse(hist.since), firstSample - hist.interval_seconds * 1000)
    : Date.parse(hist.since);
  const colored = hist.queues.map((q, n) => ({ ...q, color: PALETTE[n % PALETTE.length] }));
  const series = (field) => colored.map((q) => ({
    name: q.name, color: q.color,
    points: q.samples.map((s) => ({ t: Date.parse(s.at), v: s[field] })),
  }));
  const since = new Date(from).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const summary = (metric, field, format) => colored.map((q) => {
    const values = q.samples.map((s) => s[field]).filter((v) => v !== null);
    if (!values.length) return `${q.name}: ${L.no_data}`;
    return fmt(L.chart_summary, { metric, queue: q.name, last: format(values[values.length - 1]),
                                  max: format(Math.max(...values)), since });
  }).join(" ");
  const goals = new Set(colored.map((q) => q.service_level_goal_percent));
  lineChart(document.getElementById("chart-backlog"), {
    series: series("waiting"), from, to, empty: L.no_data, minMax: 4,
    label: summary(L.chart_backlog, "waiting", String),
  });
  lineChart(document.getElementById("chart-longest"), {
    series: series("longest_wait_seconds"), from, to, empty: L.no_data, format: duration,
    minMax: 60,
    label: summary(L.chart_longest, "longest_wait_seconds", duration),
  });
  lineChart(document.getElementById("chart-sl"), {
    series: series("service_level_percent"), from, to, empty: L.no_data, fixedMax: 100,
    goal: goals.size === 1 ? [...goals][0] : null, format: (v) => `${Math.round(v)}%`,
    label: summary(L.chart_sl, "service_level_percent", (v) => `${v}%`),
  });
  document.getElementById("sv-legend").replaceChildren(...colored.map((q) =>
    h("li", {}, h("span", { class: "sv-swatch", style: `background:${q.color}`,
                            "aria-hidden": "true" }), q.name)));
}

for (const id of ["sv-trend-queue", "sv-trend-hours"]) {
  document.getElementById(id).addEventListener("change", loadHistory);
}

// --- Start -----------------------------------------------------------------------------------

render();
tick();
setInterval(tick, 1000);
connect();
loadHistory();
setInterval(loadHistory, 60000);
