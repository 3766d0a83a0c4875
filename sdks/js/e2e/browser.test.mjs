// End to end in headless Chromium: a page on one origin records into a real `tally
// serve` on another, through CORS preflights, reloads, beacons and a collector that
// fails twice; with GPC or DNT nothing leaves the page and nothing is stored.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  APP,
  chromiumPath,
  launchChromium,
  sleep,
  startCollector,
  startPageServer,
  startProxy,
  until,
} from "./harness.mjs";

const chromium = chromiumPath();
let collector, proxy, pages, browser;

before(async () => {
  if (!chromium) return;
  pages = await startPageServer();
  collector = await startCollector([pages.origin]);
  proxy = await startProxy(collector.url);
  browser = await launchChromium(chromium);
});

after(async () => {
  await browser?.close();
  proxy?.close();
  pages?.close();
  collector?.stop();
});

/** A page in a fresh browser context (empty storage), started with `settings`. */
async function openPage(settings = {}, { privacy, prepare } = {}) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await prepare?.(page);
  if (privacy) {
    await page.evaluateOnNewDocument((signal) => {
      if (signal === "gpc")
        Object.defineProperty(Navigator.prototype, "globalPrivacyControl", { get: () => true });
      if (signal === "dnt")
        Object.defineProperty(Navigator.prototype, "doNotTrack", { get: () => "1" });
    }, privacy);
  }
  await page.goto(`${pages.origin}/page.html`);
  await page.waitForFunction(() => window.ready === true);
  const full = {
    app: APP,
    appVersion: "3.1.0",
    endpoint: proxy.url,
    key: collector.ingest,
    ...settings,
  };
  const enabled = await page.evaluate((s, remember) => window.start(s, remember), full, !privacy);
  return { context, page, enabled };
}

const installOf = (page) =>
  page.evaluate((app) => localStorage.getItem(`tally:${app}:install`), APP);
const idsOnce = (events) => new Set(events.map((e) => e.id)).size === events.length;
const reset = () => {
  proxy.state.posts = [];
  proxy.state.failNext = 0;
};

test(
  "(a) normal batches arrive once, through CORS, in batches of at most 100",
  { skip: !chromium },
  async () => {
    reset();
    const { context, page } = await openPage({ flushIntervalMs: 300 });
    const install = await installOf(page);
    await page.evaluate(() => {
      for (let i = 0; i < 150; i++) window.tally.feature("clicked");
    });
    const events = await until(async () => {
      const stored = await collector.stored(install);
      return stored.length === 151 && stored;
    });
    assert.ok(idsOnce(events));
    assert.equal(events.filter((e) => e.name === "clicked").length, 150);
    assert.equal(events.filter((e) => e.name === "session_started").length, 1);
    assert.ok(events.every((e) => e.source === "web" && e.app === APP));
    await sleep(500);
    const batches = proxy.state.posts.filter((p) => p.url === "/v1/events/batch");
    assert.deepEqual(
      batches.map((p) => JSON.parse(p.body).events.length),
      [100, 51],
      "no resends",
    );
    assert.ok(batches.every((p) => p.type === "application/json"));
    await context.close();
  },
);

test("(b) a batch queued before a reload is sent once after it", { skip: !chromium }, async () => {
  reset();
  const { context, page } = await openPage({ flushIntervalMs: 60_000 });
  const install = await installOf(page);
  // The browser refuses the beacon and the keepalive fetch (as when its 64 KiB budget
  // is spent), so the queue must survive the reload in localStorage.
  await page.evaluate(() => {
    navigator.sendBeacon = () => false;
    const send = window.fetch;
    window.fetch = (url, init) =>
      init?.keepalive ? Promise.reject(new TypeError("keepalive budget spent")) : send(url, init);
    for (let i = 0; i < 5; i++) window.tally.feature("drafted");
  });
  await until(() =>
    page.evaluate(
      (app) => JSON.parse(localStorage.getItem(`tally:${app}:queue`) ?? "[]").length === 6,
      APP,
    ),
  );
  const queued = await page.evaluate(
    (app) => JSON.parse(localStorage.getItem(`tally:${app}:queue`)).map((e) => e.id),
    APP,
  );
  assert.equal(proxy.state.posts.length, 0, "nothing left before the reload");
  await page.reload();
  const events = await until(async () => {
    const stored = await collector.stored(install);
    return stored.length === 6 && stored;
  });
  assert.deepEqual(events.map((e) => e.id).sort(), [...queued].sort());
  await until(() =>
    page.evaluate((app) => localStorage.getItem(`tally:${app}:queue`) === null, APP),
  );
  await context.close();
});

