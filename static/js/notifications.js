// The header's notifications on every page: unread count, a list, mark as read,
// live over /ws/notifications/ (session cookie), and a toast for the moments a
// customer cares about. Other page scripts hear each live notification as a
// `xiaoxiang:notification` window event instead of opening a socket of their own.

import { backoffDelay, el, fetchJson, formatDateTime, watchSocket, wsUrl } from "./map-common.js";

const HEARTBEAT_TIMEOUT_MS = 45000;
// Kinds are being renamed `paid` -> `order.paid`; both spellings mean the same.
const TOAST_KINDS = new Set(["dispatched", "late", "delivered", "assigned", "incoming"]);

export function notificationKind(kind) {
  return String(kind || "").replace(/^order\./, "");
}

class Notifications {
  constructor() {
    this.bell = document.getElementById("notif-bell");
    this.panel = document.getElementById("notif-panel");
    this.list = document.getElementById("notif-list");
    this.count = document.getElementById("notif-count");
    this.state = document.getElementById("notif-state");
    this.toasts = document.getElementById("toasts");
    this.unread = 0;
    this.items = null; // loaded on first open
    this.ws = null;
    this.watchdog = null;
    this.failures = 0;
    this.mode = "connecting";
  }

  start() {
    this.bell.addEventListener("click", () => this.toggle());
    document.addEventListener("click", (event) => {
      if (!this.panel.hidden && !event.target.closest("#notif")) this.toggle(false);
    });
    this.connect();
    window.addEventListener("online", () => this.ws || this.connect());
  }

  setUnread(count) {
    this.unread = Math.max(0, count);
    this.count.textContent = this.unread > 99 ? "99+" : String(this.unread);
    this.count.hidden = this.unread === 0;
    this.bell.title = this.unread ? `${this.unread} 条未读消息` : "消息通知";
  }

  async toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.bell.setAttribute("aria-expanded", String(open));
    if (open) await this.load();
  }

  async load() {
    try {
      const page = await fetchJson("/api/notifications/");
      this.items = page.results || [];
      this.render();
    } catch (error) {
      this.list.replaceChildren(el("li", { class: "muted small", text: "消息加载失败，请稍后重试" }));
      console.warn("notifications", error);
    }
  }

  render() {
    if (!this.items || this.items.length === 0) {
      this.list.replaceChildren(el("li", { class: "muted small", text: "暂无消息" }));
      return;
    }
    this.list.replaceChildren(...this.items.slice(0, 20).map((item) => this.renderItem(item)));
  }

  renderItem(item) {
    const row = el(
      "li",
      { class: `notif-item${item.read ? "" : " is-unread"}`, "data-notification-id": String(item.id), "data-kind": notificationKind(item.kind) },
      el("div", { class: "notif-title" }, el("strong", { text: item.title }), el("time", { class: "muted small", text: formatDateTime(item.created) })),
      item.body ? el("p", { class: "small notif-body", text: item.body }) : null,
    );
    const actions = el("div", { class: "notif-actions" });
    if (!item.read) {
      const read = el("button", { type: "button", class: "link-button notif-read", text: "标为已读" });
      read.addEventListener("click", (event) => {
        event.stopPropagation();
        this.markRead(item);
      });
      actions.append(read);
    }
    if (item.order) {
      const link = el("a", { href: `/orders/${item.order}/`, class: "small", text: "查看订单" });
      link.addEventListener("click", () => item.read || this.markRead(item));
      actions.append(link);
    }
    row.append(actions);
    return row;
  }

  async markRead(item) {
    try {
      const updated = await fetchJson(`/api/notifications/${item.id}/read/`, { method: "POST" });
      if (!item.read && updated.read) this.setUnread(this.unread - 1);
      item.read = true;
      this.render();
    } catch (error) {
      console.warn("mark read", error);
    }
  }

  toast(notification) {
    const kind = notificationKind(notification.kind);
    const toast = el(
      "div",
      { class: `toast toast-${kind}`, "data-kind": kind },
      el("strong", { text: notification.title }),
      notification.body ? el("span", { class: "small", text: notification.body }) : null,
    );
    if (notification.order) {
      toast.addEventListener("click", () => (window.location.href = `/orders/${notification.order}/`));
    }
    this.toasts.append(toast);
    setTimeout(() => toast.classList.add("is-leaving"), 6000);
    setTimeout(() => toast.remove(), 6600);
  }

  received(notification) {
    if (!notification.read) this.setUnread(this.unread + 1);
    if (this.items) {
      this.items = [notification, ...this.items.filter((item) => item.id !== notification.id)];
      this.render();
    }
    if (TOAST_KINDS.has(notificationKind(notification.kind))) this.toast(notification);
    window.dispatchEvent(new CustomEvent("xiaoxiang:notification", { detail: { ...notification, kind: notificationKind(notification.kind) } }));
  }

  connect() {
    if (this.ws) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl("/ws/notifications/"));
    } catch {
      this.lost(null, 1006);
      return;
    }
    this.ws = ws;
    watchSocket(this, ws, {
      timeoutMs: HEARTBEAT_TIMEOUT_MS,
      onMessage: (message) => this.onMessage(message),
      onLost: (lost, code) => this.lost(lost, code),
    });
  }

  onMessage(message) {
    if (message.type === "notifications.unread") {
      const reconnected = this.mode === "reconnecting";
      this.failures = 0;
      this.mode = "live";
      this.state.textContent = "";
      this.setUnread(Number(message.count) || 0);
      if (this.items) this.load();
      // Whatever happened while the socket was down: let the page catch up once.
      if (reconnected) window.dispatchEvent(new CustomEvent("xiaoxiang:notifications-resync"));
    } else if (message.type === "notification.created" && message.notification) {
      this.received(message.notification);
    }
  }

  lost(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.watchdog);
    this.failures += 1;
    this.mode = "reconnecting";
    this.state.textContent = "重连中";
    if (code === 4401 || code === 4403) return; // signed out: the next page load says so
    setTimeout(() => this.connect(), backoffDelay(this.failures));
  }
}

function main() {
  if (!document.getElementById("notif-bell")) return;
  const notifications = new Notifications();
  notifications.start();
  window.xiaoxiangNotifications = {
    get unread() {
      return notifications.unread;
    },
    get mode() {
      return notifications.mode;
    },
  };
}

main();
