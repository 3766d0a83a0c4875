// `npm run bench`: the cost of `track()` in headless Chromium against an empty function
// called the same way in the same run, and the bundle's size. Prints one line each.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

import { chromiumPath, launchChromium, startPageServer } from "./harness.mjs";

const CALLS = 500; // per round: below the 1,000-event queue cap, as in a real page
const ROUNDS = 400;

const bundle = readFileSync(new URL("../dist/tally.min.js", import.meta.url));
console.log(
  `bundle: ${bundle.length} bytes minified, ${gzipSync(bundle, { level: 9 }).length} bytes minified + gzip`,
);

const chromium = chromiumPath();
if (!chromium) process.exit(1);
const pages = await startPageServer();
const browser = await launchChromium(chromium);
try {
  const page = await browser.newPage();
  await page.goto(`${pages.origin}/page.html`);
  await page.waitForFunction(() => window.ready === true);
  const result = await page.evaluate(
    async (calls, rounds) => {
      const { createTally } = await import("/tally.min.js");
      // No network in the measurement: the flush the 100th event schedules never answers.
      window.fetch = () => new Promise(() => {});
      const settings = {
        app: "bench",
        appVersion: "1.0.0",
        endpoint: "https://collector.invalid",
        key: "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef",
      };
      const sink = { calls: 0 };
      const empty = (type, name, fields) => {
        sink.calls += fields ? 1 : 0;
      };
      const fields = { duration_ms: 12, success: true };
      const time = (fn) => {
        const start = performance.now();
        for (let i = 0; i < calls; i++) fn("feature", "clicked", fields);
        return ((performance.now() - start) * 1000) / calls;
      };
      const baseline = [];
      const track = [];
      for (let r = 0; r < rounds; r++) {
        localStorage.clear();
        const tally = createTally(settings);
        baseline.push(time(empty));
        track.push(time(tally.track));
        await tally.shutdown({ timeoutMs: 0 });
      }
      // The mean over every call: performance.now() is coarse (100 µs), a round is not.
      const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
      return { baseline: mean(baseline), track: mean(track) };
    },
    CALLS,
    ROUNDS,
  );
  console.log(
    `track(): ${result.track.toFixed(3)} µs per call; empty function: ${result.baseline.toFixed(3)} µs; ` +
      `difference ${(result.track - result.baseline).toFixed(3)} µs (mean of ${ROUNDS} rounds of ${CALLS} calls)`,
  );
} finally {
  await browser.close();
  pages.close();
}
