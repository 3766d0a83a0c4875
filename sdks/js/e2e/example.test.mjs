// examples/web in headless Chromium against a real `tally serve`: the page records its
// page views and the quiz feature, and "Stop telemetry" stops everything.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import {
  chromiumPath,
  launchChromium,
  startCollector,
  startPageServer,
  until,
} from "./harness.mjs";

const chromium = chromiumPath();
const example = new URL("../../../examples/web/", import.meta.url);
let collector, pages, browser, admin, settings;

before(async () => {
  if (!chromium) return;
  settings = { endpoint: "", key: "" };
  pages = await startPageServer({
    "/index.html": ["text/html", readFileSync(new URL("index.html", example))],
    "/settings.js": ["text/javascript", () => `export default ${JSON.stringify(settings)};`],
  });
  collector = await startCollector([pages.origin]);
  settings.endpoint = collector.url;
  settings.key = collector.key("lessons", "ingest");
  admin = collector.key("lessons", "admin");
  browser = await launchChromium(chromium);
});

after(async () => {
  await browser?.close();
  pages?.close();
  collector?.stop();
});

const lessons = async () => {
  const response = await fetch(`${collector.url}/v1/events?limit=1000`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  return (await response.json()).events;
};

test("the example page records page views and a feature", { skip: !chromium }, async () => {
  const page = await browser.newPage();
  await page.goto(`${pages.origin}/index.html#/intro`);
  await page.waitForFunction(() => document.getElementById("state").textContent.includes("on"));
  await page.click('a[data-route="/fractions"]');
  await page.click("#quiz");
  await new Promise((resolve) => setTimeout(resolve, 1200));
  await page.goto(`${pages.origin}/settings.js`); // leaving: the queue leaves as a beacon
  const events = await until(async () => {
    const stored = await lessons();
    return stored.some((e) => e.name === "command_executed") && stored;
  });
  const views = events.filter((e) => e.name === "page_viewed").map((e) => e.props.route);
  assert.deepEqual(views, ["/intro", "/fractions"]);
  assert.deepEqual(events.find((e) => e.name === "quiz_started").props, { questions: 10 });
  assert.equal(events.find((e) => e.name === "command_executed").command, "quiz");
  assert.ok(!JSON.stringify(events).includes("#/"), "never the URL itself");

  await page.goto(`${pages.origin}/index.html`);
  await page.waitForFunction(() => document.getElementById("state").textContent.includes("on"));
  await page.click("#opt");
  const stored = await page.evaluate(() => Object.keys(localStorage));
  assert.deepEqual(stored, ["tally:lessons:consent"]);
  await page.reload();
  await page.waitForFunction(() => document.getElementById("state").textContent.includes("off"));
  await page.close();
});
