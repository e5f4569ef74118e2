// Admin order page: the order's trajectory on a map, its status/stage timeline
// and alerts, loaded through the REST API with the staff session, then kept
// live over the order socket: points extend the path as they arrive, and any
// other event (status, stage, alert) re-reads the trajectory and alerts.
// Points the GPS quality rule flagged are drawn apart, as red dots off the path.

import {
  ALERT_KINDS,
  QUALITY_FLAGS,
  STAGE_LABELS,
  createMap,
  el,
  fetchJson,
  fitTo,
  formatDateTime,
  icons,
  parseTrajectory,
} from "./map-common.js";
import { OrderStream } from "./order-follow.js";
import { TrajectoryReplay } from "./replay.js";

const L = window.L;
const STATUS_TEXT = { 1: "订单已提交（待支付）", 2: "已支付", 3: "已派单，配送中", 4: "已送达", 5: "已取消" };

function coordinate(value) {
  if (value === undefined || value === null || value === "") return null;
  const number = Number(value);
  return Number.isFinite(number) ? number : null;
}

function entryLabel(entry) {
  if (entry.stage) return STAGE_LABELS[entry.stage] || entry.label || entry.stage;
  return STATUS_TEXT[entry.status] || entry.label || String(entry.status);
}

async function main() {
  const root = document.getElementById("order-track");
  if (!root || !window.L) return;
  const orderId = root.dataset.orderId;
  const map = createMap(document.getElementById("order-track-map"), { tileUrl: root.dataset.tileUrl || "" });
  const fixed = [];
  const warehouse = [coordinate(root.dataset.warehouseLat), coordinate(root.dataset.warehouseLon)];
  if (warehouse.every((value) => value !== null)) {
    L.marker(warehouse, { icon: icons.warehouse(), title: "仓库" }).bindPopup(root.dataset.warehouseName || "仓库").addTo(map);
    fixed.push(warehouse);
  }
  const home = [coordinate(root.dataset.deliveryLat), coordinate(root.dataset.deliveryLon)];
  if (home.every((value) => value !== null)) {
    L.marker(home, { icon: icons.home(), title: "收货地址" }).bindPopup("收货地址").addTo(map);
    fixed.push(home);
  }
  fitTo(map, fixed);

  const timelineList = document.getElementById("track-timeline");
  const summary = document.getElementById("track-summary");
  const drawn = L.layerGroup().addTo(map);
  let trajectory = { path: [], events: [] };
  let flagged = [];
  let pathLine = null;
  let lastPoint = null;
  let replay = null;
  let fitted = false;

  const renderTimeline = (replayTime) => {
    const steps = trajectory.events;
    let current = -1;
    steps.forEach((event, index) => {
      if (!replayTime || (event.time && event.time <= replayTime)) current = index;
    });
    timelineList.classList.toggle("is-replaying", Boolean(replayTime));
    timelineList.replaceChildren(
      ...steps.map((event, index) =>
        el(
          "li",
          {
            class: `timeline-step ${event.stage ? "is-stage" : "is-status"} ${index <= current ? "is-done" : "is-pending"} ${index === current ? "is-current" : ""}`,
          },
          el("span", { class: "timeline-dot" }),
          el("span", { class: "timeline-label", text: entryLabel(event) }),
          el("time", { class: "timeline-time", text: formatDateTime(event.time) }),
        ),
      ),
    );
    if (steps.length === 0) timelineList.replaceChildren(el("li", { class: "muted", text: "暂无状态记录" }));
  };

  const renderSummary = () => {
    const count = trajectory.path.length;
    summary.textContent = count ? `轨迹点 ${count} 个。` : "暂无骑手轨迹。";
    if (flagged.length) summary.textContent += ` 另有 ${flagged.length} 个定位异常点（红色，未用于位置、ETA 和预警）。`;
    root.dataset.pathLength = String(count);
    root.dataset.flaggedPoints = String(flagged.length);
  };

  const drawFlagged = (point) => {
    const reasons = point.flags.map((flag) => QUALITY_FLAGS[flag] || flag).join("、");
    L.circleMarker([point.lat, point.lon], { radius: 4, color: "#d93025", weight: 1, fillColor: "#d93025", fillOpacity: 0.8 })
      .bindTooltip(`定位异常：${reasons} · ${formatDateTime(point.time)}`)
      .addTo(drawn);
  };

  const drawTrajectory = () => {
    drawn.clearLayers();
    const latLngs = trajectory.path.map((point) => [point.lat, point.lon]);
    pathLine = L.polyline(latLngs, { color: "#ff7a00", weight: 4, opacity: 0.85 }).addTo(drawn);
    lastPoint = null;
    if (latLngs.length) {
      lastPoint = L.circleMarker(latLngs[latLngs.length - 1], { radius: 6, color: "#ff7a00", fillOpacity: 1 })
        .bindPopup(`最后位置 ${formatDateTime(trajectory.path[trajectory.path.length - 1].time)}`)
        .addTo(drawn);
    }
    flagged.forEach(drawFlagged);
    for (const event of trajectory.events) {
      if (!Number.isFinite(event.lat) || !Number.isFinite(event.lon)) continue;
      L.circleMarker([event.lat, event.lon], { radius: 5, color: "#14a05a", weight: 2, fillColor: "#fff", fillOpacity: 1 })
        .bindTooltip(`${entryLabel(event)} · ${formatDateTime(event.time)}`)
        .addTo(drawn);
    }
    if (!fitted || latLngs.length) fitTo(map, [...fixed, ...latLngs], { bottom: latLngs.length > 1 ? 100 : 40 });
    fitted = true;
    renderTimeline(null);
    renderSummary();
    if (latLngs.length > 1) {
      if (!replay) {
        replay = new TrajectoryReplay({ map, root: document.getElementById("replay"), onTime: (time) => renderTimeline(time) });
      }
      replay.load(trajectory);
      replay.seek(replay.end);
    }
  };

  const loadAlerts = async () => {
    try {
      const order = await fetchJson(`/api/orders/${orderId}/`);
      const alerts = order.alerts || [];
      document.getElementById("track-alerts").replaceChildren(
        ...alerts.map((alert) =>
          el(
            "li",
            {},
            el("span", { class: "alert-kind", text: ALERT_KINDS[alert.kind] || alert.kind }),
            el("span", { text: alert.message }),
            el("div", { class: "small" }, `${formatDateTime(alert.opened_at)}${alert.resolved_at ? ` 已解除 ${formatDateTime(alert.resolved_at)}` : " 未处理"}`),
          ),
        ),
      );
    } catch (error) {
      console.warn("order detail", error);
    }
  };

  const reload = async () => {
    try {
      trajectory = parseTrajectory(await fetchJson(`/api/orders/${orderId}/trajectory/`));
      // The server draws a one-point path as a LineString of that point twice (one time only):
      // it is one point, or the live points added to it would be counted one too many.
      const [first, second] = trajectory.path;
      if (trajectory.path.length === 2 && !trajectory.timed && first.lat === second.lat && first.lon === second.lon) {
        trajectory.path = [first];
      }
      flagged = trajectory.path.filter((point) => point.flags.length);
      trajectory.path = trajectory.path.filter((point) => !point.flags.length);
    } catch (error) {
      summary.textContent = "轨迹加载失败。";
      console.warn("trajectory", error);
      return;
    }
    drawTrajectory();
    await loadAlerts();
  };

  await reload();

  // Live: a point extends the path in place (late points slot in by time); anything else re-reads.
  let reloading = null;
  const stream = new OrderStream(orderId, {
    onState: (state) => (root.dataset.live = state),
    onChange: (snapshot, event) => {
      if (!event) return;
      if (event.kind === "location" && Number.isFinite(Number(event.lat)) && event.lat !== null) {
        const point = { lat: Number(event.lat), lon: Number(event.lon), time: new Date(event.recorded_at), flags: event.quality_flags || [] };
        // A re-read that raced with this event may hold the point already.
        const same = (entry) => entry.time && entry.time.getTime() === point.time.getTime() && entry.lat === point.lat && entry.lon === point.lon;
        if (trajectory.path.some(same) || flagged.some(same)) return;
        if (point.flags.length) {
          flagged.push(point);
          drawFlagged(point);
          renderSummary();
          return;
        }
        let index = trajectory.path.length;
        while (index > 0 && trajectory.path[index - 1].time > point.time) index -= 1;
        trajectory.path.splice(index, 0, point);
        pathLine.setLatLngs(trajectory.path.map((entry) => [entry.lat, entry.lon]));
        const newest = trajectory.path[trajectory.path.length - 1];
        if (lastPoint) lastPoint.setLatLng([newest.lat, newest.lon]);
        else lastPoint = L.circleMarker([newest.lat, newest.lon], { radius: 6, color: "#ff7a00", fillOpacity: 1 }).addTo(drawn);
        renderSummary();
      } else if (!reloading) {
        reloading = reload().finally(() => (reloading = null));
      }
    },
  });
  stream.start();
}

main();
