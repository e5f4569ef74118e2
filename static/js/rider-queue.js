// The rider app's offline queue: every position is written here first, in
// IndexedDB (it survives a reload or a crash), and removed only once the server
// has answered for it. Keys grow with each point, so the oldest come out first.

const STORE = "points";

function request(operation) {
  return new Promise((resolve, reject) => {
    operation.onsuccess = () => resolve(operation.result);
    operation.onerror = () => reject(operation.error);
  });
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

export class PointQueue {
  // One database per rider account: a phone handed to another rider never uploads the first one's points.
  static async open(username) {
    const opening = indexedDB.open(`xiaoxiang-rider-${username}`, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { keyPath: "seq", autoIncrement: true });
    return new PointQueue(await request(opening));
  }

  constructor(db) {
    this.db = db;
  }

  async add(point) {
    const transaction = this.db.transaction(STORE, "readwrite");
    const key = await request(transaction.objectStore(STORE).add(point));
    await done(transaction);
    return key;
  }

  // The oldest `limit` points, each with its `seq` key.
  async oldest(limit) {
    const transaction = this.db.transaction(STORE, "readonly");
    return request(transaction.objectStore(STORE).getAll(null, limit));
  }

  async remove(keys) {
    const transaction = this.db.transaction(STORE, "readwrite");
    const store = transaction.objectStore(STORE);
    for (const key of keys) store.delete(key);
    await done(transaction);
  }

  async count() {
    const transaction = this.db.transaction(STORE, "readonly");
    return request(transaction.objectStore(STORE).count());
  }
}
