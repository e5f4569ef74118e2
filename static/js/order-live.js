// The live order page (DESIGN.md sections 4-6): keeps the page on the
// server's state. OrderStream brings snapshot, event and heartbeat frames
// over the socket or the long poll; OrderView draws. Here lives the order's
// state in between: events are applied strictly in version order, each by
// the one rule the server's `changes` make possible, and a gap or a newer
// heartbeat asks for a resync, with the REST detail as the last word.

import { STATUS, fetchJson, parseTrajectory, readJson } from "./map-common.js";
import { OrderStream } from "./order-stream.js";
import { OrderView } from "./order-view.js";

// Timings; window.xiaoxiangLiveTuning (set before this module runs) may override them, e.g. in tests.
const TUNING = window.xiaoxiangLiveTuning || {};
const RESYNC_WAIT_MS = TUNING.resyncWaitMs ?? 4000;

class OrderLive {
  constructor({ snapshot, config }) {
    this.orderId = config.orderId;
    this.snapshot = snapshot;
    this.version = Number(snapshot.version) || 0;
    this.pending = new Map(); // version -> event frame, waiting for a gap to fill
    this.resyncTimer = null;
    this.view = new OrderView({ snapshot, config, loadTrajectory: () => this.loadTrajectory() });
    this.stream = new OrderStream({
      orderId: this.orderId,
      appliedVersion: () => this.version,
      onFrame: (frame) => this.onFrame(frame),
      onMode: (mode) => this.view.setConnection(mode),
      tuning: TUNING,
    });
    this.view.noteEta(snapshot.eta);
    this.view.render(snapshot);
    this.view.riderPosition(snapshot);
  }

  start() {
    this.view.bindActions((action) => this.act(action));
    this.loadHistory();
    this.loadEtaTrail();
    this.stream.start();
    // "About N minutes" goes stale on its own.
    setInterval(() => this.view.renderEta(this.snapshot), 30000);
  }

  async loadTrajectory() {
    return parseTrajectory(await fetchJson(`/api/orders/${this.orderId}/trajectory/`));
  }

  // How the ETA moved before the page opened, from the order's eta events.
  async loadEtaTrail() {
    const status = Number(this.snapshot.status);
    if (status !== STATUS.PAID && status !== STATUS.DELIVERING) return;
    try {
      const page = await fetchJson(`/api/orders/${this.orderId}/events/?since_version=0&limit=500`);
      const etas = (page.events || [])
        .filter((event) => event.kind === "eta" && event.data && event.data.eta)
        .map((event) => event.data.eta);
      if (etas.length === 0) return;
      this.view.setEtaHistory([...etas, this.snapshot.eta]);
      this.view.renderEta(this.snapshot);
    } catch (error) {
      console.warn("eta history unavailable", error);
    }
  }

  // The path so far, from the trajectory.
  async loadHistory() {
    const status = Number(this.snapshot.status);
    if (status !== STATUS.DELIVERING && status !== STATUS.COMPLETED) return;
    try {
      this.view.setHistory(await this.loadTrajectory());
      this.view.riderPosition(this.snapshot);
    } catch (error) {
      console.warn("trajectory unavailable", error);
    }
  }

  // Pay (simulated) or cancel through the REST API; the answer is the updated snapshot.
  async act(action) {
    try {
      const order = await fetchJson(`/api/orders/${this.orderId}/${action}/`, {
        method: "POST",
        body: { expected_version: this.version },
      });
      if (Number(order.version) >= this.version) this.applySnapshot(order, order.version);
    } catch (failure) {
      this.refreshSnapshot().catch(() => {});
      throw failure;
    }
  }

  // One frame from the stream, whichever transport brought it; a returned promise is a REST refresh.
  onFrame(frame) {
    switch (frame.type) {
      case "snapshot":
        this.applySnapshot(frame.order || {}, frame.version);
        return null;
      case "event":
        if (this.applyEvent(frame) === "gap") return this.requestResync();
        this.drainPending();
        return null;
      case "heartbeat":
        return Number(frame.version) > this.version ? this.requestResync() : null;
      default:
        return null;
    }
  }

