// "My orders" kept live without a reload: every active order on the page
// follows its own order socket (status, stage, ETA), and a notification about
// an order not on the page yet (paid in another tab, placed by the app) brings
// its card in through the REST detail.

import { STATUS, STATUS_LABELS, el, fetchJson, formatTime } from "./map-common.js";
import { OrderStream } from "./order-follow.js";

const ACTIVE = new Set([STATUS.PAID, STATUS.DELIVERING]);
const DAY = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", month: "numeric", day: "numeric" });

// The server's card says "n月j日 H:i"; cards added here say the same.
function dayAndTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const part = (type) => DAY.formatToParts(date).find((entry) => entry.type === type).value;
  return `${part("month")}月${part("day")}日 ${formatTime(date)}`;
}
const MAX_STREAMS = 10; // the server allows 20 sockets per user, across tabs

class OrderList {
  constructor(root) {
    this.root = root;
    this.streams = new Map();
    this.statuses = new Map();
  }

  start() {
    for (const card of this.root.querySelectorAll("[data-order-id]")) {
      const status = Number(card.dataset.status);
      this.statuses.set(card.dataset.orderId, status);
      if (ACTIVE.has(status)) this.follow(card.dataset.orderId);
    }
    window.addEventListener("xiaoxiang:notification", (event) => this.notified(event.detail));
    window.addEventListener("xiaoxiang:notifications-resync", () => this.refreshFirstPage());
  }

  follow(orderId) {
    if (this.streams.has(orderId) || this.streams.size >= MAX_STREAMS) return;
    const stream = new OrderStream(orderId, { onChange: (snapshot) => this.render(snapshot) });
    this.streams.set(orderId, stream.start());
  }

  async notified(notification) {
    const orderId = notification.order;
    if (!orderId || this.streams.has(orderId)) return; // its socket tells the page already
    await this.fetchAndRender(orderId);
  }

  async fetchAndRender(orderId) {
    try {
      const order = await fetchJson(`/api/orders/${orderId}/`);
      this.render(order);
    } catch (error) {
      console.warn("order", orderId, error);
    }
  }

  async refreshFirstPage() {
    try {
      const page = await fetchJson("/api/orders/");
      for (const order of [...(page.results || [])].reverse()) {
        if (!this.statuses.has(order.id) || this.statuses.get(order.id) !== order.status) this.render(order);
      }
    } catch (error) {
      console.warn("orders", error);
    }
  }

  card(order) {
    let card = this.root.querySelector(`[data-order-id="${order.id}"]`);
    if (card) return card;
    let list = this.root.querySelector(".order-list");
    if (!list) {
      list = el("ul", { class: "order-list" });
      const empty = this.root.querySelector(".empty");
      if (empty) empty.replaceWith(list);
      else this.root.append(list);
    }
    const items = order.items || [];
    card = el(
      "a",
      { class: "card order-card is-new", href: `/orders/${order.id}/`, "data-order-id": order.id },
      el(
        "div",
        { class: "order-card-head" },
        el("span", { class: "status-pill" }),
        el("span", { class: "muted small", text: `${dayAndTime(order.create_time)} 下单` }),
      ),
      el("p", { class: "order-items", text: items.map((item) => item.name).join("、") || "（无商品）" }),
      el(
        "div",
        { class: "order-card-foot" },
        el("span", { class: "order-eta" }),
        el(
          "span",
          { class: "order-total" },
          `共 ${items.reduce((sum, item) => sum + Number(item.quantity), 0)} 件 · `,
          el("strong", { text: `¥${order.total_amount}` }),
        ),
      ),
    );
    list.prepend(el("li", {}, card));
    const counter = document.getElementById("order-count");
    if (counter) {
      counter.dataset.count = String(Number(counter.dataset.count) + 1);
      counter.textContent = `共 ${counter.dataset.count} 个订单`;
    }
    return card;
  }

  render(order) {
    const status = Number(order.status);
    const card = this.card(order);
    this.statuses.set(order.id, status);
    card.dataset.status = String(status);
    card.classList.toggle("is-active", ACTIVE.has(status));
    const pill = card.querySelector(".status-pill");
    pill.className = `status-pill status-${status}`;
    pill.textContent = STATUS_LABELS[status] || order.status_display || "";
    card.querySelector(".order-eta").replaceChildren(...this.etaText(order));
    if (ACTIVE.has(status)) this.follow(order.id);
    else if (this.streams.has(order.id)) {
      this.streams.get(order.id).stop();
      this.streams.delete(order.id);
    }
  }

  etaText(order) {
    const status = Number(order.status);
    if (status === STATUS.COMPLETED) {
      const delivered = (order.timeline || []).find((entry) => entry.kind === "status" && Number(entry.status) === STATUS.COMPLETED);
      return [delivered ? `${dayAndTime(delivered.time)} 已送达` : "已送达"];
    }
    if (status === STATUS.CANCELLED) return ["订单已取消"];
    if (status === STATUS.PENDING) return ["等待支付"];
    if (order.eta) return ["预计 ", el("strong", { text: formatTime(order.eta) }), " 送达"];
    return [`承诺 ${formatTime(order.promised_at)} 前送达`];
  }
}

function main() {
  const root = document.getElementById("order-list-page");
  if (!root) return;
  const list = new OrderList(root);
  list.start();
  window.orderList = {
    streams: () => list.streams.size,
    status: (orderId) => list.statuses.get(orderId),
  };
}

main();