test(
  "(c) leaving the page sends the queue with sendBeacon, once",
  { skip: !chromium },
  async () => {
    reset();
    const { context, page } = await openPage({ flushIntervalMs: 60_000 });
    const install = await installOf(page);
    await page.evaluate(() => {
      for (let i = 0; i < 10; i++) window.tally.feature("read_to_end");
    });
    await page.goto(`${pages.origin}/other.html`);
    const events = await until(async () => {
      const stored = await collector.stored(install);
      return stored.length === 11 && stored;
    });
    assert.ok(idsOnce(events));
    const beacons = proxy.state.posts.filter((p) => p.url.startsWith("/v1/events/batch?key="));
    assert.equal(beacons.length, 1);
    assert.match(beacons[0].type, /^text\/plain/);
    await sleep(300);
    assert.equal(proxy.state.posts.length, 1, "nothing else was sent");
    await context.close();
  },
);

test(
  "(c) where the browser refuses the beacon, leaving sends the queue with fetch keepalive, once",
  { skip: !chromium },
  async () => {
    reset();
    const { context, page } = await openPage({ flushIntervalMs: 60_000 });
    const install = await installOf(page);
    await page.evaluate(() => {
      navigator.sendBeacon = () => false;
      for (let i = 0; i < 4; i++) window.tally.feature("skimmed");
    });
    await page.goto(`${pages.origin}/other.html`);
    const events = await until(async () => {
      const stored = await collector.stored(install);
      return stored.length === 5 && stored;
    });
    assert.ok(idsOnce(events));
    assert.equal(proxy.state.posts.length, 1, "one keepalive request, nothing else");
    assert.match(proxy.state.posts[0].url, /^\/v1\/events\/batch\?key=/);
    assert.match(proxy.state.posts[0].type, /^text\/plain/);
    await context.close();
  },
);

test(
  "(d) a collector that answers 503 twice gets the batch once, same ids each time",
  { skip: !chromium },
  async () => {
    reset();
    proxy.state.failNext = 2;
    const { context, page } = await openPage({
      flushIntervalMs: 200,
      retryBaseMs: 100,
      retryMaxMs: 400,
    });
    const install = await installOf(page);
    await page.evaluate(() => {
      window.tally.feature("saved");
      window.tally.command("export").success();
    });
    const events = await until(async () => {
      const stored = await collector.stored(install);
      return stored.length === 3 && stored;
    });
    assert.ok(idsOnce(events));
    const bodies = proxy.state.posts.map((p) =>
      JSON.parse(p.body).events.map((e) => `${e.id}/${e.ts}`),
    );
    assert.equal(bodies.length, 3, "two refused, one committed");
    assert.deepEqual(bodies[1], bodies[0]);
    assert.deepEqual(bodies[2], bodies[0]);
    await context.close();
  },
);

for (const privacy of ["gpc", "dnt"]) {
  test(
    `(e) with ${privacy.toUpperCase()} no request leaves the page and nothing is stored`,
    { skip: !chromium },
    async () => {
      reset();
      const leaving = [];
      // Every request the page makes is seen, from before its first byte: anything not
      // to the page's own origin is recorded and stopped.
      const prepare = async (page) => {
        await page.setRequestInterception(true);
        page.on("request", (request) => {
          if (!request.url().startsWith(pages.origin)) {
            leaving.push(`${request.method()} ${request.url()}`);
            void request.abort();
          } else void request.continue();
        });
      };
      const opened = await openPage({ flushIntervalMs: 100 }, { privacy, prepare });
      assert.equal(opened.enabled, false);
      await opened.page.evaluate(() => {
        for (let i = 0; i < 150; i++) window.tally.feature("clicked");
        window.tally.page();
        window.tally.command("export").failure("io");
        return window.tally.flush();
      });
      await sleep(400);
      const storage = await opened.page.evaluate(() => [
        localStorage.length,
        sessionStorage.length,
      ]);
      assert.deepEqual(storage, [0, 0], "nothing written to localStorage or sessionStorage");
      await opened.page.goto(`${pages.origin}/other.html`);
      await sleep(300);
      assert.deepEqual(leaving, []);
      assert.equal(proxy.state.posts.length, 0);
      await opened.context.close();
    },
  );
}
