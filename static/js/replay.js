// Replay of a finished delivery: play/pause, speed, a scrubber, and a callback
// so the page can light up the timeline entries the rider has passed.

import { formatTime, icons, STATUS } from "./map-common.js";

const L = window.L;
const SCRUBBER_STEPS = 1000;

export class TrajectoryReplay {
  constructor({ map, root, onTime = () => {} }) {
    this.map = map;
    this.root = root;
    this.onTime = onTime;
    this.playButton = root.querySelector(".replay-play");
    this.scrubber = root.querySelector(".replay-scrubber");
    this.timeLabel = root.querySelector(".replay-time");
    this.speedSelect = root.querySelector("select");
    this.path = [];
    this.events = [];
    this.layers = null;
    this.playing = false;
    this.frame = null;
    this.current = 0;
    this.start = 0;
    this.end = 0;

    this.playButton.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    this.scrubber.addEventListener("input", () => {
      this.seek(this.start + ((this.end - this.start) * Number(this.scrubber.value)) / SCRUBBER_STEPS);
    });
  }

  get speed() {
    return Number(this.speedSelect.value) || 60;
  }

  load({ path, events }) {
    this.path = path.filter((point) => point.time);
    this.events = events.filter((event) => event.time);
    const times = [...this.path.map((point) => point.time.getTime())];
    // Start where the warehouse starts working (paid), so the stages replay too.
    const working = this.events.find((event) => event.kind === "status" && event.status === STATUS.PAID);
    const firstEvent = working || this.events[0];
    if (firstEvent) times.push(firstEvent.time.getTime());
    const lastEvent = this.events[this.events.length - 1];
    if (lastEvent) times.push(lastEvent.time.getTime());
    this.start = times.length ? Math.min(...times) : Date.now();
    this.end = times.length ? Math.max(...times) : this.start;
    if (this.end <= this.start) this.end = this.start + 1000;
    this.root.hidden = false;
    this.root.dataset.points = String(this.path.length);
    this.drawLayers();
    this.seek(this.start);
  }

  drawLayers() {
    if (this.layers) this.layers.remove();
    const latLngs = this.path.map((point) => [point.lat, point.lon]);
    this.fullLine = L.polyline(latLngs, { color: "#9aa5b1", weight: 4, opacity: 0.55, dashArray: "6 8" });
    this.doneLine = L.polyline([], { color: "#ff7a00", weight: 5, opacity: 0.95 });
    const first = latLngs[0] || this.map.getCenter();
    this.marker = L.marker(first, { icon: icons.rider("is-replay"), zIndexOffset: 1000, keyboard: false });
    this.layers = L.layerGroup([this.fullLine, this.doneLine, this.marker]).addTo(this.map);
  }

  hide() {
    this.pause();
    if (this.layers) this.layers.remove();
    this.layers = null;
  }

  play() {
    if (this.current >= this.end) this.seek(this.start);
    this.playing = true;
    this.root.classList.add("is-playing");
    this.playButton.textContent = "❚❚";
    this.playButton.setAttribute("aria-label", "暂停回放");
    let last = performance.now();
    const tick = (now) => {
      if (!this.playing) return;
      const elapsed = Math.min(250, now - last);
      last = now;
      this.seek(this.current + elapsed * this.speed);
      if (this.current >= this.end) {
        this.pause();
        this.playButton.textContent = "↻";
        this.playButton.setAttribute("aria-label", "重新播放");
        return;
      }
      this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    this.root.classList.remove("is-playing");
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    this.playButton.textContent = "▶";
    this.playButton.setAttribute("aria-label", "播放轨迹回放");
  }

  seek(time) {
    this.current = Math.max(this.start, Math.min(this.end, time));
    const fraction = (this.current - this.start) / (this.end - this.start);
    this.scrubber.value = String(Math.round(fraction * SCRUBBER_STEPS));
    this.root.dataset.progress = fraction.toFixed(3);
    this.timeLabel.textContent = formatTime(new Date(this.current), { seconds: true });
    const { position, passed } = this.positionAt(this.current);
    if (this.marker && position) this.marker.setLatLng(position);
    if (this.doneLine) this.doneLine.setLatLngs(position ? [...passed, position] : passed);
    this.onTime(new Date(this.current));
  }

  positionAt(time) {
    const path = this.path;
    if (path.length === 0) return { position: null, passed: [] };
    if (time <= path[0].time.getTime()) return { position: [path[0].lat, path[0].lon], passed: [] };
    let low = 0;
    let high = path.length - 1;
    if (time >= path[high].time.getTime()) {
      return { position: [path[high].lat, path[high].lon], passed: path.map((point) => [point.lat, point.lon]) };
    }
    while (high - low > 1) {
      const middle = (low + high) >> 1;
      if (path[middle].time.getTime() <= time) low = middle;
      else high = middle;
    }
    const a = path[low];
    const b = path[high];
    const span = b.time.getTime() - a.time.getTime();
    const t = span > 0 ? (time - a.time.getTime()) / span : 1;
    const position = [a.lat + (b.lat - a.lat) * t, a.lon + (b.lon - a.lon) * t];
    return { position, passed: path.slice(0, low + 1).map((point) => [point.lat, point.lon]) };
  }
}
