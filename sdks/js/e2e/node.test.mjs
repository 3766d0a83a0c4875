// End to end in Node against a real `tally serve`: a short script records and exits and
// every event is stored once; and the SDK's validator refuses exactly what the
// collector refuses.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";

import { validateEvent } from "../dist/index.js";
import { APP, startCollector } from "./harness.mjs";

let collector;
before(async () => {
  collector = await startCollector([]);
});
after(() => collector?.stop());

const all = async () => {
  const response = await fetch(`${collector.url}/v1/events?limit=1000`, {
    headers: { authorization: `Bearer ${collector.admin}` },
  });
  return (await response.json()).events;
};

function runScript(body) {
  const entry = new URL("../dist/node.js", import.meta.url).href;
  const script = `import { createTally } from ${JSON.stringify(entry)};
const tally = createTally({ app: ${JSON.stringify(APP)}, appVersion: "0.9.0", endpoint: ${JSON.stringify(collector.url)}, key: ${JSON.stringify(collector.ingest)} });
${body}`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, DO_NOT_TRACK: "" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return new Promise((resolve) => child.on("exit", resolve));
}

test("a short Node script records and exits; every event is stored once", async () => {
  const code = await runScript(`
for (let i = 0; i < 250; i++) tally.feature("item_processed");
const build = tally.command("build");
build.failure("io");
tally.error("timeout");`);
  assert.equal(code, 0);
  const events = await all();
  const count = (name) => events.filter((e) => e.name === name).length;
  assert.equal(count("item_processed"), 250);
  assert.equal(count("command_executed"), 1);
  assert.equal(count("error_occurred"), 2);
  assert.equal(count("session_started"), 1);
  assert.equal(count("session_ended"), 1);
  assert.equal(events.length, 255);
  assert.equal(new Set(events.map((e) => e.id)).size, events.length);
  const failed = events.find((e) => e.name === "command_executed");
  assert.equal(failed.success, false);
  assert.equal(failed.error_category, "io");
  assert.equal(failed.command, "build");
});

test("the SDK's validator and the collector refuse the same events", async () => {
  const base = () => ({
    id: "01936b2e-5bcd-71a4-ae99-93edd35a123d",
    ts: new Date().toISOString(),
    app: APP,
    app_version: "1.0.0",
    source: "web",
    type: "feature",
    name: "used",
    session_id: "s-1",
    install_id: "i-1",
  });
  const variants = [
    {},
    { name: "Bad Name" },
    { name: "n".repeat(64) },
    { name: "n".repeat(65) },
    { app_version: "1.0 beta" },
    { command: "export pdf" },
    { command: "Export" },
    { workspace: "h1:0123456789abcdef01234567" },
    { workspace: "h1:0123456789ABCDEF01234567" },
    { target_type: "task" },
    { duration_ms: 2_592_000_000 },
    { duration_ms: 2_592_000_001 },
    { error_category: "not_found" },
    { error_message: "x".repeat(1024) },
    { error_message: "é".repeat(513) },
    { props: { ok: "é".repeat(128) } },
    { props: { ok: "é".repeat(129) } },
    { props: Object.fromEntries([...Array(32)].map((_, i) => [`k${i}`, i])) },
    { props: Object.fromEntries([...Array(33)].map((_, i) => [`k${i}`, i])) },
    { props: { Bad: 1 } },
    { props: Object.fromEntries([...Array(32)].map((_, i) => [`k${i}`, "v".repeat(256)])) },
    { session_id: "s".repeat(65) },
    { install_id: "i+1:2.3_4-5" },
  ];
  const events = variants.map((change, i) => {
    const event = { ...base(), ...change };
    // A distinct UUIDv7 per variant.
    event.id = `01936b2e-5bcd-7${String(i).padStart(3, "0")}-ae99-93edd35a123d`;
    return event;
  });
  const response = await fetch(`${collector.url}/v1/events/batch`, {
    method: "POST",
    headers: { authorization: `Bearer ${collector.ingest}`, "content-type": "application/json" },
    body: JSON.stringify({ events }),
  });
  assert.equal(response.status, 200);
  const { rejected } = await response.json();
  const refusedByCollector = new Map(rejected.map((r) => [r.index, r]));
  events.forEach((event, index) => {
    const error = validateEvent(event);
    const ours = error && `${error.field}: ${error.rule}`;
    const theirs = refusedByCollector.get(index);
    const what = `variant ${index}: ${JSON.stringify(variants[index]).slice(0, 80)}`;
    if (theirs?.code === "too_large") {
      // The collector checks the size before anything else, in its own words; the
      // byte count must agree.
      assert.equal(error?.field, "event", what);
      assert.equal(ours.match(/got (\d+)/)[1], theirs.message.match(/is (\d+) bytes/)[1], what);
    } else {
      assert.equal(ours, theirs?.message ?? null, what);
    }
  });
  assert.ok(rejected.length >= 10, "the variants do break rules");
});
