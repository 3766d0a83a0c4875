// The browser entry with stubbed localStorage, navigator and fetch: queue, persistence,
// size caps, retry rules, beacons and consent.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createTally } from "../dist/index.js";
import { createTally as createSmallTally } from "../dist/browser.js";
import { backoffMs, batches, retryAfterMs, verdict } from "../dist/delivery.js";
import {
  browserGlobals,
  options,
  recordingStorage,
  scriptedFetch,
  tick,
  until,
} from "./helpers.mjs";

const queueKey = "tally:mirrorbuddy:queue";
const storedQueue = (storage) => JSON.parse(storage.getItem(queueKey) ?? "[]");

function page({ storage = recordingStorage(), fetch = scriptedFetch(), navigator = {} } = {}) {
  const globals = browserGlobals({ storage, fetch, navigator });
  return { storage, fetch, ...globals };
}

test("events queue in localStorage and a new page load sends them once", async () => {
  const first = page({ fetch: scriptedFetch(() => new Promise(() => {})) });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("lesson_started");
  tally.feature("quiz_answered");
  await tick(5);
  const queued = storedQueue(first.storage);
  assert.deepEqual(
    queued.map((e) => e.name),
    ["session_started", "lesson_started", "quiz_answered"],
  );
  assert.equal(first.fetch.requests.length, 0, "nothing sent before the interval");
  await tally.shutdown({ timeoutMs: 10 });

  // The reload: same storage, a collector that answers.
  const second = page({ storage: first.storage });
  const reloaded = createTally({ ...options, flushIntervalMs: 60_000 });
  await until(() => second.fetch.requests.length === 1);
  await until(() => storedQueue(first.storage).length === 0);
  assert.deepEqual(
    second.fetch.sentIds(),
    queued.map((e) => e.id).concat(second.fetch.sentIds().slice(3)),
  );
  const request = second.fetch.requests[0];
  assert.equal(request.url, "https://collector.example/v1/events/batch");
  assert.equal(request.init.headers.authorization, `Bearer ${options.key}`);
  assert.equal(request.init.credentials, "omit");
  assert.equal(reloaded.stats().sent, second.fetch.sentIds().length);
  await reloaded.shutdown({ timeoutMs: 5 });
});

test("the queue keeps the newest 1000 events and counts the dropped", async () => {
  const { storage } = page({ fetch: scriptedFetch(() => new Promise(() => {})) });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  for (let i = 0; i < 1100; i++) tally.track("feature", "clicked", { duration_ms: i });
  await tick(5);
  const queue = storedQueue(storage);
  assert.equal(queue.length, 1000);
  assert.equal(queue.at(-1).duration_ms, 1099);
  assert.equal(queue[0].duration_ms, 100);
  assert.equal(tally.stats().droppedOverflow, 101, "100 clicks and the session start");
  await tally.shutdown({ timeoutMs: 5 });
});

test("batches hold at most 100 events and 60 KB", () => {
  const event = (i, size) => ({ id: `id-${i}`, props: { text: "x".repeat(size) } });
  const small = batches(
    [...Array(250)].map((_, i) => event(i, 1)),
    100,
    60_000,
  );
  assert.deepEqual(
    small.map((b) => b.events.length),
    [100, 100, 50],
  );
  const large = batches(
    [...Array(40)].map((_, i) => event(i, 4000)),
    100,
    60_000,
  );
  assert.ok(large.length > 2);
  for (const batch of large) {
    assert.ok(Buffer.byteLength(batch.body) <= 60_000, `${Buffer.byteLength(batch.body)}`);
    assert.deepEqual(JSON.parse(batch.body).events, batch.events);
  }
  assert.deepEqual(
    large.flatMap((b) => b.events.map((e) => e.id)),
    [...Array(40)].map((_, i) => `id-${i}`),
  );
});

test("100 queued events are sent at once, without waiting for the interval", async () => {
  const { fetch } = page();
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  for (let i = 0; i < 99; i++) tally.feature("clicked");
  await until(() => fetch.requests.length === 1);
  assert.equal(fetch.requests[0].body.events.length, 100);
  await tally.shutdown({ timeoutMs: 50 });
});

