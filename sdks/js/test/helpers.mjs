// Stubs for the unit tests: a recording storage, a scripted fetch, and browser globals.
import { webcrypto } from "node:crypto";

/** A Web Storage double that records every write. */
export function recordingStorage(initial = {}) {
  const items = new Map(Object.entries(initial));
  const writes = [];
  return {
    items,
    writes,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => {
      writes.push(["set", key]);
      items.set(key, String(value));
    },
    removeItem: (key) => {
      writes.push(["remove", key]);
      items.delete(key);
    },
  };
}

/** A fetch double: `answer(request, n)` returns {status, body, headers} or throws. */
export function scriptedFetch(answer = () => ({ status: 200, body: { rejected: [] } })) {
  const requests = [];
  const fetch = async (url, init) => {
    const request = { url, init, body: JSON.parse(init.body) };
    requests.push(request);
    const reply = await answer(request, requests.length);
    const headers = new Map(Object.entries(reply.headers ?? {}));
    return {
      status: reply.status,
      headers: { get: (name) => headers.get(name.toLowerCase()) ?? null },
      json: async () => reply.body ?? {},
    };
  };
  fetch.requests = requests;
  /** Every event id sent, in order, with repeats. */
  fetch.sentIds = () => requests.flatMap((request) => request.body.events.map((e) => e.id));
  return fetch;
}

/** Installs browser globals for `createTally` from the browser entry. */
export function browserGlobals({ storage, fetch, navigator = {} }) {
  const listeners = [];
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  define("localStorage", storage);
  define("navigator", navigator);
  define("fetch", fetch);
  define("addEventListener", (type, callback) => listeners.push([type, callback]));
  // Node 18 has Web Crypto only as a module; browsers and Node >= 19 have the global.
  if (!globalThis.crypto) define("crypto", webcrypto);
  return {
    /** What the browser does when the page is left. */
    pagehide: () => listeners.filter(([type]) => type === "pagehide").forEach(([, cb]) => cb()),
  };
}

export const options = {
  app: "mirrorbuddy",
  appVersion: "1.2.0",
  endpoint: "https://collector.example",
  key: "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef",
  retryBaseMs: 5,
  retryMaxMs: 20,
};

export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` is true, for at most `ms`. */
export async function until(check, ms = 2000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${check}`);
    await tick(2);
  }
}
