/* OmniRouter live socket: one WebSocket kept open for a page, and the page kept in step.
 *
 *   import { openLiveSocket } from "./livesocket.js";
 *   const live = openLiveSocket("/ws/agent/", {
 *     onMessage: (frame) => ...,           // every JSON frame from the server
 *     onState: (status) => ...,            // {state, retryAt, code}: draw the connection badge
 *     resync: (reason) => ...,             // "open" (every (re)connect) or "timer": re-read state
 *     resyncSeconds: 60,                   // the page's setting (REALTIME_RESYNC_SECONDS)
 *   });
 *   live.send({type: "sync"});  live.isOpen();  live.reconnectNow();  live.close();
 *
 * state is "connecting", "open", "offline" (retryAt: when the next attempt starts, in Date.now()
 * milliseconds) or "stopped" (the server closed with an application code meaning "do not retry",
 * such as 4401 signed out or 4403 forbidden: see docs/websocket-protocol.md; code says which).
 *
 * Reconnects wait with exponential backoff and full jitter (a random delay between 0 and
 * 1 s doubling up to 30 s), so a restarted server is not met by every page at the same instant.
 * Events are hints and can be lost (a layer restart, a dropped socket), so the page's resync runs
 * on every connect and every resyncSeconds while open.
 */

export const STOP_CODES = [4401, 4403, 4404];
export const BASE_DELAY_MS = 1000;
export const MAX_DELAY_MS = 30000;

/** Full jitter: uniform in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt, { baseMs = BASE_DELAY_MS, maxMs = MAX_DELAY_MS, random = Math.random } = {}) {
  return random() * Math.min(maxMs, baseMs * 2 ** attempt);
}

function socketUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${path}`;
}

export function openLiveSocket(path, options = {}) {
  const {
    onMessage = () => {},
    onOpen = () => {},
    onClose = () => {},
    onState = () => {},
    resync = () => {},
    resyncSeconds = 60,
    stopCodes = STOP_CODES,
  } = options;
  let socket = null;
  let attempts = 0;
  let retryTimer = null;
  let resyncTimer = null;
  let closed = false;
  let status = { state: "connecting", retryAt: null, code: null };

  function setStatus(next) {
    status = { retryAt: null, code: null, ...next };
    onState(status);
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (closed || (socket && socket.readyState <= WebSocket.OPEN)) return;
    setStatus({ state: "connecting" });
    const ws = new WebSocket(socketUrl(path));
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      attempts = 0;
      setStatus({ state: "open" });
      onOpen();
      resync("open");
      const seconds = Number(resyncSeconds);
      if (seconds > 0) resyncTimer = setInterval(() => resync("timer"), seconds * 1000);
    });
    ws.addEventListener("message", (event) => {
      if (socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_err) {
        return; // not ours to read: the protocol only sends JSON
      }
      onMessage(frame);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      clearInterval(resyncTimer);
      resyncTimer = null;
      onClose(event);
      if (closed) return;
      if (stopCodes.includes(event.code)) {
        closed = true;
        setStatus({ state: "stopped", code: event.code });
        return;
      }
      const delay = backoffDelay(attempts);
      attempts += 1;
      retryTimer = setTimeout(connect, delay);
      setStatus({ state: "offline", retryAt: Date.now() + delay, code: event.code });
    });
  }

  function reconnectNow() {
    if (closed || status.state !== "offline") return;
    attempts = 0;
    connect();
  }

  // The network is back: no reason to sit out the rest of a long backoff.
  window.addEventListener("online", reconnectNow);

  connect();

  return {
    get status() {
      return status;
    },
    isOpen: () => Boolean(socket && socket.readyState === WebSocket.OPEN),
    send(frame) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify(frame));
      return true;
    },
    reconnectNow,
    close() {
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(resyncTimer);
      window.removeEventListener("online", reconnectNow);
      if (socket) socket.close();
      socket = null;
    },
  };
}