test("429, 502, 503, 504 and network errors are retried with the same ids", async () => {
  for (const failure of [429, 502, 503, 504, "network"]) {
    const fetch = scriptedFetch((_, n) => {
      if (n <= 2) {
        if (failure === "network") throw new TypeError("Failed to fetch");
        return { status: failure };
      }
      return { status: 200, body: { rejected: [] } };
    });
    page({ fetch });
    const tally = createTally({ ...options, flushIntervalMs: 60_000 });
    tally.feature("lesson_started");
    await tally.flush();
    await until(() => fetch.requests.length === 3);
    const [a, b, c] = fetch.requests.map((r) => r.body.events.map((e) => `${e.id}/${e.ts}`));
    assert.deepEqual(a, b, `${failure}`);
    assert.deepEqual(a, c, `${failure}`);
    await until(() => tally.stats().queued === 0);
    assert.equal(tally.stats().sent, 2);
    await tally.shutdown({ timeoutMs: 10 });
  }
});

test("other refusals drop the batch and count it; nothing is resent", async () => {
  for (const status of [400, 401, 403, 413, 415, 422, 500]) {
    const fetch = scriptedFetch(() => ({ status, body: { error: { code: "x", message: "no" } } }));
    page({ fetch });
    const tally = createTally({ ...options, flushIntervalMs: 60_000 });
    tally.feature("lesson_started");
    await tally.flush();
    await tick(40);
    assert.equal(fetch.requests.length, 1, `${status}`);
    assert.deepEqual(tally.stats(), {
      queued: 0,
      sent: 0,
      droppedInvalid: 0,
      droppedOverflow: 0,
      droppedRefused: 2,
    });
    await tally.shutdown({ timeoutMs: 10 });
  }
});

test("a 200 with rejected entries drops just those", async () => {
  const fetch = scriptedFetch((request) => ({
    status: 200,
    body: {
      accepted: 2,
      duplicates: 0,
      rejected: [{ index: 1, id: request.body.events[1].id, code: "invalid_event", message: "x" }],
    },
  }));
  page({ fetch });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("a");
  tally.feature("b");
  await tally.flush();
  assert.equal(fetch.requests.length, 1);
  assert.equal(tally.stats().sent, 2);
  assert.equal(tally.stats().droppedRefused, 1);
  assert.equal(tally.stats().queued, 0);
  await tally.shutdown({ timeoutMs: 10 });
});

test("backoff is full jitter, doubling to a ceiling, and honours Retry-After", () => {
  assert.equal(backoffMs(0, 1000, 300_000, 0.999, null), 999);
  assert.equal(backoffMs(3, 1000, 300_000, 0.5, null), 4000);
  assert.equal(backoffMs(20, 1000, 300_000, 0.5, null), 150_000);
  assert.equal(backoffMs(0, 1000, 300_000, 0, null), 0);
  assert.equal(backoffMs(0, 1000, 300_000, 0.1, 7000), 7000, "never sooner than asked");
  assert.equal(retryAfterMs("7", 0), 7000);
  assert.equal(retryAfterMs("Thu, 01 Jan 1970 00:00:10 GMT", 4000), 6000);
  assert.equal(retryAfterMs("soon", 0), null);
  assert.equal(verdict(202), "sent");
  assert.equal(verdict(429), "retry");
  assert.equal(verdict(0), "retry", "no answer at all: a network error");
  assert.equal(verdict(404), "drop");
});

test("Retry-After holds the next attempt back", async () => {
  const fetch = scriptedFetch((_, n) =>
    n === 1
      ? { status: 429, headers: { "retry-after": "1" } }
      : { status: 200, body: { rejected: [] } },
  );
  page({ fetch });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("a");
  const started = Date.now();
  await tally.flush();
  await until(() => fetch.requests.length === 2, 3000);
  assert.ok(Date.now() - started >= 950, `retried after ${Date.now() - started} ms`);
  await tally.shutdown({ timeoutMs: 10 });
});

