// The warehouse terminal: my warehouse's paid orders, live. A new paid order is
// pushed to every operator as an `incoming` notification (header socket); the
// page then re-reads GET /api/warehouse/orders/. Each tap sends expected_version
// (postGuarded: the version of the order as the operator saw it, refreshed over
// background ETA events), so two operators cannot double-report: the second
// gets 409, a message, and the fresh list.

import { STAGE_LABELS, STATUS, el, fetchJson, formatTime, readJson } from "./map-common.js";
import { postGuarded } from "./order-follow.js";

const NEXT_STAGE = { "": "picking", picking: "picked", picked: "packed" };
const STAGE_BUTTONS = { picking: "开始拣货", picked: "拣货完成", packed: "打包完成" };
// Other operators' taps arrive with no push of their own: re-read now and then.
const REFRESH_MS = 15000;

class WarehouseBoard {
  constructor(config) {
    this.config = config;
    this.list = document.getElementById("wh-orders");
    this.error = document.getElementById("wh-error");
    this.orders = [];
    this.timer = null;
  }

  start() {
    this.refresh();
    window.addEventListener("xiaoxiang:notification", () => this.refresh());
    window.addEventListener("xiaoxiang:notifications-resync", () => this.refresh());
    document.addEventListener("visibilitychange", () => document.hidden || this.refresh());
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const page = await fetchJson("/api/warehouse/orders/");
      this.orders = page.results || [];
      document.getElementById("wh-state").textContent = ` · ${formatTime(new Date(), { seconds: true })} 已更新`;
      this.render();
    } catch (error) {
      document.getElementById("wh-state").textContent = " · 更新失败，正在重试";
      console.warn("warehouse orders", error);
    }
    this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  say(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  render() {
    if (this.orders.length === 0) {
      this.list.replaceChildren(el("li", { class: "card empty muted", text: "暂无待处理订单，新订单支付后会出现在这里。" }));
      return;
    }
    this.list.replaceChildren(...this.orders.map((order) => this.renderOrder(order)));
  }

  renderOrder(order) {
    const stage = order.stage || "";
    const items = (order.items || []).map((item) => `${item.name} ×${item.quantity}`).join("、");
    const actions = el("div", { class: "wh-actions" });
    const next = NEXT_STAGE[stage];
    if (next) {
      const button = el("button", { type: "button", class: "button primary", "data-action": next, text: STAGE_BUTTONS[next] });
      button.addEventListener("click", () => this.act(order, "stage", { stage: next }, button));
      actions.append(button);
    } else {
      const rider = el("input", { type: "text", class: "wh-rider", placeholder: "骑手用户名（留空：最近的骑手）", "aria-label": "指定骑手" });
      rider.setAttribute("list", "rider-options");
      const button = el("button", { type: "button", class: "button primary", "data-action": "dispatch", text: "派单" });
      button.addEventListener("click", () => this.act(order, "dispatch", { rider: rider.value.trim() || null }, button));
      actions.append(rider, button);
    }
    return el(
      "li",
      { class: "card wh-order", "data-order-id": order.id, "data-stage": stage || "paid", "data-version": String(order.version) },
      el(
        "div",
        { class: "order-card-head" },
        el("span", { class: `status-pill status-${order.status}`, text: stage ? STAGE_LABELS[stage] : "待拣货" }),
        el("span", { class: "muted small", text: `订单 ${order.id.slice(0, 8)} · 承诺 ${formatTime(order.promised_at)} 前送达` }),
      ),
      el("p", { class: "order-items", text: items }),
      el("p", { class: "muted small", text: order.delivery ? order.delivery.address : "" }),
      actions,
    );
  }

  async act(order, action, body, button) {
    button.disabled = true;
    this.say("");
    try {
      // The guard is the stage this operator saw: another operator's tap makes it a 409 here.
      const seen = order.stage || "";
      const updated = await postGuarded(
        order.id,
        `/api/warehouse/orders/${order.id}/${action}/`,
        body,
        (current) => Number(current.status) === STATUS.PAID && (current.stage || "") === seen,
      );
      if (action === "dispatch") {
        const rider = updated.rider ? updated.rider.name || updated.rider.username : "骑手";
        this.say("");
        this.flash(`订单 ${order.id.slice(0, 8)} 已派给 ${rider}`);
      }
    } catch (error) {
      const detail = error.data && error.data.detail;
      if (error.status === 409) {
        this.say(`订单 ${order.id.slice(0, 8)} 已被其他人更新，已刷新为最新状态，请确认后再操作。（${detail || "版本冲突"}）`);
      } else if (error.status === 400) {
        const riderError = error.data && error.data.rider;
        this.say(`无法派单：${(riderError && riderError[0]) || detail || "输入有误"}`);
      } else {
        this.say("操作失败，请检查网络后重试。");
      }
    }
    await this.refresh();
  }

  flash(text) {
    const note = el("div", { class: "toast", text });
    document.getElementById("toasts").append(note);
    setTimeout(() => note.remove(), 5000);
  }
}

function main() {
  const config = readJson("warehouse-config");
  if (!config) return;
  const board = new WarehouseBoard(config);
  board.start();
  window.warehouseBoard = { orders: () => board.orders.map((order) => ({ id: order.id, stage: order.stage, version: order.version })) };
}

main();
