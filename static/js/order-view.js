// What the live order page shows: the map (warehouse, destination, the rider
// gliding along the path), status, timeline, ETA and how it moved, the total,
// the pay/cancel buttons, the connection badge and the replay. DOM and
// Leaflet only: the data comes from order-live.js, never from the network.

import {
  STAGE_LABELS,
  STATUS,
  STATUS_LABELS,
  SmoothMarker,
  createMap,
  el,
  fitTo,
  formatDateTime,
  formatTime,
  icons,
  parseTime,
} from "./map-common.js";
import { TrajectoryReplay } from "./replay.js";

const L = window.L;

const CONNECTION_LABELS = {
  connecting: "连接中",
  live: "实时",
  reconnecting: "重连中",
  polling: "轮询",
  offline: "网络已断开",
  denied: "无法查看",
  login: "请重新登录",
};

const finite = (value) => value !== null && value !== undefined && value !== "" && Number.isFinite(Number(value));

function latLngOf(point) {
  if (!point) return null;
  const lon = point.lon ?? point.lng;
  return finite(point.lat) && finite(lon) ? [Number(point.lat), Number(lon)] : null;
}

export class OrderView {
  // loadTrajectory() resolves to the parsed trajectory (parseTrajectory) for the replay.
  constructor({ snapshot, config, loadTrajectory }) {
    this.role = config.role;
    this.loadTrajectory = loadTrajectory;
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

  // The page time it was last brought up to date, and the version it shows.
  showUpdated(version) {
    document.getElementById("last-update").textContent = `${formatTime(new Date(), { seconds: true })} 已更新`;
    document.getElementById("order-live").dataset.version = String(version);
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

  // The estimate an ETA event replaced: the history starts from it when the page opened after it.
  notePreviousEta(eta) {
    if (eta && this.etaHistory.length === 0) this.noteEta(eta);
  }

  // How the ETA moved before the page opened, oldest first; replaces what the page noted so far.
  setEtaHistory(etas) {
    this.etaHistory = [];
    for (const eta of etas) this.noteEta(eta);
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

  // Pay and cancel buttons. perform(action) does it and rejects with the failure's HTTP status.
  bindActions(perform) {
    const run = async (action) => {
      const error = document.getElementById("action-error");
      const buttons = document.querySelectorAll("#order-actions button");
      error.hidden = true;
      buttons.forEach((button) => (button.disabled = true));
      try {
        await perform(action);
      } catch (failure) {
        error.textContent =
          failure.status === 409 ? "订单状态已变化，已为您刷新。" : action === "pay" ? "支付失败，请稍后重试。" : "取消失败，请稍后重试。";
        error.hidden = false;
      } finally {
        buttons.forEach((button) => (button.disabled = false));
      }
    };
    document.getElementById("action-pay").addEventListener("click", () => run("pay"));
    document.getElementById("action-cancel").addEventListener("click", () => {
      if (window.confirm("确定要取消这个订单吗？")) run("cancel");
    });
  }

  // The path so far from the trajectory, plus the live points newer than it. Without
  // per-point times the whole trajectory counts as older than what arrived live.
  setHistory({ path, timed }) {
    if (!timed) for (const point of path) point.time = null;
    const newest = timed && path.length ? path[path.length - 1].time : null;
    const live = this.path.filter((point) => point.time && (!newest || point.time > newest));
    this.setPath([...path, ...live]);
  }

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
  // Points without a position (a customer's view before delivery) draw nothing.
  addPoint({ lat, lon, time }, { status }) {
    const latLng = latLngOf({ lat, lon });
    if (!latLng) return;
    const point = { lat: latLng[0], lon: latLng[1], time: parseTime(time) || new Date() };
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

  async startReplay() {
    const offer = document.getElementById("replay-offer");
    offer.disabled = true;
    offer.textContent = "正在加载轨迹…";
    try {
      const trajectory = await this.loadTrajectory();
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