test("pagehide hands the queue to sendBeacon in chunks under 60 KB with the key in the query", async () => {
  const beacons = [];
  const navigator = {
    sendBeacon: (url, body) => {
      beacons.push({ url, body });
      return beacons.length <= 2;
    },
  };
  const fetch = scriptedFetch(() => new Promise(() => {}));
  const { storage, pagehide } = page({ fetch, navigator });
  const tally = createTally({ ...options, level: "enhanced", flushIntervalMs: 60_000 });
  const props = Object.fromEntries([...Array(8)].map((_, i) => [`text_${i}`, "x".repeat(250)]));
  for (let i = 0; i < 60; i++) tally.feature("viewed", { ...props, n: i });
  pagehide();
  assert.ok(beacons.length >= 3);
  for (const beacon of beacons) {
    assert.equal(beacon.url, `https://collector.example/v1/events/batch?key=${options.key}`);
    assert.equal(typeof beacon.body, "string", "a string is sent as text/plain, CORS-safelisted");
    assert.ok(Buffer.byteLength(beacon.body) < 60_000);
  }
  // The third beacon was refused (the browser's budget was spent): its events went to
  // fetch keepalive, which has not answered, so they stay stored.
  const handed = beacons.slice(0, 2).flatMap((b) => JSON.parse(b.body).events.map((e) => e.id));
  const left = storedQueue(storage).map((e) => e.id);
  assert.equal(handed.length + left.length, 61);
  assert.deepEqual(
    handed.filter((id) => left.includes(id)),
    [],
  );
  await tally.shutdown({ timeoutMs: 5 });
});

test("without sendBeacon, pagehide sends the queue with fetch keepalive in the beacon form", async () => {
  let answer = () => {};
  const fetch = scriptedFetch(
    (request) =>
      new Promise((resolve) => {
        if (request.init.keepalive) answer = () => resolve({ status: 200, body: { rejected: [] } });
      }),
  );
  const { storage, pagehide } = page({ fetch, navigator: {} });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("lesson_started");
  tally.feature("lesson_finished");
  pagehide();
  // Browsers fire pagehide and visibilitychange together: the second sends nothing more.
  pagehide();
  await tally.flush();
  assert.equal(fetch.requests.length, 1, "the queue leaves at once, and once");
  const [request] = fetch.requests;
  assert.equal(request.url, `https://collector.example/v1/events/batch?key=${options.key}`);
  assert.equal(request.init.keepalive, true);
  assert.equal(request.init.credentials, "omit");
  assert.equal(request.init.headers, undefined, "no header: a string body goes as text/plain");
  assert.deepEqual(
    request.body.events.map((e) => e.name),
    ["session_started", "lesson_started", "lesson_finished"],
  );
  // Until the collector answers, the events stay stored: a page that dies now sends
  // them again on its next load, with the same ids.
  assert.equal(storedQueue(storage).length, 3);
  answer();
  await until(() => tally.stats().queued === 0);
  await tick(5);
  assert.equal(storedQueue(storage).length, 0);
  assert.equal(tally.stats().sent, 3);
  await tally.shutdown({ timeoutMs: 5 });
  assert.equal(fetch.requests.length, 2, "then only the session's end is sent");
});

test("a chunk sendBeacon refuses leaves with fetch keepalive; a failed one stays queued", async () => {
  const beacons = [];
  const navigator = {
    sendBeacon: (url, body) => beacons.push(body) && beacons.length === 1,
  };
  const fetch = scriptedFetch((request) => {
    if (request.init.keepalive && request.body.events.length > 0 && fetch.requests.length === 2) {
      throw new TypeError("keepalive budget exceeded");
    }
    return { status: 200, body: { rejected: [] } };
  });
  const { storage, pagehide } = page({ fetch, navigator });
  const tally = createTally({ ...options, level: "enhanced", flushIntervalMs: 60_000 });
  const props = Object.fromEntries([...Array(8)].map((_, i) => [`text_${i}`, "x".repeat(250)]));
  for (let i = 0; i < 60; i++) tally.feature("viewed", { ...props, n: i });
  pagehide();
  assert.equal(beacons.length, 3, "each chunk is offered to sendBeacon first");
  const kept = fetch.requests.filter((r) => r.init.keepalive);
  assert.equal(kept.length, 2, "the two refused chunks went to fetch keepalive");
  const beaconed = JSON.parse(beacons[0]).events.map((e) => e.id);
  const [delivered, failed] = kept.map((r) => r.body.events.map((e) => e.id));
  await until(() => tally.stats().queued === failed.length);
  await tick(5);
  assert.deepEqual(
    storedQueue(storage).map((e) => e.id),
    failed,
    "only the chunk whose keepalive request failed is still stored",
  );
  assert.equal(beaconed.length + delivered.length + failed.length, 61);
  assert.equal(tally.stats().sent, delivered.length);
  await tally.shutdown({ timeoutMs: 50 });
});

