// The rider web app (/rider/): my delivering orders, my position reported from
// the browser's geolocation every RIDER_REPORT_SECONDS, an offline queue in
// IndexedDB uploaded oldest first in batches, the device's state (location
// permission, fix, battery) reported beside it, and "delivered".
//
// Every point goes into the queue first; uploads drain it. The server answers
// {accepted, duplicates, rejected} for a batch, and the whole batch then leaves
// the queue: accepted and duplicate points are stored, rejected ones can never
// be (logged on the page). A batch whose answer is lost is sent again and its
// client_ids make it a no-op.

import { STATUS, createMap, el, fetchJson, fitTo, formatTime, icons, readJson } from "./map-common.js";
import { postGuarded } from "./order-follow.js";
import { PointQueue } from "./rider-queue.js";

const L = window.L;
const ORDERS_REFRESH_MS = 30000;
const LOG_LINES = 30;
const DEVICE_TEXT = { ok: "定位正常", denied: "定位权限被拒绝：请在浏览器设置中允许本站使用位置", unavailable: "暂时无法定位（无 GPS 信号）" };
const LOW_BATTERY = 0.2;

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  // randomUUID needs a secure context; the same v4 layout from getRandomValues.
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const finiteOrNull = (value) => (value === null || value === undefined || !Number.isFinite(value) ? null : value);

class RiderApp {
  constructor(config) {
    this.config = config;
    this.reportMs = Math.max(1, Number(config.reportSeconds) || 15) * 1000;
    this.batchMax = Math.max(1, Math.min(500, Number(config.batchMax) || 500));
    this.queue = null;
    this.waiting = 0;
    this.uploaded = 0;
    this.uploading = null;
    this.holdUploads = false;
    this.reachable = true;
    this.signedOut = false;
    this.fix = null;
    this.device = { location: "ok", battery_level: null, charging: null };
    this.deviceReported = "";
    this.lastUploadAt = null;
    this.orders = [];
    this.selected = null;
    this.map = createMap(document.getElementById("rider-map"), { tileUrl: config.tileUrl, zoom: 14 });
    this.me = null;
    this.route = L.polyline([], { color: "#ff7a00", weight: 4, dashArray: "8 8", opacity: 0.9 }).addTo(this.map);
    this.destinations = L.layerGroup().addTo(this.map);
    this.userMovedMap = false;
    const container = this.map.getContainer();
    for (const name of ["wheel", "touchstart", "mousedown"]) {
      container.addEventListener(name, () => (this.userMovedMap = true), { passive: true });
    }
  }

  async start() {
    this.queue = await PointQueue.open(this.config.username);
    await this.countWaiting();
    this.watchLocation();
    this.watchBattery();
    this.loadOrders();
    setInterval(() => this.tick(), this.reportMs);
    setInterval(() => this.loadOrders(), ORDERS_REFRESH_MS);
    window.addEventListener("online", () => this.flush());
    window.addEventListener("offline", () => this.setReachable(false));
    window.addEventListener("xiaoxiang:notification", (event) => {
      if (event.detail.kind === "assigned") this.loadOrders();
    });
    this.registerServiceWorker();
    this.flush();
  }

  registerServiceWorker() {
    this.serviceWorker = "serviceWorker" in navigator
      ? navigator.serviceWorker
          .register(this.config.serviceWorker, { scope: "/rider/" })
          .then(() => navigator.serviceWorker.ready)
          .catch((error) => this.log(`离线缓存不可用：${error.message}`))
      : Promise.resolve(null);
  }

  // --- device -----------------------------------------------------------------

  watchLocation() {
    if (!("geolocation" in navigator)) {
      this.setDevice({ location: "unavailable" });
      return;
    }
    navigator.geolocation.watchPosition(
      (position) => {
        const { latitude, longitude, accuracy, speed, heading } = position.coords;
        this.fix = { lat: latitude, lon: longitude, accuracy: finiteOrNull(accuracy), speed: finiteOrNull(speed), heading: finiteOrNull(heading) };
        this.setDevice({ location: "ok" });
        this.drawMe();
        // The first fix goes out at once; later ones on the report interval.
        if (!this.sentFirst) {
          this.sentFirst = true;
          this.tick();
        }
      },
      (error) => this.setDevice({ location: error.code === error.PERMISSION_DENIED ? "denied" : "unavailable" }),
      { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 },
    );
  }

