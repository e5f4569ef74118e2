// Shared map helpers for the order page, the admin order page and the ops map.
// Leaflet (static/vendor/leaflet, no CDN) is loaded as a classic script before this module.

const L = window.L;

export const STATUS = { PENDING: 1, PAID: 2, DELIVERING: 3, COMPLETED: 4, CANCELLED: 5 };

// What a customer reads ("paid" means the warehouse is working on the order).
export const STATUS_LABELS = {
  1: "待支付",
  2: "仓库处理中",
  3: "配送中",
  4: "已送达",
  5: "已取消",
};

export const STAGE_LABELS = { picking: "拣货中", picked: "拣货完成", packed: "已打包" };

export const ALERT_KINDS = { stall: "骑手停滞", deviation: "偏离路线", late: "配送超时", offline: "骑手离线" };
// The GPS quality flags (tracking/quality.py) staff see on a trajectory's points.
export const QUALITY_FLAGS = { accuracy: "定位精度差", zero: "坐标为 (0, 0)", speed: "速度不可能" };

const TIME_FORMAT = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});
const TIME_SECONDS_FORMAT = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});
const DATE_FORMAT = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", month: "numeric", day: "numeric" });

export function parseTime(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatTime(value, { seconds = false } = {}) {
  const date = parseTime(value);
  if (!date) return "";
  return (seconds ? TIME_SECONDS_FORMAT : TIME_FORMAT).format(date);
}

export function formatDateTime(value) {
  const date = parseTime(value);
  if (!date) return "";
  const today = DATE_FORMAT.format(new Date());
  const day = DATE_FORMAT.format(date);
  return day === today ? formatTime(date) : `${day} ${formatTime(date)}`;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "href" || key === "title") {
      node.setAttribute(key, value);
    } else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function fetchJson(url, { signal, method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    const error = new Error(`${method} ${url}: HTTP ${response.status}`);
    error.status = response.status;
    // The API's errors are JSON {"detail", ...}: callers may show them.
    error.data = await response.json().catch(() => null);
    throw error;
  }
  return response.json();
}

export function wsUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

// Exponential backoff with "equal jitter": half fixed, half random, capped.
/**
 * Follow one WebSocket of a client that replaces its socket on reconnect
 * (`owner.ws` is the current one): frames of a superseded socket are ignored,
 * JSON frames go to onMessage, and a socket silent for timeoutMs (not even a
 * heartbeat) is dead even if the browser has not noticed: it is closed and
 * reported lost with code 4000. onLost(ws, code) also hears real closes.
 */
export function watchSocket(owner, ws, { timeoutMs, onMessage, onLost }) {
  const arm = () => {
    clearTimeout(owner.watchdog);
    owner.watchdog = setTimeout(() => {
      if (owner.ws !== ws) return;
      try {
        ws.close(4000, "heartbeat timeout");
      } catch {
        /* already closing */
      }
      onLost(ws, 4000);
    }, timeoutMs);
  };
  ws.addEventListener("open", arm);
  ws.addEventListener("message", (message) => {
    if (owner.ws !== ws) return;
    arm();
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    onMessage(data);
  });
  ws.addEventListener("close", (closed) => {
    if (owner.ws === ws) onLost(ws, closed.code);
  });
}

export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000 } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function pinIcon(kind, label) {
  return L.divIcon({
    className: `pin pin-${kind}`,
    html: `<span class="pin-body"><span class="pin-label">${label}</span></span>`,
    iconSize: [34, 42],
    iconAnchor: [17, 40],
    popupAnchor: [0, -36],
  });
}

export const icons = {
  warehouse: () => pinIcon("warehouse", "仓"),
  home: () => pinIcon("home", "家"),
  rider: (extraClass = "") =>
    L.divIcon({
      className: `rider-icon ${extraClass}`.trim(),
      html: '<span class="rider-pulse"></span><span class="rider-dot">骑</span>',
      iconSize: [36, 36],
      iconAnchor: [18, 18],
      popupAnchor: [0, -16],
    }),
};

// A map that draws markers and paths even with no tiles at all: without a
// MAP_TILE_URL (or with an unreachable one) the background is a plain canvas.
export function createMap(element, { tileUrl = "", center = [31.2, 121.45], zoom = 13 } = {}) {
  // maxZoom here too: without tiles the map has none, and clustering needs one.
  const map = L.map(element, { zoomControl: true, attributionControl: Boolean(tileUrl), center, zoom, maxZoom: 19 });
  element.classList.add(tileUrl ? "has-tiles" : "no-tiles");
  if (tileUrl) {
    const layer = L.tileLayer(tileUrl, { maxZoom: 19, attribution: "地图数据" });
    let failures = 0;
    layer.on("tileerror", () => {
      failures += 1;
      if (failures === 4) element.classList.add("tiles-unreachable");
    });
    layer.on("tileload", () => element.classList.remove("tiles-unreachable"));
    layer.addTo(map);
  }
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  return map;
}

