// The live order page's connection to the server (DESIGN.md sections 4-5).
//
// A WebSocket to /ws/orders/{id}/ (session cookie) while it works. Silence
// longer than the heartbeat timeout means the socket is dead. Reconnects back
// off exponentially with jitter; after repeated failures the page long-polls
// /api/orders/{id}/poll/ and keeps trying to upgrade back to the socket.
//
// Both transports hand their consumer the same frames, in the socket's shape:
//   {type: "snapshot", version, order}
//   {type: "event", version, event, changes}
//   {type: "heartbeat", version}  (the newest version the server knows)
// and say which mode they are in: connecting, live, reconnecting, polling,
// offline, login or denied.

import { backoffDelay, fetchJson, watchSocket, wsUrl } from "./map-common.js";

const DEFAULT_TUNING = {
  heartbeatTimeoutMs: 45000, // the server beats every 20 s
  wsFailuresBeforePolling: 3,
  pollTimeoutSeconds: 25,
  upgradeRetry: { baseMs: 15000, maxMs: 60000 },
};
const TERMINAL_CLOSE_CODES = new Set([4403, 4404]);
const FRAME_TYPES = new Set(["snapshot", "event", "heartbeat"]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class OrderStream {
  // appliedVersion() is the newest version the consumer applied (polls ask for what follows it).
  // onFrame(frame) may return a promise: the poll loop waits for it before asking again.
  constructor({ orderId, appliedVersion, onFrame, onMode, tuning = {} }) {
    this.orderId = orderId;
    this.appliedVersion = appliedVersion;
    this.onFrame = onFrame;
    this.onMode = onMode;
    this.tuning = { ...DEFAULT_TUNING, ...tuning };
    this.ws = null;
    this.watchdog = null;
    this.reconnectTimer = null;
    this.wsFailures = 0;
    this.polling = false;
    this.pollToken = 0;
    this.pollAbort = null;
    this.mode = "connecting";
    this.stopped = false;
  }

  start() {
    this.connect();
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.setMode("offline"));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.ws) this.reconnectNow();
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.onMode(mode);
  }

  // Asks the socket to replay what followed sinceVersion; false when no open socket can be asked.
  resync(sinceVersion) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ type: "resync", since_version: sinceVersion }));
    return true;
  }

  connect() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (!this.polling) this.setMode(this.wsFailures === 0 && this.mode === "connecting" ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(wsUrl(`/ws/orders/${this.orderId}/`));
    } catch (error) {
      this.onSocketLost(null, 1006);
      return;
    }
    this.ws = ws;
    watchSocket(this, ws, {
      timeoutMs: this.tuning.heartbeatTimeoutMs,
      onMessage: (frame) => this.onSocketFrame(frame),
      onLost: (lost, code) => this.onSocketLost(lost, code),
    });
  }

  onSocketFrame(frame) {
    if (!FRAME_TYPES.has(frame.type)) return;
    if (frame.type === "snapshot") {
      this.wsFailures = 0;
      this.stopPolling();
      this.setMode("live");
    }
    this.onFrame(frame);
  }

  onSocketLost(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.watchdog);
    const { wsFailuresBeforePolling } = this.tuning;
    this.wsFailures += 1;
    if (TERMINAL_CLOSE_CODES.has(code)) this.wsFailures = Math.max(this.wsFailures, wsFailuresBeforePolling);
    if (this.wsFailures >= wsFailuresBeforePolling) this.startPolling();
    else this.setMode(navigator.onLine === false ? "offline" : "reconnecting");
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped || this.reconnectTimer) return;
    // While polling works, probing the socket again is an upgrade attempt: slower cadence.
    const delay = this.polling
      ? backoffDelay(this.wsFailures - this.tuning.wsFailuresBeforePolling + 1, this.tuning.upgradeRetry)
      : backoffDelay(this.wsFailures);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  reconnectNow() {
    if (this.ws || this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connect();
  }

  startPolling() {
    if (this.polling || this.stopped) return;
    this.polling = true;
    this.setMode("polling");
    this.pollLoop(++this.pollToken);
  }

  stopPolling() {
    if (!this.polling) return;
    this.polling = false;
    this.pollToken += 1;
    if (this.pollAbort) this.pollAbort.abort();
    this.pollAbort = null;
  }

  // The first poll is the catch-up: it answers at once when the socket missed anything.
  async pollLoop(token) {
    const timeoutS = this.tuning.pollTimeoutSeconds;
    let errors = 0;
    while (this.polling && token === this.pollToken) {
      const controller = new AbortController();
      this.pollAbort = controller;
      const timer = setTimeout(() => controller.abort(), (timeoutS + 10) * 1000);
      try {
        const page = await fetchJson(
          `/api/orders/${this.orderId}/poll/?since_version=${this.appliedVersion()}&timeout=${timeoutS}`,
          { signal: controller.signal },
        );
        if (!this.polling || token !== this.pollToken) return;
        errors = 0;
        if (this.mode !== "polling") this.setMode("polling");
        for (const frame of pollFrames(page)) await this.onFrame(frame);
      } catch (error) {
        if (!this.polling || token !== this.pollToken) return;
        if (this.stopOnPollError(error)) return;
        errors += 1;
        this.setMode(navigator.onLine === false ? "offline" : "polling");
        await sleep(backoffDelay(errors, { baseMs: 1000, maxMs: 30000 }));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  // True when polling cannot help (logged out, or the order is gone).
  stopOnPollError(error) {
    const mode = error.status === 401 || error.status === 403 ? "login" : error.status === 404 ? "denied" : null;
    if (!mode) return false;
    this.stopPolling();
    this.stopped = true;
    this.setMode(mode);
    return true;
  }
}

// A poll answer as socket frames: its events in version order, each with the
// `changes` it carries, then the order's version as a heartbeat would say it.
function pollFrames(page) {
  const events = (page.events || []).slice().sort((a, b) => Number(a.version) - Number(b.version));
  const frames = events.map(({ changes, ...event }) => ({ type: "event", version: event.version, event, changes }));
  frames.push({ type: "heartbeat", version: page.version });
  return frames;
}
