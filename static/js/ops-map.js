// Staff operations map: every active rider moving live (/ws/ops/), open alerts
// listed and highlighted, click a rider to see their orders.
//
// The page starts from a JSON state read, then applies pushed rider positions
// and alerts. The state is re-read every half minute (alerts resolve, riders
// go offline) and, while the socket is down, every few seconds instead.

import {
  ALERT_KINDS,
  SmoothMarker,
  backoffDelay,
  createMap,
  el,
  fetchJson,
  fitTo,
  formatDateTime,
  formatTime,
  icons,
  readJson,
  watchSocket,
  wsUrl,
} from "./map-common.js";

const L = window.L;
const HEARTBEAT_TIMEOUT_MS = 45000;
const STATE_REFRESH_MS = 30000;
const STATE_REFRESH_OFFLINE_MS = 5000;
const WS_FAILURES_BEFORE_POLLING = 3;
// Past this many riders, markers cluster (and jump instead of gliding): thousands
// of gliding markers would cost more than the map is worth.
const CLUSTER_FROM_RIDERS = 300;

const CONNECTION_LABELS = { connecting: "连接中", live: "实时", reconnecting: "重连中", polling: "轮询" };

const finite = (value) => value !== null && value !== undefined && value !== "" && Number.isFinite(Number(value));

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Why the rider's device may be dark, as its app last reported it ("" when fine).
function deviceReason(rider) {
  return (rider.device && rider.device.reason) || "";
}

function riderIcon(rider, { alert, selected }) {
  const classes = ["rider-icon"];
  if (rider.online === false) classes.push("is-offline");
  if (alert) classes.push("has-alert");
  if (selected) classes.push("is-selected");
  const reason = deviceReason(rider);
  if (reason) classes.push("is-dark");
  return L.divIcon({
    className: classes.join(" "),
    html: `<span class="rider-pulse"></span><span class="rider-dot">骑</span><span class="rider-name-tag">${escapeHtml(rider.name)}${reason ? ` · ${escapeHtml(reason)}` : ""}</span>`,
    iconSize: [36, 36],
    iconAnchor: [18, 18],
    popupAnchor: [0, -16],
  });
}

class OpsMap {
  constructor(config) {
    this.config = config;
    this.map = createMap(document.getElementById("ops-map"), { tileUrl: config.tileUrl, zoom: 12 });
    this.riders = new Map(); // id -> {data, marker: SmoothMarker, iconKey}
    this.alerts = new Map(); // id -> {data, circle}
    this.selected = null;
    this.fitted = false;
    this.ws = null;
    this.wsFailures = 0;
    this.mode = "connecting";
    this.watchdog = null;
    this.refreshTimer = null;
    this.riderLayer = L.layerGroup().addTo(this.map);
    this.clustered = false;
    this.alertLayer = L.layerGroup().addTo(this.map);
    this.warehouseLayer = L.layerGroup().addTo(this.map);
    this.warehouseKey = "";
    this.indicator = document.getElementById("conn-indicator");
  }