// Pins stand above their point, so the top keeps more room than the other sides.
export function fitTo(map, latLngs, { padding = null, bottom = 40, maxZoom = 16 } = {}) {
  const points = latLngs.filter((point) => point && Number.isFinite(point[0]) && Number.isFinite(point[1]));
  if (points.length === 0) return;
  if (points.length === 1) {
    map.setView(points[0], Math.min(maxZoom, 15));
    return;
  }
  const options = padding
    ? { padding, maxZoom }
    : { paddingTopLeft: [40, 64], paddingBottomRight: [40, bottom], maxZoom };
  map.fitBounds(L.latLngBounds(points), options);
}

// Moves a marker smoothly to a new position instead of jumping; a newer move
// cancels the one in flight and starts from wherever the marker is now.
export class SmoothMarker {
  constructor(marker, { durationMs = 1200 } = {}) {
    this.marker = marker;
    this.durationMs = durationMs;
    this.frame = null;
    this.target = marker.getLatLng();
  }

  moveTo(latLng, { animate = true, durationMs = this.durationMs } = {}) {
    const to = L.latLng(latLng);
    this.target = to;
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    const from = this.marker.getLatLng();
    if (!animate || document.hidden || from.distanceTo(to) < 0.5) {
      this.marker.setLatLng(to);
      return;
    }
    const started = performance.now();
    const step = (now) => {
      const t = Math.min(1, (now - started) / durationMs);
      const eased = t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2;
      this.marker.setLatLng([from.lat + (to.lat - from.lat) * eased, from.lng + (to.lng - from.lng) * eased]);
      this.frame = t < 1 ? requestAnimationFrame(step) : null;
    };
    this.frame = requestAnimationFrame(step);
  }
}

// The trajectory endpoint's GeoJSON: LineString(s) of the rider's path plus a
// Point per status/stage event. Times per vertex come from the LineString's
// properties when present, else they are spread between the first and last
// known event times so replay still runs at a sensible pace. Each point's
// `flags` are its GPS quality flags (staff only; [] otherwise).
export function parseTrajectory(geojson) {
  const features = (geojson && geojson.features) || [];
  const path = [];
  const events = [];
  for (const feature of features) {
    const geometry = feature.geometry || {};
    const props = feature.properties || {};
    if (geometry.type === "LineString" || geometry.type === "MultiLineString") {
      const lines = geometry.type === "LineString" ? [geometry.coordinates] : geometry.coordinates;
      const times = props.times || props.recorded_at || props.timestamps || props.coordTimes || [];
      const flags = Array.isArray(props.quality_flags) ? props.quality_flags : [];
      let index = 0;
      for (const line of lines) {
        for (const coordinate of line) {
          const time = parseTime(Array.isArray(times) ? times[index] : null);
          const pointFlags = Array.isArray(flags[index]) ? flags[index] : [];
          path.push({ lat: Number(coordinate[1]), lon: Number(coordinate[0]), time, flags: pointFlags });
          index += 1;
        }
      }
    } else if (geometry.type === "Point") {
      const [lon, lat] = geometry.coordinates || [];
      events.push({
        kind: props.kind || (props.stage ? "stage" : "status"),
        status: props.status === undefined || props.status === null ? null : Number(props.status),
        stage: props.stage || null,
        time: parseTime(props.time || props.recorded_at || props.create_time),
        lat: Number(lat),
        lon: Number(lon),
        label: props.label || props.status_display || null,
      });
    }
  }
  const validPath = path.filter((point) => Number.isFinite(point.lat) && Number.isFinite(point.lon));
  events.sort((a, b) => (a.time ? a.time.getTime() : 0) - (b.time ? b.time.getTime() : 0));
  const timed = validPath.length > 0 && validPath.every((point) => point.time);
  fillPathTimes(validPath, events);
  return { path: validPath, events, timed };
}

function fillPathTimes(path, events) {
  if (path.length === 0 || path.every((point) => point.time)) return;
  const eventTimes = events.map((event) => event.time).filter(Boolean);
  const dispatched = events.find((event) => event.status === STATUS.DELIVERING && event.kind === "status");
  const delivered = events.find((event) => event.status === STATUS.COMPLETED && event.kind === "status");
  const start = (dispatched && dispatched.time) || eventTimes[0] || new Date();
  let end = (delivered && delivered.time) || eventTimes[eventTimes.length - 1] || start;
  if (end <= start) end = new Date(start.getTime() + Math.max(1, path.length - 1) * 15000);
  const span = end.getTime() - start.getTime();
  path.forEach((point, index) => {
    if (!point.time) point.time = new Date(start.getTime() + (span * index) / Math.max(1, path.length - 1));
  });
}