  async watchBattery() {
    if (typeof navigator.getBattery !== "function") return;
    try {
      const battery = await navigator.getBattery();
      const read = () => this.setDevice({ battery_level: finiteOrNull(battery.level), charging: Boolean(battery.charging) });
      battery.addEventListener("levelchange", read);
      battery.addEventListener("chargingchange", read);
      read();
    } catch (error) {
      this.log(`无法读取电量：${error.message}`);
    }
  }

  setDevice(change) {
    const before = this.device.location;
    this.device = { ...this.device, ...change };
    if (this.device.location !== "ok" && before === "ok") this.fix = null;
    this.renderStatus();
    // A dark device has no point to carry its report: send the report on its own now.
    if (this.device.location !== "ok" && before !== this.device.location) this.flush();
  }

  deviceKey() {
    const level = this.device.battery_level === null ? "" : Math.round(this.device.battery_level * 100);
    return `${this.device.location}|${level}|${this.device.charging}`;
  }

  // --- reporting ----------------------------------------------------------------

  async tick() {
    if (this.fix && this.device.location === "ok") {
      await this.queue.add({
        client_id: newClientId(),
        lat: Number(this.fix.lat.toFixed(6)),
        lon: Number(this.fix.lon.toFixed(6)),
        recorded_at: new Date().toISOString(),
        accuracy: this.fix.accuracy,
        speed: this.fix.speed,
        heading: this.fix.heading,
      });
      await this.countWaiting();
    }
    await this.flush();
  }

  async countWaiting() {
    this.waiting = await this.queue.count();
    this.renderStatus();
  }

  // One upload run at a time; a call during a run waits for it.
  flush() {
    if (!this.queue || this.holdUploads || this.signedOut) return this.uploading || Promise.resolve();
    if (!this.uploading) {
      this.uploading = this.drain().finally(() => {
        this.uploading = null;
      });
    }
    return this.uploading;
  }

