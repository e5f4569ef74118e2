// The rider app's service worker: the app shell (page, scripts, styles, Leaflet)
// cached so the app opens and keeps queueing positions without a network. The
// API is never cached: positions wait in IndexedDB, not here.
const CACHE = "xiaoxiang-rider-{{ version }}";
const SHELL = {{ shell|safe }};

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("xiaoxiang-rider-") && name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

const fresh = (response) => response && response.ok && response.type === "basic" && !response.redirected;

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  const inShell = SHELL.includes(url.pathname);
  if (!inShell && request.mode !== "navigate") return;
  // Network first, so a deploy shows at once; the cached shell when the network is down.
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (fresh(response) && inShell) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((cached) => cached || caches.match("/rider/")).then((cached) => cached || Response.error())),
  );
});