  applySnapshot(order, version) {
    const previousVersion = this.version;
    this.snapshot = { ...order };
    this.version = Number(version ?? order.version) || this.version;
    for (const key of [...this.pending.keys()]) if (key <= this.version) this.pending.delete(key);
    this.view.noteEta(this.snapshot.eta);
    this.view.render(this.snapshot);
    this.view.riderPosition(this.snapshot);
    this.view.showUpdated(this.version);
    // Points may have arrived while we were away: refill the path once.
    if (this.version > previousVersion + 1 && Number(this.snapshot.status) === STATUS.DELIVERING) this.loadHistory();
    this.drainPending();
  }

  // Returns "applied", "duplicate" or "gap".
  applyEvent(frame) {
    const version = Number(frame.version);
    if (!Number.isFinite(version) || version <= this.version) return "duplicate";
    if (version > this.version + 1) {
      this.pending.set(version, frame);
      return "gap";
    }
    this.version = version;
    const { event = {}, changes } = frame;
    const snapshot = this.snapshot;
    // The server says what the event changed (position, status, timeline, ETA...), on the socket and the
    // poll alike; the page adds only the point to the drawn path.
    Object.assign(snapshot, changes);
    if (event.kind === "location") {
      this.view.addPoint(
        { lat: event.lat, lon: event.lon, time: event.recorded_at },
        { status: Number(event.status ?? snapshot.status) },
      );
    } else if (event.kind === "eta") {
      this.view.notePreviousEta((event.data || {}).previous_eta);
    }
    if (snapshot.eta) this.view.noteEta(snapshot.eta);
    this.view.render(snapshot);
    this.view.showUpdated(this.version);
    return "applied";
  }

  drainPending() {
    while (this.pending.has(this.version + 1)) {
      const frame = this.pending.get(this.version + 1);
      this.pending.delete(this.version + 1);
      this.applyEvent(frame);
    }
    for (const key of [...this.pending.keys()]) if (key <= this.version) this.pending.delete(key);
    if (this.pending.size === 0 && this.resyncTimer) {
      clearTimeout(this.resyncTimer);
      this.resyncTimer = null;
    }
  }

  // The socket replays what was missed; if that does not close the gap (or never comes), the REST
  // detail does. With no open socket to ask (polling) the REST detail answers at once.
  requestResync() {
    if (this.resyncTimer) return null;
    if (!this.stream.resync(this.version)) return this.resyncFromRest();
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      this.resyncFromRest();
    }, RESYNC_WAIT_MS);
    return null;
  }

  async resyncFromRest() {
    try {
      await this.refreshSnapshot();
    } catch (error) {
      console.warn("resync via REST failed", error);
    }
  }

  // The REST detail is the source of truth when the stream cannot say.
  async refreshSnapshot() {
    const order = await fetchJson(`/api/orders/${this.orderId}/`);
    if (Number(order.version) >= this.version) this.applySnapshot(order, order.version);
  }
}

function main() {
  const snapshot = readJson("order-snapshot");
  const config = readJson("order-config");
  if (!snapshot || !config || !window.L) return;
  const live = new OrderLive({ snapshot, config });
  live.start();
  // Read-only handle for debugging and the browser tests.
  window.orderLive = {
    get version() {
      return live.version;
    },
    get mode() {
      return live.stream.mode;
    },
    get status() {
      return Number(live.snapshot.status);
    },
    riderLatLng() {
      if (!live.view.riderMarker) return null;
      const latLng = live.view.riderMarker.marker.getLatLng();
      return [latLng.lat, latLng.lng];
    },
    pathLength() {
      return live.view.path.length;
    },
    replayProgress() {
      return live.view.replay ? Number(document.getElementById("replay").dataset.progress) : null;
    },
  };
}

main();