  async drain() {
    try {
      if (this.deviceKey() !== this.deviceReported || this.device.location !== "ok") await this.reportDevice();
      for (;;) {
        const batch = await this.queue.oldest(this.batchMax);
        if (batch.length === 0) break;
        const points = batch.map(({ seq, ...point }) => point);
        let answer;
        try {
          answer = await fetchJson("/api/rider/locations/", { method: "POST", body: { points } });
        } catch (error) {
          if (error.status === 400) {
            // The whole body was refused: resending the same bytes cannot succeed.
            this.log(`服务器拒收 ${batch.length} 个位置（${(error.data && error.data.detail) || "格式错误"}），已丢弃`);
            await this.queue.remove(batch.map((point) => point.seq));
            continue;
          }
          throw error;
        }
        await this.queue.remove(batch.map((point) => point.seq));
        this.uploaded += answer.accepted;
        this.lastUploadAt = new Date();
        const rejected = answer.rejected || [];
        this.log(`上传 ${batch.length} 个位置：接收 ${answer.accepted}，重复 ${answer.duplicates}${rejected.length ? `，拒收 ${rejected.length}` : ""}`);
        for (const entry of rejected.slice(0, 5)) {
          this.log(`拒收第 ${entry.index + 1} 个位置：${JSON.stringify(entry.errors)}`);
        }
        this.setReachable(true);
        await this.countWaiting();
      }
      this.setReachable(true);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        this.signedOut = true;
        this.log("登录已失效，请重新登录后继续上传");
      }
      this.setReachable(false);
    }
    await this.countWaiting();
  }

  async reportDevice() {
    const key = this.deviceKey();
    await fetchJson("/api/rider/status/", { method: "POST", body: this.device });
    if (this.deviceReported !== key) this.log(`设备状态已上报：${this.deviceText()}`);
    this.deviceReported = key;
  }

  setReachable(reachable) {
    this.reachable = reachable && navigator.onLine !== false;
    this.renderStatus();
  }

  // --- orders -------------------------------------------------------------------

  async loadOrders() {
    try {
      const page = await fetchJson("/api/rider/orders/");
      this.orders = page.results || [];
      localStorage.setItem(`xiaoxiang-rider-orders-${this.config.username}`, JSON.stringify(this.orders));
    } catch (error) {
      // Offline: show what we had, so the rider still knows where to go.
      const cached = localStorage.getItem(`xiaoxiang-rider-orders-${this.config.username}`);
      if (cached && !this.orders.length) this.orders = JSON.parse(cached);
      if (error.status === 401 || error.status === 403) this.signedOut = true;
    }
    if (!this.orders.some((order) => order.id === this.selected)) this.selected = this.orders.length ? this.orders[0].id : null;
    this.renderOrders();
  }

  renderOrders() {
    const list = document.getElementById("rider-orders");
    this.destinations.clearLayers();
    if (this.orders.length === 0) {
      list.replaceChildren(el("li", { class: "card muted", text: "暂无配送中的订单。仓库派单后会出现在这里。" }));
      this.drawRoute();
      return;
    }
    list.replaceChildren(...this.orders.map((order) => this.renderOrder(order)));
    for (const order of this.orders) {
      if (!order.delivery) continue;
      L.marker([order.delivery.lat, order.delivery.lon], { icon: icons.home(), title: order.delivery.address })
        .on("click", () => this.select(order.id))
        .addTo(this.destinations);
    }
    this.drawRoute();
  }

  renderOrder(order) {
    const items = (order.items || []).map((item) => `${item.name} ×${item.quantity}`).join("、");
    const deliver = el("button", { type: "button", class: "button primary", "data-action": "delivered", text: "已送达" });
    const confirm = el(
      "div",
      { class: "confirm-bar", hidden: true },
      el("span", { text: "确认已把商品交给顾客？" }),
      el("button", { type: "button", class: "button primary", "data-action": "confirm-delivered", text: "确认送达" }),
      el("button", { type: "button", class: "button", "data-action": "cancel-delivered", text: "取消" }),
    );
    const message = el("p", { class: "form-error small", role: "alert", hidden: true });
    deliver.addEventListener("click", () => {
      deliver.hidden = true;
      confirm.hidden = false;
    });
    confirm.querySelector('[data-action="cancel-delivered"]').addEventListener("click", () => {
      deliver.hidden = false;
      confirm.hidden = true;
    });
    confirm.querySelector('[data-action="confirm-delivered"]').addEventListener("click", (event) =>
      this.delivered(order, event.target, message),
    );
    const card = el(
      "li",
      { class: `card rider-order${order.id === this.selected ? " is-selected" : ""}`, "data-order-id": order.id },
      el("div", { class: "order-card-head" }, el("strong", { text: order.delivery ? order.delivery.address : "" }), el("span", { class: "muted small", text: `承诺 ${formatTime(order.promised_at)} 前` })),
      el("p", { class: "order-items small", text: items }),
      el("p", { class: "muted small", text: `订单 ${order.id.slice(0, 8)} · ${order.warehouse ? order.warehouse.name : ""} 取货` }),
      el("div", { class: "rider-order-actions" }, deliver, confirm),
      message,
    );
    card.addEventListener("click", (event) => event.target.closest("button") || this.select(order.id));
    return card;
  }

  select(orderId) {
    this.selected = orderId;
    for (const card of document.querySelectorAll(".rider-order")) card.classList.toggle("is-selected", card.dataset.orderId === orderId);
    this.userMovedMap = false;
    this.drawRoute();
  }

  async delivered(order, button, message) {
    button.disabled = true;
    message.hidden = true;
    // Our own points bump the order's version: upload what is queued and hold
    // further uploads while the guarded POST reads the version and sends it.
    await this.flush();
    this.holdUploads = true;
    try {
      await postGuarded(order.id, `/api/rider/orders/${order.id}/delivered/`, {}, (current) => Number(current.status) === STATUS.DELIVERING);
      this.log(`订单 ${order.id.slice(0, 8)} 已送达`);
      this.orders = this.orders.filter((entry) => entry.id !== order.id);
      if (this.selected === order.id) this.selected = this.orders.length ? this.orders[0].id : null;
      this.renderOrders();
    } catch (error) {
      message.textContent =
        error.status === 409 ? "订单状态刚刚变化，已刷新，请再确认一次。" : error.status === 404 ? "该订单已不属于您。" : "网络异常，送达未提交，请稍后再试。";
      message.hidden = false;
      button.disabled = false;
      if (error.status === 409 || error.status === 404) this.loadOrders();
    } finally {
      this.holdUploads = false;
      this.flush();
    }
  }

  // --- map and status -------------------------------------------------------------

  drawMe() {
    if (!this.fix) return;
    const at = [this.fix.lat, this.fix.lon];
    if (!this.me) this.me = L.marker(at, { icon: icons.rider(), title: "我的位置", zIndexOffset: 900 }).addTo(this.map);
    else this.me.setLatLng(at);
    this.drawRoute();
  }

  drawRoute() {
    const order = this.orders.find((entry) => entry.id === this.selected);
    const target = order && order.delivery ? [order.delivery.lat, order.delivery.lon] : null;
    const me = this.fix ? [this.fix.lat, this.fix.lon] : null;
    this.route.setLatLngs(target && me ? [me, target] : []);
    const distance = target && me ? L.latLng(me).distanceTo(target) : null;
    document.getElementById("rider-map").dataset.routeMeters = distance === null ? "" : String(Math.round(distance));
    // Keep me and my destination in view, until the rider moves the map themselves.
    if (!this.userMovedMap && (me || target)) fitTo(this.map, [me, target].filter(Boolean), { maxZoom: 16 });
  }

  deviceText() {
    const parts = [DEVICE_TEXT[this.device.location] || this.device.location];
    if (this.device.battery_level !== null && this.device.battery_level !== undefined) {
      const percent = Math.round(this.device.battery_level * 100);
      const low = this.device.battery_level < LOW_BATTERY && !this.device.charging;
      parts.push(`${low ? "电量低 " : "电量 "}${percent}%${this.device.charging ? "（充电中）" : ""}`);
    }
    return parts.join(" · ");
  }

  renderStatus() {
    const box = document.getElementById("rider-status");
    const offline = !this.reachable || navigator.onLine === false;
    let state = "live";
    let text = this.lastUploadAt ? `在线 · ${formatTime(this.lastUploadAt, { seconds: true })} 已上传` : "在线";
    if (this.signedOut) {
      state = "login";
      text = `登录已失效，${this.waiting} 个位置待上传`;
    } else if (offline) {
      state = "offline";
      text = `离线，${this.waiting} 个位置待上传`;
    } else if (this.waiting > 0) {
      state = "uploading";
      text = `正在上传 ${this.waiting} 个位置…`;
    }
    box.dataset.state = state;
    box.dataset.waiting = String(this.waiting);
    const line = document.getElementById("net-line");
    if (this.signedOut) line.replaceChildren(el("a", { href: "/accounts/login/?next=/rider/", text }));
    else line.textContent = text;
    const device = document.getElementById("device-line");
    device.textContent = this.deviceText();
    device.className = `small${this.device.location === "ok" ? "" : " form-error"}`;
  }

  log(text) {
    const list = document.getElementById("rider-log");
    list.prepend(el("li", {}, el("time", { text: formatTime(new Date(), { seconds: true }) }), ` ${text}`));
    while (list.children.length > LOG_LINES) list.lastElementChild.remove();
  }
}

async function main() {
  const config = readJson("rider-config");
  if (!config || !window.L) return;
  const app = new RiderApp(config);
  window.riderApp = {
    get waiting() {
      return app.waiting;
    },
    get uploaded() {
      return app.uploaded;
    },
    get device() {
      return { ...app.device };
    },
    get reachable() {
      return app.reachable;
    },
    serviceWorkerReady: () => app.serviceWorker.then(() => Boolean(navigator.serviceWorker && navigator.serviceWorker.controller)),
    flush: () => app.flush(),
  };
  await app.start();
}

main();
