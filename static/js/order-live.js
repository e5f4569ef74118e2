// The live order page: map, status timeline, ETA and a connection that keeps
// the page on the server's state (DESIGN.md sections 4-6).
//
// Transport: a WebSocket to /ws/orders/{id}/ (session cookie). Every message
// carries the order version; events are applied strictly in version order and
// a gap triggers {"type": "resync"}. Silence longer than the heartbeat
// timeout means the socket is dead. Reconnects back off exponentially with
// jitter; after repeated failures the page long-polls the REST API and keeps
// trying to upgrade back to the socket.

import {
  STAGE_LABELS,
  STATUS,
  STATUS_LABELS,
  SmoothMarker,
  backoffDelay,
  createMap,
  el,
  fetchJson,
  fitTo,
  formatDateTime,
  formatTime,
  icons,
  parseTime,
  parseTrajectory,
  readJson,
  watchSocket,
  wsUrl,
} from "./map-common.js";
import { TrajectoryReplay } from "./replay.js";

const L = window.L;

// Timings; window.xiaoxiangLiveTuning (set before this module runs) may override them, e.g. in tests.
const TUNING = {
  heartbeatTimeoutMs: 45000, // the server beats every 20 s
  wsFailuresBeforePolling: 3,
  pollTimeoutSeconds: 25,
  resyncWaitMs: 4000,
  upgradeRetry: { baseMs: 15000, maxMs: 60000 },
  ...(window.xiaoxiangLiveTuning || {}),
};
const HEARTBEAT_TIMEOUT_MS = TUNING.heartbeatTimeoutMs;
const WS_FAILURES_BEFORE_POLLING = TUNING.wsFailuresBeforePolling;
const POLL_TIMEOUT_S = TUNING.pollTimeoutSeconds;
const RESYNC_WAIT_MS = TUNING.resyncWaitMs;
const UPGRADE_RETRY = TUNING.upgradeRetry;
const TERMINAL_CLOSE_CODES = new Set([4403, 4404]);