  async start() {
    await this.refreshState();
    this.connect();
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.ws) this.connect();
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.indicator.dataset.state = mode;
    this.indicator.querySelector(".conn-label").textContent = CONNECTION_LABELS[mode] || mode;
  }

  async refreshState() {
    clearTimeout(this.refreshTimer);
    try {
      const state = await fetchJson(this.config.stateUrl);
      const riders = state.riders || [];
      const seen = new Set(riders.map((rider) => String(rider.id)));
      this.upsertRiders(riders, { animate: this.fitted });
      for (const [id, entry] of this.riders) {
        if (!seen.has(id)) {
          this.riderLayer.removeLayer(entry.marker.marker);
          this.riders.delete(id);
        }
      }
      this.replaceAlerts(state.alerts || []);
      this.drawWarehouses(state.warehouses || []);
      if (!this.fitted) {
        const points = [...this.riders.values()].map((entry) => [entry.data.lat, entry.data.lon]);
        for (const entry of this.alerts.values()) points.push([entry.data.lat, entry.data.lon]);
        for (const warehouse of state.warehouses || []) points.push([warehouse.lat, warehouse.lon]);
        fitTo(this.map, points, { maxZoom: 15 });
        this.fitted = points.length > 0;
      }
    } catch (error) {
      console.warn("ops state", error);
    }
    const delay = this.mode === "live" ? STATE_REFRESH_MS : STATE_REFRESH_OFFLINE_MS;
    this.refreshTimer = setTimeout(() => this.refreshState(), delay);
  }

  drawWarehouses(warehouses) {
    const key = JSON.stringify(warehouses);
    if (key === this.warehouseKey) return;
    this.warehouseKey = key;
    this.warehouseLayer.clearLayers();
    for (const warehouse of warehouses) {
      if (!finite(warehouse.lat) || !finite(warehouse.lon)) continue;
      L.marker([Number(warehouse.lat), Number(warehouse.lon)], { icon: icons.warehouse(), title: warehouse.name, zIndexOffset: -100 })
        .bindPopup(escapeHtml(warehouse.name))
        .addTo(this.warehouseLayer);
    }
  }

  riderHasAlert(id) {
    for (const entry of this.alerts.values()) if (String(entry.data.rider) === String(id)) return true;
    return false;
  }

  // Many riders: move every marker into a cluster layer (vendored Leaflet.markercluster).
  clusterIfCrowded() {
    if (this.clustered || this.riders.size < CLUSTER_FROM_RIDERS || !L.markerClusterGroup) return;
    const clusters = L.markerClusterGroup({ chunkedLoading: true, showCoverageOnHover: false, disableClusteringAtZoom: 16 });
    clusters.addLayers([...this.riders.values()].map((entry) => entry.marker.marker));
    this.map.removeLayer(this.riderLayer);
    this.riderLayer = clusters.addTo(this.map);
    this.clustered = true;
  }

  // A batch of moved riders (an ops.riders frame, or the state read): one pass, one stats update.
  upsertRiders(riders, { animate = true } = {}) {
    for (const rider of riders) this.upsertRider(rider, { animate, stats: false });
    this.clusterIfCrowded();
    this.updateStats();
  }

  upsertRider(rider, { animate = true, stats = true } = {}) {
    const id = String(rider.id);
    if (!finite(rider.lat) || !finite(rider.lon)) return;
    const lat = Number(rider.lat);
    const lon = Number(rider.lon);
    animate = animate && !this.clustered;
    let entry = this.riders.get(id);
    if (!entry) {
      const marker = L.marker([lat, lon], { title: rider.name, keyboard: true, riseOnHover: true });
      marker.on("click", () => this.selectRider(id));
      this.riderLayer.addLayer(marker);
      entry = { data: { ...rider }, marker: new SmoothMarker(marker, { durationMs: 1500 }), iconKey: "" };
      this.riders.set(id, entry);
    } else {
      // A position older than the one shown never moves the marker backwards.
      const shown = Date.parse(entry.data.recorded_at || "");
      const incoming = Date.parse(rider.recorded_at || "");
      const older = Number.isFinite(shown) && Number.isFinite(incoming) && incoming < shown;
      entry.data = { ...entry.data, ...rider, ...(older ? { lat: entry.data.lat, lon: entry.data.lon } : {}) };
      if (!older) entry.marker.moveTo([lat, lon], { animate });
    }
    this.refreshRiderIcon(id);
    if (stats) this.updateStats();
  }

  refreshRiderIcon(id) {
    const entry = this.riders.get(id);
    if (!entry) return;
    const alert = this.riderHasAlert(id);
    const selected = this.selected === id;
    const key = `${entry.data.name}|${entry.data.online}|${alert}|${selected}|${deviceReason(entry.data)}`;
    if (key === entry.iconKey) return;
    entry.iconKey = key;
    entry.marker.marker.setIcon(riderIcon(entry.data, { alert, selected }));
    entry.marker.marker.setZIndexOffset(alert ? 800 : selected ? 600 : 0);
  }

  replaceAlerts(alerts) {
    const ids = new Set(alerts.map((alert) => String(alert.id)));
    for (const id of [...this.alerts.keys()]) if (!ids.has(id)) this.removeAlert(id);
    for (const alert of alerts) this.upsertAlert(alert, { fresh: false });
    this.renderAlerts();
  }

  upsertAlert(alert, { fresh = true } = {}) {
    const id = String(alert.id);
    if (alert.resolved_at) {
      this.removeAlert(id);
      return;
    }
    const existing = this.alerts.get(id);
    const data = { ...(existing ? existing.data : {}), ...alert };
    const rider = data.rider === undefined || data.rider === null ? null : this.riders.get(String(data.rider));
    if (rider) Object.assign(data, { lat: rider.data.lat, lon: rider.data.lon });
    if (rider && !data.rider_name) data.rider_name = rider.data.name;
    if (existing) existing.circle.remove();
    let circle = null;
    // A rider on the map carries the alert on their own (red) marker; others get a ring where it happened.
    if (!rider && finite(data.lat) && finite(data.lon)) {
      circle = L.circleMarker([Number(data.lat), Number(data.lon)], {
        radius: 16,
        color: "#d93636",
        weight: 3,
        fillColor: "#d93636",
        fillOpacity: 0.15,
      })
        .bindPopup(`<strong>${escapeHtml(data.kind_display || ALERT_KINDS[data.kind] || data.kind)}</strong><br>${escapeHtml(data.message)}`)
        .addTo(this.alertLayer);
    }
    this.alerts.set(id, { data, circle: circle || { remove() {} }, fresh: fresh && !existing });
    if (data.rider !== undefined && data.rider !== null) this.refreshRiderIcon(String(data.rider));
  }

  removeAlert(id) {
    const entry = this.alerts.get(id);
    if (!entry) return;
    entry.circle.remove();
    this.alerts.delete(id);
    if (entry.data.rider !== undefined && entry.data.rider !== null) this.refreshRiderIcon(String(entry.data.rider));
  }

  renderAlerts() {
    const list = document.getElementById("alert-list");
    const alerts = [...this.alerts.values()].sort((a, b) => String(b.data.opened_at).localeCompare(String(a.data.opened_at)));
    list.replaceChildren(
      ...alerts.map((entry) => {
        const alert = entry.data;
        const item = el(
          "li",
          { class: entry.fresh ? "is-new" : "", "data-alert-id": String(alert.id), title: "在地图上查看" },
          el("span", { class: "alert-kind", text: alert.kind_display || ALERT_KINDS[alert.kind] || alert.kind }),
          el("span", { text: alert.message || "" }),
          el(
            "div",
            { class: "muted small" },
            `${alert.rider_name ? `${alert.rider_name} · ` : ""}订单 ${String(alert.order || "").slice(0, 8)} · ${formatDateTime(alert.opened_at)}`,
          ),
        );
        item.addEventListener("click", () => {
          if (finite(alert.lat) && finite(alert.lon)) this.map.flyTo([Number(alert.lat), Number(alert.lon)], 16);
          if (alert.rider !== undefined && alert.rider !== null) this.selectRider(String(alert.rider));
          else if (entry.circle.openPopup) entry.circle.openPopup();
        });
        entry.fresh = false;
        return item;
      }),
    );
    document.getElementById("alerts-empty").hidden = alerts.length > 0;
    this.updateStats();
  }

  updateStats() {
    const riders = [...this.riders.values()];
    document.getElementById("stat-riders").textContent = String(riders.filter((e) => e.data.online !== false).length);
    document.getElementById("stat-delivering").textContent = String(riders.filter((e) => Number(e.data.delivering) > 0).length);
    document.getElementById("stat-alerts").textContent = String(this.alerts.size);
    document.getElementById("stat-alerts").parentElement.classList.toggle("is-alert", this.alerts.size > 0);
  }

  async selectRider(id) {
    const previous = this.selected;
    this.selected = id;
    if (previous) this.refreshRiderIcon(previous);
    this.refreshRiderIcon(id);
    const entry = this.riders.get(id);
    const panel = document.getElementById("rider-panel");
    const list = document.getElementById("rider-orders");
    panel.hidden = false;
    document.getElementById("rider-panel-title").textContent = `${entry ? entry.data.name : "骑手"} 的订单`;
    list.replaceChildren(el("li", { class: "muted small", text: "加载中…" }));
    try {
      const url = this.config.riderOrdersUrl.replace(/\/0\/orders\/$/, `/${encodeURIComponent(id)}/orders/`);
      const data = await fetchJson(url);
      if (this.selected !== id) return;
      const orders = data.orders || [];
      list.replaceChildren(
        ...(orders.length
          ? orders.map((order) =>
              el(
                "li",
                { "data-order-id": order.id },
                el("a", { href: order.admin_url, text: `订单 ${order.id.slice(0, 8)}` }),
                ` · ${order.status_display}`,
                el(
                  "div",
                  { class: "muted small" },
                  `${order.delivery_address || ""}${order.eta ? ` · 预计 ${formatTime(order.eta)}` : ""}${order.promised_at ? ` · 承诺 ${formatTime(order.promised_at)}` : ""}`,
                ),
              ),
            )
          : [el("li", { class: "muted small", text: "暂无订单" })]),
      );
      if (entry) {
        const delivering = orders.filter((order) => order.status === 3).length;
        entry.marker.marker
          .bindPopup(
            `<strong>${escapeHtml(entry.data.name)}</strong><br>配送中 ${delivering} 单 · ${formatTime(entry.data.recorded_at, { seconds: true })} 定位` +
              (deviceReason(entry.data)
                ? `<br><span class="device-reason">设备：${escapeHtml(deviceReason(entry.data))}（${formatTime(entry.data.device.reported_at, { seconds: true })} 上报）</span>`
                : ""),
          )
          .openPopup();
      }
    } catch (error) {
      list.replaceChildren(el("li", { class: "muted small", text: "订单加载失败" }));
      console.warn("rider orders", error);
    }
  }

  connect() {
    if (this.ws) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl("/ws/ops/"));
    } catch {
      this.onSocketLost(null);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.wsFailures = 0;
      this.setMode("live");
      // Anything pushed before we subscribed is in the state read.
      this.refreshState();
    });
    watchSocket(this, ws, {
      timeoutMs: HEARTBEAT_TIMEOUT_MS,
      onMessage: (data) => this.onMessage(data),
      onLost: (lost) => this.onSocketLost(lost),
    });
  }

  onSocketLost(ws) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.watchdog);
    this.wsFailures += 1;
    this.setMode(this.wsFailures >= WS_FAILURES_BEFORE_POLLING ? "polling" : "reconnecting");
    if (this.wsFailures >= WS_FAILURES_BEFORE_POLLING) this.refreshState();
    setTimeout(() => this.connect(), backoffDelay(this.wsFailures, { baseMs: 1000, maxMs: 30000 }));
  }

  onMessage(message) {
    const type = String(message.type || "");
    if (type === "ops.riders" && Array.isArray(message.riders)) {
      this.upsertRiders(message.riders);
      return;
    }
    if (message.alert && type.includes("alert")) {
      this.upsertAlert(message.alert);
      this.renderAlerts();
      return;
    }
    if (Array.isArray(message.riders) || Array.isArray(message.alerts)) {
      this.upsertRiders(message.riders || [], { animate: false });
      if (Array.isArray(message.alerts)) this.replaceAlerts(message.alerts);
    }
  }
}

function main() {
  const config = readJson("ops-config");
  if (!config || !window.L) return;
  const ops = new OpsMap(config);
  ops.start();
  window.opsMap = {
    get mode() {
      return ops.mode;
    },
    riderIds() {
      return [...ops.riders.keys()];
    },
    riderLatLng(id) {
      const entry = ops.riders.get(String(id));
      if (!entry) return null;
      const latLng = entry.marker.marker.getLatLng();
      return [latLng.lat, latLng.lng];
    },
    riderDeviceReason(id) {
      const entry = ops.riders.get(String(id));
      return entry ? deviceReason(entry.data) : null;
    },
    selectRider(id) {
      return ops.selectRider(String(id));
    },
    alertCount() {
      return ops.alerts.size;
    },
  };
}

main();
