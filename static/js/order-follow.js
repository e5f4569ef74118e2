// One order's live stream for pages that only need its current snapshot (the
// order list, the warehouse and rider terminals, the admin order map): the
// socket's snapshot, then `changes` merged in strict version order. A gap asks
// the socket to resync; a lost socket reconnects with backoff and starts again
// from a fresh snapshot. The live order page keeps its own, richer client.

import { backoffDelay, fetchJson, watchSocket, wsUrl } from "./map-common.js";

const HEARTBEAT_TIMEOUT_MS = 45000;
const TERMINAL_CLOSE_CODES = new Set([4401, 4403, 4404]);

export class OrderStream {
  // onChange(snapshot, event|null) after every applied frame; event is null for a snapshot.
  constructor(orderId, { onChange, onState = () => {} }) {
    this.orderId = orderId;
    this.onChange = onChange;
    this.onState = onState;
    this.snapshot = null;
    this.version = -1;
    this.ws = null;
    this.watchdog = null;
    this.failures = 0;
    this.stopped = false;
  }

  start() {
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.watchdog);
    if (ws) ws.close(1000);
  }

  connect() {
    if (this.stopped || this.ws) return;
    const ws = new WebSocket(wsUrl(`/ws/orders/${this.orderId}/`));
    this.ws = ws;
    watchSocket(this, ws, {
      timeoutMs: HEARTBEAT_TIMEOUT_MS,
      onMessage: (message) => this.onMessage(message),
      onLost: (lost, code) => this.lost(lost, code),
    });
  }

  onMessage(message) {
    if (message.type === "snapshot") {
      this.failures = 0;
      this.snapshot = { ...message.order };
      this.version = Number(message.version);
      this.onState("live");
      this.onChange(this.snapshot, null);
    } else if (message.type === "event") {
      this.apply(message.event || {}, message.changes, Number(message.version));
    } else if (message.type === "heartbeat" && Number(message.version) > this.version) {
      this.resync();
    }
  }

  apply(event, changes, version) {
    if (!this.snapshot || version <= this.version) return;
    if (version !== this.version + 1) {
      this.resync();
      return;
    }
    this.version = version;
    Object.assign(this.snapshot, changes || {}, { version });
    this.onChange(this.snapshot, event);
  }

  resync() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "resync", since_version: Math.max(0, this.version) }));
    }
  }

  lost(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.watchdog);
    if (this.stopped) return;
    this.failures += 1;
    this.onState("reconnecting");
    if (TERMINAL_CLOSE_CODES.has(code)) {
      this.stopped = true;
      this.onState("closed");
      return;
    }
    setTimeout(() => this.connect(), backoffDelay(this.failures));
  }
}

/**
 * POST a change of an order guarded by expected_version, as the user saw it.
 *
 * Background jobs (ETA, alerts, the rider's own GPS points) bump an order's
 * version without touching what the user acted on, so the version is read
 * fresh right before the POST, and a 409 is retried once, but only while
 * `unchanged(order)` says the order is still what the user saw: a stage or
 * status changed by someone else is never overwritten, it is a 409 for the user.
 */
export async function postGuarded(orderId, url, body, unchanged) {
  for (let attempt = 0; ; attempt += 1) {
    const current = await fetchJson(`/api/orders/${orderId}/`);
    if (!unchanged(current)) {
      const error = new Error("the order changed");
      error.status = 409;
      error.data = { detail: "The order changed meanwhile.", version: current.version };
      throw error;
    }
    try {
      return await fetchJson(url, { method: "POST", body: { ...body, expected_version: current.version } });
    } catch (error) {
      if (error.status !== 409 || attempt >= 1) throw error;
    }
  }
}