const CONNECTION_LABELS = {
  connecting: "连接中",
  live: "实时",
  reconnecting: "重连中",
  polling: "轮询",
  offline: "网络已断开",
  denied: "无法查看",
  login: "请重新登录",
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const finite = (value) => value !== null && value !== undefined && value !== "" && Number.isFinite(Number(value));

function latLngOf(point) {
  if (!point) return null;
  const lon = point.lon ?? point.lng;
  return finite(point.lat) && finite(lon) ? [Number(point.lat), Number(lon)] : null;
}

// --- The page ------------------------------------------------------------------

class OrderView {
  constructor({ snapshot, config }) {
    this.config = config;
    this.role = config.role;
    this.map = createMap(document.getElementById("order-map"), { tileUrl: config.tileUrl });
    this.userMovedMap = false;
    const container = this.map.getContainer();
    for (const name of ["wheel", "touchstart", "mousedown"]) {
      container.addEventListener(name, () => (this.userMovedMap = true), { passive: true });
    }
    this.path = []; // [{lat, lon, time}] sorted by time
    this.pathLine = L.polyline([], { color: "#ff7a00", weight: 5, opacity: 0.85, lineJoin: "round" }).addTo(this.map);
    this.riderMarker = null;
    this.riderAt = null;
    this.etaHistory = [];
    this.replay = null;
    this.replayTime = null;

    const warehouse = latLngOf(snapshot.warehouse);
    if (warehouse) {
      L.marker(warehouse, { icon: icons.warehouse(), title: "仓库", keyboard: false })
        .bindPopup(el("div", {}, el("strong", { text: snapshot.warehouse.name }), el("br"), "发货仓库"))
        .addTo(this.map);
    }
    const home = latLngOf(snapshot.delivery);
    if (home) {
      L.marker(home, { icon: icons.home(), title: "收货地址", keyboard: false })
        .bindPopup("收货地址")
        .addTo(this.map);
    }
    this.fixedPoints = [warehouse, home].filter(Boolean);
    fitTo(this.map, this.fixedPoints);

    this.connection = document.getElementById("conn-indicator");
    document.getElementById("replay-offer").addEventListener("click", () => this.startReplay());
  }

  // Whole-snapshot render; cheap enough to run on every change.
  render(snapshot) {
    const status = Number(snapshot.status);
    const pill = document.getElementById("status-pill");
    pill.textContent = STATUS_LABELS[status] || snapshot.status_display || "";
    pill.className = `status-pill status-${status}`;
    document.getElementById("order-live").dataset.status = String(status);
    document.getElementById("status-headline").textContent = this.headline(snapshot);
    this.renderEta(snapshot);
    this.renderRider(snapshot);
    this.renderTimeline(snapshot);
    const total = document.getElementById("order-total");
    if (snapshot.total_amount) total.textContent = `¥${snapshot.total_amount}`;
    document.getElementById("replay-offer").hidden = status !== STATUS.COMPLETED || Boolean(this.replay);
    const customer = this.role === "customer";
    const canPay = customer && status === STATUS.PENDING;
    const canCancel = (customer || this.role === "staff") && (status === STATUS.PENDING || status === STATUS.PAID);
    document.getElementById("action-pay").hidden = !canPay;
    document.getElementById("action-cancel").hidden = !canCancel;
    document.getElementById("order-actions").hidden = !canPay && !canCancel;
    if (status !== STATUS.DELIVERING && status !== STATUS.COMPLETED && this.riderMarker) {
      this.riderMarker.marker.remove();
      this.riderMarker = null;
    }
  }

  headline(snapshot) {
    const status = Number(snapshot.status);
    if (status === STATUS.PENDING) return "订单待支付";
    if (status === STATUS.PAID) {
      if (snapshot.stage === "packed") return "已打包，等待骑手取货";
      if (snapshot.stage === "picked") return "拣货完成，正在打包";
      if (snapshot.stage === "picking") return "仓库正在为您拣货";
      return "仓库已接单，即将开始拣货";
    }
    if (status === STATUS.DELIVERING) return "骑手正在为您配送";
    if (status === STATUS.COMPLETED) return "订单已送达，祝您用餐愉快";
    if (status === STATUS.CANCELLED) return "订单已取消";
    return snapshot.status_display || "";
  }

  noteEta(eta) {
    const time = parseTime(eta);
    if (!time) return;
    const last = this.etaHistory[this.etaHistory.length - 1];
    if (last && last.getTime() === time.getTime()) return;
    // The customer reads minutes: a move within the same minute is not a change.
    if (last && formatTime(last) === formatTime(time)) this.etaHistory[this.etaHistory.length - 1] = time;
    else this.etaHistory.push(time);
    if (this.etaHistory.length > 5) this.etaHistory.shift();
  }

  renderEta(snapshot) {
    const status = Number(snapshot.status);
    const main = document.getElementById("eta-main");
    const change = document.getElementById("eta-change");
    const promised = document.getElementById("eta-promised");
    const eta = parseTime(snapshot.eta);
    const promisedAt = parseTime(snapshot.promised_at);
    change.hidden = true;
    promised.textContent = promisedAt ? `承诺 ${formatTime(promisedAt)} 前送达` : "";
    if (status === STATUS.COMPLETED) {
      const delivered = (snapshot.timeline || []).find((entry) => Number(entry.status) === STATUS.COMPLETED);
      main.textContent = delivered ? `${formatDateTime(delivered.time)} 已送达` : "已送达";
      return;
    }
    if (status === STATUS.CANCELLED) {
      const paid = (snapshot.timeline || []).some((entry) => Number(entry.status) === STATUS.PAID);
      main.textContent = paid ? "款项将原路退回，预计 1–3 个工作日到账" : "";
      promised.textContent = "";
      return;
    }
    if (status === STATUS.PENDING) {
      main.textContent = "支付后仓库立即开始备货";
      return;
    }
    if (!eta) {
      main.textContent = "正在计算预计送达时间…";
      return;
    }
    this.noteEta(eta);
    const minutes = Math.max(1, Math.round((eta.getTime() - Date.now()) / 60000));
    main.replaceChildren("预计 ", el("strong", { text: formatTime(eta) }), ` 送达 · 约 ${minutes} 分钟`);
    const previous = this.etaHistory[this.etaHistory.length - 2];
    if (previous) {
      const minuteOf = (time) => Math.floor(time.getTime() / 60000);
      const delta = minuteOf(eta) - minuteOf(previous);
      if (delta !== 0) {
        const trail = this.etaHistory.map((time) => formatTime(time)).join(" → ");
        change.textContent = `${delta > 0 ? `比之前预计晚 ${delta} 分钟` : `比之前预计早 ${-delta} 分钟`}（${trail}）`;
        change.className = `eta-change small ${delta > 0 ? "is-later" : "is-earlier"}`;
        change.hidden = false;
      }
    }
    if (promisedAt && eta.getTime() > promisedAt.getTime() + 60000) {
      promised.textContent = `承诺 ${formatTime(promisedAt)} 前送达 · 可能晚到，非常抱歉`;
      promised.classList.add("is-late");
    } else promised.classList.remove("is-late");
  }

  renderRider(snapshot) {
    const line = document.getElementById("rider-line");
    const rider = snapshot.rider;
    const status = Number(snapshot.status);
    line.hidden = !rider || (status !== STATUS.DELIVERING && status !== STATUS.COMPLETED);
    if (!rider) return;
    const name = rider.name || rider.username || "";
    document.getElementById("rider-name").textContent = name.startsWith("骑手") ? name : `骑手 ${name}`;
    const updated = document.getElementById("rider-updated");
    const position = snapshot.rider_position;
    updated.textContent =
      status === STATUS.DELIVERING && position && position.recorded_at
        ? ` · 位置更新于 ${formatTime(position.recorded_at, { seconds: true })}`
        : "";
  }

  timelineSteps(snapshot) {
    const entries = snapshot.timeline || [];
    const timeOf = (predicate) => {
      const entry = entries.find(predicate);
      return entry ? entry.time : null;
    };
    const statusTime = (status) => timeOf((e) => e.kind === "status" && Number(e.status) === status);
    const stageTime = (stage) => timeOf((e) => e.kind === "stage" && e.stage === stage);
    const rider = snapshot.rider && (snapshot.rider.name || snapshot.rider.username);
    const steps = [
      { key: "s1", label: "订单已提交", time: statusTime(STATUS.PENDING) || snapshot.create_time },
      { key: "s2", label: "支付成功，仓库已接单", time: statusTime(STATUS.PAID) },
      { key: "picking", label: STAGE_LABELS.picking, time: stageTime("picking"), stage: true },
      { key: "picked", label: STAGE_LABELS.picked, time: stageTime("picked"), stage: true },
      { key: "packed", label: STAGE_LABELS.packed, time: stageTime("packed"), stage: true },
      {
        key: "s3",
        label: rider ? `${rider.startsWith("骑手") ? rider : `骑手 ${rider}`} 已取货，配送中` : "骑手已取货，配送中",
        time: statusTime(STATUS.DELIVERING),
      },
      { key: "s4", label: "已送达", time: statusTime(STATUS.COMPLETED) },
    ];
    const cancelled = statusTime(STATUS.CANCELLED);
    if (Number(snapshot.status) === STATUS.CANCELLED) {
      const done = steps.filter((step) => step.time);
      return [...done, { key: "s5", label: "订单已取消", time: cancelled || snapshot.update_time }];
    }
    // A later milestone implies the earlier ones even if an entry is missing.
    let reached = false;
    for (let i = steps.length - 1; i >= 0; i -= 1) {
      if (steps[i].time) reached = true;
      steps[i].reached = reached;
    }
    return steps;
  }

  renderTimeline(snapshot) {
    this.lastSnapshot = snapshot;
    const list = document.getElementById("timeline");
    const steps = this.timelineSteps(snapshot);
    const replayAt = this.replayTime ? this.replayTime.getTime() : null;
    let currentIndex = -1;
    steps.forEach((step, index) => {
      const time = parseTime(step.time);
      step.done = replayAt === null ? Boolean(step.reached || step.time) : Boolean(time && time.getTime() <= replayAt);
      if (step.done) currentIndex = index;
    });
    list.classList.toggle("is-replaying", replayAt !== null);
    list.replaceChildren(
      ...steps.map((step, index) =>
        el(
          "li",
          {
            class: [
              "timeline-step",
              step.stage ? "is-stage" : "is-status",
              step.done ? "is-done" : "is-pending",
              index === currentIndex ? "is-current" : "",
              step.key === "s5" ? "is-cancelled" : "",
            ]
              .filter(Boolean)
              .join(" "),
            "data-step": step.key,
          },
          el("span", { class: "timeline-dot", "aria-hidden": "true" }),
          el("span", { class: "timeline-label", text: step.label }),
          el("time", { class: "timeline-time", text: step.time ? formatDateTime(step.time) : "" }),
        ),
      ),
    );
  }

  setConnection(state) {
    this.connection.dataset.state = state;
    const label = this.connection.querySelector(".conn-label");
    if (state === "login") {
      const next = encodeURIComponent(window.location.pathname);
      label.replaceChildren(el("a", { href: `/accounts/login/?next=${next}`, text: CONNECTION_LABELS.login }));
    } else label.textContent = CONNECTION_LABELS[state] || state;
    this.connection.title =
      state === "polling" ? "实时连接不可用，正在通过轮询更新" : state === "live" ? "实时推送中" : "";
  }

  // --- rider and path ---

  setPath(points) {
    this.path = points
      .filter((point) => Number.isFinite(point.lat) && Number.isFinite(point.lon))
      .sort((a, b) => (a.time ? a.time.getTime() : 0) - (b.time ? b.time.getTime() : 0));
    this.pathLine.setLatLngs(this.path.map((point) => [point.lat, point.lon]));
    const newest = this.path[this.path.length - 1];
    if (newest && !this.riderAt) this.moveRider(newest, { animate: false });
    this.autoFit();
  }

  // A live or late point; late (older) points fill the path without moving the rider backwards.
  addPoint({ lat, lon, time }, { status }) {
    if (!Number.isFinite(lat) || !Number.isFinite(lon)) return;
    const point = { lat, lon, time: parseTime(time) || new Date() };
    let index = this.path.length;
    while (index > 0 && this.path[index - 1].time > point.time) index -= 1;
    this.path.splice(index, 0, point);
    this.pathLine.setLatLngs(this.path.map((p) => [p.lat, p.lon]));
    if (index === this.path.length - 1 && (status === undefined || status === STATUS.DELIVERING)) {
      this.moveRider(point, { animate: true });
    }
  }

  moveRider(point, { animate }) {
    const latLng = [point.lat, point.lon];
    if (!this.riderMarker) {
      const marker = L.marker(latLng, { icon: icons.rider(), title: "骑手", zIndexOffset: 900, keyboard: false });
      marker.addTo(this.map);
      this.riderMarker = new SmoothMarker(marker, { durationMs: 1500 });
    } else {
      this.riderMarker.moveTo(latLng, { animate });
    }
    this.riderAt = { ...point };
    document.getElementById("order-live").dataset.riderAt = `${point.lat.toFixed(5)},${point.lon.toFixed(5)}`;
    this.autoFit();
  }

  riderPosition(snapshot) {
    const position = snapshot.rider_position;
    const latLng = latLngOf(position);
    if (!latLng || Number(snapshot.status) !== STATUS.DELIVERING) return;
    const time = parseTime(position.recorded_at) || new Date();
    if (this.riderAt && this.riderAt.time && time <= this.riderAt.time) return;
    this.addPoint({ lat: latLng[0], lon: latLng[1], time }, { status: STATUS.DELIVERING });
  }

  autoFit() {
    if (this.userMovedMap || this.replay) return;
    const points = [...this.fixedPoints];
    if (this.riderAt) points.push([this.riderAt.lat, this.riderAt.lon]);
    fitTo(this.map, points);
  }

  // --- replay ---

  async startReplay() {
    const offer = document.getElementById("replay-offer");
    offer.disabled = true;
    offer.textContent = "正在加载轨迹…";
    try {
      const geojson = await fetchJson(`/api/orders/${this.config.orderId}/trajectory/`);
      const trajectory = parseTrajectory(geojson);
      if (trajectory.path.length === 0) {
        offer.textContent = "暂无轨迹可回放";
        return;
      }
      if (this.riderMarker) this.riderMarker.marker.setOpacity(0);
      this.pathLine.setStyle({ opacity: 0 });
      this.replay = new TrajectoryReplay({
        map: this.map,
        root: document.getElementById("replay"),
        onTime: (time) => {
          this.replayTime = time;
          if (this.lastSnapshot) this.renderTimeline(this.lastSnapshot);
        },
      });
      this.replay.load(trajectory);
      offer.hidden = true;
      // Leave room for the replay controls at the bottom of the map.
      fitTo(this.map, [...this.fixedPoints, ...trajectory.path.map((p) => [p.lat, p.lon])], { bottom: 100 });
      this.replay.play();
    } catch (error) {
      offer.disabled = false;
      offer.textContent = "轨迹加载失败，点击重试";
      console.warn("trajectory", error);
    } finally {
      offer.disabled = false;
    }
  }
}

// --- State and transport ---------------------------------------------------------

class OrderLive {
  constructor({ snapshot, config }) {
    this.orderId = config.orderId;
    this.snapshot = snapshot;
    this.version = Number(snapshot.version) || 0;
    this.view = new OrderView({ snapshot, config });
    this.pending = new Map(); // version -> {event, changes}, waiting for a gap to fill
    this.resyncTimer = null;
    this.ws = null;
    this.watchdog = null;
    this.reconnectTimer = null;
    this.wsFailures = 0;
    this.polling = false;
    this.pollToken = 0;
    this.pollAbort = null;
    this.mode = "connecting";
    this.stopped = false;
    this.view.noteEta(snapshot.eta);
    this.view.render(snapshot);
    this.view.riderPosition(snapshot);
  }

  start() {
    document.getElementById("action-pay").addEventListener("click", () => this.act("pay"));
    document.getElementById("action-cancel").addEventListener("click", () => {
      if (window.confirm("确定要取消这个订单吗？")) this.act("cancel");
    });
    this.loadHistory();
    this.loadEtaTrail();
    this.connect();
    // "About N minutes" goes stale on its own.
    setInterval(() => this.view.renderEta(this.snapshot), 30000);
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.setMode("offline"));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.ws) this.reconnectNow();
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.view.setConnection(mode);
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
      this.view.etaHistory = [];
      for (const eta of [...etas, this.snapshot.eta]) this.view.noteEta(eta);
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
      const geojson = await fetchJson(`/api/orders/${this.orderId}/trajectory/`);
      const { path, timed } = parseTrajectory(geojson);
      // Without per-point times the whole trajectory counts as older than what arrived live.
      if (!timed) for (const point of path) point.time = null;
      const newest = timed && path.length ? path[path.length - 1].time : null;
      const live = this.view.path.filter((point) => point.time && (!newest || point.time > newest));
      this.view.setPath([...path, ...live]);
      this.view.riderPosition(this.snapshot);
    } catch (error) {
      console.warn("trajectory unavailable", error);
    }
  }

  // Pay (simulated) or cancel through the REST API; the answer is the updated snapshot.
  async act(action) {
    const error = document.getElementById("action-error");
    const buttons = document.querySelectorAll("#order-actions button");
    error.hidden = true;
    buttons.forEach((button) => (button.disabled = true));
    try {
      const order = await fetchJson(`/api/orders/${this.orderId}/${action}/`, {
        method: "POST",
        body: { expected_version: this.version },
      });
      if (Number(order.version) >= this.version) this.applySnapshot(order, order.version);
    } catch (failure) {
      error.textContent =
        failure.status === 409 ? "订单状态已变化，已为您刷新。" : action === "pay" ? "支付失败，请稍后重试。" : "取消失败，请稍后重试。";
      error.hidden = false;
      this.refreshSnapshot().catch(() => {});
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  }

  // --- applying state ---

  applySnapshot(order, version) {
    const previousVersion = this.version;
    this.snapshot = { ...order };
    this.version = Number(version ?? order.version) || this.version;
    for (const key of [...this.pending.keys()]) if (key <= this.version) this.pending.delete(key);
    this.view.noteEta(this.snapshot.eta);
    this.view.render(this.snapshot);
    this.view.riderPosition(this.snapshot);
    this.touch();
    // Points may have arrived while we were away: refill the path once.
    if (this.version > previousVersion + 1 && Number(this.snapshot.status) === STATUS.DELIVERING) this.loadHistory();
    this.drainPending();
  }

  // Returns "applied", "duplicate" or "gap".
  applyEvent(event, changes) {
    const version = Number(event.version);
    if (!Number.isFinite(version)) return "duplicate";
    if (version <= this.version) return "duplicate";
    if (version > this.version + 1) {
      this.pending.set(version, { event, changes });
      return "gap";
    }
    this.version = version;
    const snapshot = this.snapshot;
    if (changes && typeof changes === "object") Object.assign(snapshot, changes);
    snapshot.version = version;
    const kind = event.kind;
    if (kind === "location") {
      const lat = Number(event.lat);
      const lon = Number(event.lon);
      if (finite(event.lat) && finite(event.lon)) {
        const status = Number(event.status ?? snapshot.status);
        this.view.addPoint({ lat, lon, time: event.recorded_at }, { status });
        const current = snapshot.rider_position;
        const time = parseTime(event.recorded_at);
        if (!changes || !("rider_position" in changes)) {
          if (!current || !parseTime(current.recorded_at) || (time && time >= parseTime(current.recorded_at))) {
            snapshot.rider_position = { lat, lon, recorded_at: event.recorded_at };
          }
        }
      }
    } else if (kind === "status" || kind === "stage") {
      if (event.status !== undefined && event.status !== null) snapshot.status = Number(event.status);
      if (kind === "stage") snapshot.stage = event.stage;
      if (!changes || !Array.isArray(changes.timeline)) {
        const timeline = snapshot.timeline || (snapshot.timeline = []);
        const exists = timeline.some(
          (entry) =>
            entry.kind === kind && Number(entry.status) === Number(event.status) && (entry.stage || null) === (event.stage || null),
        );
        if (!exists) timeline.push({ kind, status: event.status, stage: event.stage || null, time: event.recorded_at });
      }
    } else if (kind === "eta") {
      const data = event.data || {};
      const eta = (changes && changes.eta) || data.eta || data.new_eta;
      // The page may have opened after the previous estimate: start the history from it.
      if (data.previous_eta && this.view.etaHistory.length === 0) this.view.noteEta(data.previous_eta);
      if (eta) snapshot.eta = eta;
    }
    if (snapshot.eta) this.view.noteEta(snapshot.eta);
    this.view.render(snapshot);
    this.touch();
    return "applied";
  }

  drainPending() {
    while (this.pending.has(this.version + 1)) {
      const { event, changes } = this.pending.get(this.version + 1);
      this.pending.delete(this.version + 1);
      this.applyEvent(event, changes);
    }
    for (const key of [...this.pending.keys()]) if (key <= this.version) this.pending.delete(key);
    if (this.pending.size === 0 && this.resyncTimer) {
      clearTimeout(this.resyncTimer);
      this.resyncTimer = null;
    }
  }

  touch() {
    document.getElementById("last-update").textContent = `${formatTime(new Date(), { seconds: true })} 已更新`;
    document.getElementById("order-live").dataset.version = String(this.version);
  }

  // The REST detail is the source of truth when the stream cannot say.
  async refreshSnapshot() {
    const order = await fetchJson(`/api/orders/${this.orderId}/`);
    if (Number(order.version) >= this.version) this.applySnapshot(order, order.version);
  }

  // --- WebSocket ---

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
      timeoutMs: HEARTBEAT_TIMEOUT_MS,
      onMessage: (data) => this.onMessage(data),
      onLost: (lost, code) => this.onSocketLost(lost, code),
    });
  }

  onMessage(message) {
    switch (message.type) {
      case "snapshot":
        this.wsFailures = 0;
        this.stopPolling();
        this.setMode("live");
        this.applySnapshot(message.order || {}, message.version);
        break;
      case "event":
        this.handleStreamEvent(message.event || {}, message.changes, message.version);
        break;
      case "events":
        for (const event of message.events || []) this.handleStreamEvent(event, null, event.version);
        break;
      case "heartbeat":
        if (Number(message.version) > this.version) this.requestResync();
        break;
      default:
        break;
    }
  }

  handleStreamEvent(event, changes, version) {
    const withVersion = { ...event, version: event.version ?? version };
    if (this.applyEvent(withVersion, changes) === "gap") this.requestResync();
    else this.drainPending();
  }

  requestResync() {
    if (this.resyncTimer) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "resync", since_version: this.version }));
    }
    // If the answer does not close the gap (or never comes), ask the REST detail.
    this.resyncTimer = setTimeout(async () => {
      this.resyncTimer = null;
      try {
        await this.refreshSnapshot();
      } catch (error) {
        console.warn("resync via REST failed", error);
      }
    }, RESYNC_WAIT_MS);
  }

  onSocketLost(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.watchdog);
    this.wsFailures += 1;
    if (TERMINAL_CLOSE_CODES.has(code)) this.wsFailures = Math.max(this.wsFailures, WS_FAILURES_BEFORE_POLLING);
    if (this.wsFailures >= WS_FAILURES_BEFORE_POLLING) this.startPolling();
    else this.setMode(navigator.onLine === false ? "offline" : "reconnecting");
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped || this.reconnectTimer) return;
    // While polling works, probing the socket again is an upgrade attempt: slower cadence.
    const delay = this.polling
      ? backoffDelay(this.wsFailures - WS_FAILURES_BEFORE_POLLING + 1, UPGRADE_RETRY)
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

  // --- long-polling fallback ---

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

  async pollLoop(token) {
    let errors = 0;
    // Catch up at once: the socket may have been down for a while.
    try {
      await this.refreshSnapshot();
    } catch (error) {
      if (this.handlePollError(error)) return;
    }
    while (this.polling && token === this.pollToken) {
      const controller = new AbortController();
      this.pollAbort = controller;
      const timer = setTimeout(() => controller.abort(), (POLL_TIMEOUT_S + 10) * 1000);
      try {
        const data = await fetchJson(
          `/api/orders/${this.orderId}/poll/?since_version=${this.version}&timeout=${POLL_TIMEOUT_S}`,
          { signal: controller.signal },
        );
        if (!this.polling || token !== this.pollToken) return;
        errors = 0;
        if (this.mode !== "polling") this.setMode("polling");
        await this.applyPolled(data);
      } catch (error) {
        if (!this.polling || token !== this.pollToken) return;
        if (this.handlePollError(error)) return;
        errors += 1;
        this.setMode(navigator.onLine === false ? "offline" : "polling");
        await sleep(backoffDelay(errors, { baseMs: 1000, maxMs: 30000 }));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  // True when polling cannot help (logged out, or the order is gone).
  handlePollError(error) {
    if (error.status === 401 || error.status === 403) {
      this.stopPolling();
      this.stopped = true;
      this.setMode("login");
      return true;
    }
    if (error.status === 404) {
      this.stopPolling();
      this.stopped = true;
      this.setMode("denied");
      return true;
    }
    return false;
  }

  async applyPolled(data) {
    const events = (Array.isArray(data) ? data : data.events || []).slice();
    events.sort((a, b) => Number(a.version) - Number(b.version));
    let needSnapshot = false;
    for (const event of events) {
      const result = this.applyEvent(event, event.changes || null);
      if (result === "gap") {
        needSnapshot = true;
        break;
      }
      // Status, stage and ETA events change derived fields (ETA, rider): take them from the source.
      if (result === "applied" && event.kind !== "location") needSnapshot = true;
    }
    if (!Array.isArray(data) && Number(data.version) > this.version) needSnapshot = true;
    if (needSnapshot) {
      this.pending.clear();
      await this.refreshSnapshot();
    }
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
      return live.mode;
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
