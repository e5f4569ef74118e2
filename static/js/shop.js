// The customer's shop: catalogue and cart, delivery point picked on the map,
// then POST /api/orders/ and pay/ through the REST API (session + CSRF), and on
// to the live order page. The total shown is the server's rule (sum of
// price × quantity) computed in fen, and the server's own total is what counts.

import { createMap, el, fetchJson, icons, readJson } from "./map-common.js";

const L = window.L;
const MAX_QUANTITY = 99;

// Prices are decimal strings with two places ("3.99"): count in whole fen so sums stay exact.
export function toFen(price) {
  return Math.round(Number(price) * 100);
}

export function formatFen(fen) {
  return `¥${Math.floor(fen / 100)}.${String(fen % 100).padStart(2, "0")}`;
}

class Shop {
  constructor(config) {
    this.config = config;
    this.products = [];
    this.quantities = new Map();
    this.point = null;
    const center = config.warehouse ? [config.warehouse.lat, config.warehouse.lon] : [31.2, 121.45];
    this.map = createMap(document.getElementById("shop-map"), { tileUrl: config.tileUrl, center, zoom: 14 });
    if (config.warehouse) {
      L.marker(center, { icon: icons.warehouse(), title: config.warehouse.name, keyboard: false }).addTo(this.map);
    }
    this.marker = null;
    this.map.on("click", (event) => this.pick(event.latlng));
    document.getElementById("checkout").addEventListener("submit", (event) => {
      event.preventDefault();
      this.placeOrder();
    });
    document.getElementById("address").addEventListener("input", () => this.update());
  }

  async load() {
    const list = document.getElementById("catalogue");
    try {
      const data = await fetchJson("/api/products/");
      this.products = Array.isArray(data) ? data : data.results || [];
    } catch (error) {
      list.replaceChildren(el("li", { class: "form-error", text: "商品加载失败，请刷新重试" }));
      console.warn("products", error);
      return;
    }
    list.replaceChildren(...this.products.map((product) => this.renderProduct(product)));
    this.update();
  }

  renderProduct(product) {
    const quantity = el("output", { class: "qty", "aria-live": "polite", text: "0" });
    const change = (delta) => {
      const next = Math.max(0, Math.min(MAX_QUANTITY, (this.quantities.get(product.sku) || 0) + delta));
      if (next === 0) this.quantities.delete(product.sku);
      else this.quantities.set(product.sku, next);
      quantity.textContent = String(next);
      row.classList.toggle("in-cart", next > 0);
      this.update();
    };
    const minus = el("button", { type: "button", class: "qty-button", "aria-label": `减少 ${product.name}`, text: "−" });
    const plus = el("button", { type: "button", class: "qty-button plus", "aria-label": `增加 ${product.name}`, text: "+" });
    minus.addEventListener("click", () => change(-1));
    plus.addEventListener("click", () => change(1));
    const row = el(
      "li",
      { class: "product", "data-sku": product.sku },
      el("div", { class: "product-name" }, el("strong", { text: product.name }), el("span", { class: "muted small", text: `/${product.unit || "份"}` })),
      el("span", { class: "product-price", text: `¥${product.price}` }),
      el("div", { class: "stepper" }, minus, quantity, plus),
    );
    return row;
  }

  pick(latlng) {
    this.point = { lat: Number(latlng.lat.toFixed(6)), lon: Number(latlng.lng.toFixed(6)) };
    if (!this.marker) {
      this.marker = L.marker(latlng, { icon: icons.home(), draggable: true, title: "收货位置", autoPan: true }).addTo(this.map);
      this.marker.on("dragend", () => this.pick(this.marker.getLatLng()));
    } else this.marker.setLatLng(latlng);
    document.getElementById("picked-point").textContent = `已选位置：${this.point.lat.toFixed(5)}, ${this.point.lon.toFixed(5)}`;
    this.update();
  }

  totalFen() {
    let fen = 0;
    for (const product of this.products) fen += toFen(product.price) * (this.quantities.get(product.sku) || 0);
    return fen;
  }

  update() {
    const count = [...this.quantities.values()].reduce((sum, n) => sum + n, 0);
    document.getElementById("cart-total").textContent = formatFen(this.totalFen());
    document.getElementById("cart-note").textContent = `共 ${count} 件商品。实际金额以下单时服务器计算为准。`;
    const address = document.getElementById("address").value.trim();
    const missing = count === 0 ? "请选择商品" : !address ? "请填写详细地址" : !this.point ? "请在地图上选择送货位置" : "";
    const button = document.getElementById("place-order");
    button.disabled = Boolean(missing) || this.busy;
    button.textContent = missing || `下单并支付 ${formatFen(this.totalFen())}`;
  }

  showError(text) {
    const error = document.getElementById("checkout-error");
    error.textContent = text;
    error.hidden = !text;
  }

  async placeOrder() {
    if (this.busy) return;
    this.busy = true;
    this.showError("");
    this.update();
    const body = {
      items: [...this.quantities].map(([sku, quantity]) => ({ sku, quantity })),
      delivery_address: document.getElementById("address").value.trim(),
      delivery_lat: this.point.lat,
      delivery_lon: this.point.lon,
    };
    let order;
    try {
      order = await fetchJson("/api/orders/", { method: "POST", body });
    } catch (error) {
      this.busy = false;
      this.showError(error.status === 400 ? "订单信息有误，请检查商品和地址。" : "下单失败，请稍后重试。");
      this.update();
      return;
    }
    try {
      await fetchJson(`/api/orders/${order.id}/pay/`, { method: "POST", body: { expected_version: order.version } });
    } catch (error) {
      // The order exists: its page offers to pay again.
      console.warn("pay", error);
    }
    window.location.assign(`/orders/${order.id}/`);
  }
}

function main() {
  const config = readJson("shop-config");
  if (!config || !window.L) return;
  const shop = new Shop(config);
  shop.load();
  window.shop = {
    totalText: () => document.getElementById("cart-total").textContent,
    pick: (lat, lon) => shop.pick(L.latLng(lat, lon)),
  };
}

main();