test("the small bundle's debug mode names each broken rule by its code, once", async () => {
  page({ fetch: scriptedFetch(() => new Promise(() => {})) });
  const warnings = [];
  const warn = console.warn;
  console.warn = (message) => warnings.push(message);
  try {
    const tally = createSmallTally({ ...options, level: "enhanced", debug: true });
    tally.feature("Bad Name");
    tally.feature("Bad Name");
    tally.feature("ok", { nested: { a: 1 } });
    assert.deepEqual(warnings, [
      "tally: dropped feature/Bad Name name,chars,Bad Name",
      "tally: dropped feature/ok props.nested,flat",
    ]);
    assert.equal(tally.stats().droppedInvalid, 3);
    await tally.shutdown({ timeoutMs: 5 });
    const off = createSmallTally({ ...options, endpoint: "collector.example", debug: true });
    assert.equal(off.isEnabled(), false);
    assert.equal(warnings.at(-1), "tally: off endpoint,url");
  } finally {
    console.warn = warn;
  }
});

test("the built bundles record alike; tally.debug.js explains in the collector's words", async () => {
  const warnings = [];
  const warn = console.warn;
  console.warn = (message) => warnings.push(message);
  try {
    for (const file of ["tally.min.js", "tally.debug.js"]) {
      const { fetch } = page();
      const { createTally: create } = await import(`../dist/${file}`);
      const tally = create({ ...options, debug: true, flushIntervalMs: 60_000 });
      tally.feature("Bad Name");
      tally.feature("lesson_started");
      await tally.flush();
      assert.deepEqual(
        fetch.sentIds().length && fetch.requests[0].body.events.map((e) => e.name),
        ["session_started", "lesson_started"],
        file,
      );
      await tally.shutdown({ timeoutMs: 5 });
    }
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(warnings, [
    "tally: dropped feature/Bad Name name,chars,Bad Name",
    'tally: dropped feature/Bad Name: name: must be 1 to 64 characters of a-z, 0-9 and _, starting with a letter (got "Bad Name")',
  ]);
});

for (const [signal, navigator] of [
  ["Global Privacy Control", { globalPrivacyControl: true }],
  ["Do Not Track", { doNotTrack: "1" }],
]) {
  test(`${signal}: no request and no storage write at all`, async () => {
    const beacons = [];
    navigator.sendBeacon = () => beacons.push(1) > 0;
    const { storage, fetch, pagehide } = page({ navigator });
    const tally = createTally({ ...options, flushIntervalMs: 10 });
    assert.equal(tally.isEnabled(), false);
    tally.feature("lesson_started");
    tally.command("export").success();
    tally.page("/lessons");
    await tally.flush();
    pagehide();
    await tick(30);
    assert.deepEqual(storage.writes, []);
    assert.equal(fetch.requests.length, 0);
    assert.equal(beacons.length, 0);
    await tally.shutdown();
  });
}

test("optOut deletes the queue and ids, sends nothing more, and holds across reloads", async () => {
  const { storage, fetch, pagehide } = page({ fetch: scriptedFetch(() => new Promise(() => {})) });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("lesson_started");
  await tick(5);
  assert.ok(storage.getItem("tally:mirrorbuddy:install"));
  tally.optOut();
  assert.equal(tally.isEnabled(), false);
  assert.deepEqual([...storage.items.keys()], ["tally:mirrorbuddy:consent"]);
  const writes = storage.writes.length;
  tally.feature("after");
  pagehide();
  await tally.flush();
  assert.equal(storage.writes.length, writes);
  assert.equal(fetch.requests.length, 0);

  page({ storage });
  const reloaded = createTally({ ...options, flushIntervalMs: 60_000 });
  assert.equal(reloaded.isEnabled(), false, "the choice persists");
  reloaded.optIn();
  assert.equal(reloaded.isEnabled(), true);
  assert.equal(storage.getItem("tally:mirrorbuddy:consent"), null);
  assert.notEqual(storage.getItem("tally:mirrorbuddy:install"), null, "a fresh install id");
  await reloaded.shutdown({ timeoutMs: 5 });
});

test("a bad call never throws: it is dropped, counted and explained once in debug mode", async () => {
  page({ fetch: scriptedFetch(() => new Promise(() => {})) });
  const warnings = [];
  const warn = console.warn;
  console.warn = (message) => warnings.push(message);
  try {
    const tally = createTally({
      ...options,
      level: "enhanced",
      debug: true,
      flushIntervalMs: 60_000,
    });
    tally.feature("Bad Name");
    tally.feature("Bad Name");
    tally.feature("ok", { nested: { a: 1 } });
    tally.track(null, undefined, 5);
    tally.command("Export PDF").success();
    assert.equal(tally.stats().droppedInvalid, 5);
    assert.equal(warnings.filter((w) => w.includes("Bad Name")).length, 1);
    assert.ok(warnings.some((w) => w.includes("props.nested")));
    await tally.shutdown({ timeoutMs: 5 });
  } finally {
    console.warn = warn;
  }
  const quiet = createTally({ ...options, app: "Bad App" });
  assert.equal(quiet.isEnabled(), false, "a bad app name turns recording off instead of throwing");
});

test("the page route is the path only, never the query or fragment", async () => {
  const { fetch } = page();
  Object.defineProperty(globalThis, "location", {
    value: {
      pathname: "/lessons/3",
      search: "?token=secret",
      href: "https://app.example/lessons/3?token=secret#x",
    },
    configurable: true,
  });
  const tally = createTally({ ...options, level: "enhanced", flushIntervalMs: 60_000 });
  tally.page();
  await tally.flush();
  const body = JSON.stringify(fetch.requests[0].body);
  assert.ok(body.includes('"route":"/lessons/3"'));
  assert.ok(!body.includes("secret"));
  await tally.shutdown({ timeoutMs: 5 });
  delete globalThis.location;
});

test("a damaged stored queue is read around, never wedges delivery", async () => {
  const storage = recordingStorage({
    "tally:mirrorbuddy:queue": JSON.stringify([null, 7, { name: "no_id" }, "x"]),
  });
  const { fetch } = page({ storage });
  const tally = createTally({ ...options, flushIntervalMs: 60_000 });
  tally.feature("after_damage");
  await tally.flush();
  assert.deepEqual(
    fetch.requests.flatMap((r) => r.body.events.map((e) => e.name)),
    ["session_started", "after_damage"],
  );
  await tally.shutdown({ timeoutMs: 5 });
  const unreadable = page({
    storage: recordingStorage({ "tally:mirrorbuddy:queue": "{not json" }),
  });
  const again = createTally({ ...options, flushIntervalMs: 60_000 });
  again.feature("still_works");
  await again.flush();
  assert.equal(unreadable.fetch.requests.length, 1);
  await again.shutdown({ timeoutMs: 5 });
});

test("a page hidden (visibilitychange) hands the queue over as pagehide does", async () => {
  const beacons = [];
  const { fetch } = page({
    fetch: scriptedFetch(() => new Promise(() => {})),
    navigator: { sendBeacon: (url, body) => beacons.push(body) > 0 },
  });
  const listeners = [];
  const document = {
    visibilityState: "visible",
    addEventListener: (type, callback) => listeners.push([type, callback]),
  };
  Object.defineProperty(globalThis, "document", { value: document, configurable: true });
  try {
    const tally = createTally({ ...options, flushIntervalMs: 60_000 });
    tally.feature("lesson_started");
    const fire = () => listeners.forEach(([type, cb]) => type === "visibilitychange" && cb());
    fire();
    assert.equal(beacons.length, 0, "a page that stays visible keeps its queue");
    document.visibilityState = "hidden";
    fire();
    assert.deepEqual(
      beacons.flatMap((body) => JSON.parse(body).events.map((e) => e.name)),
      ["session_started", "lesson_started"],
    );
    assert.equal(fetch.requests.length, 0);
    assert.equal(tally.stats().queued, 0);
    await tally.shutdown({ timeoutMs: 5 });
  } finally {
    delete globalThis.document;
  }
});
