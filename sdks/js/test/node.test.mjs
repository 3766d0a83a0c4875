// The Node entry: shutdown within its timeout, a process that is never held open, the
// file-backed queue, DO_NOT_TRACK, and sessions on a fake clock.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { createCore } from "../dist/index.js";
import { fileStorage } from "../dist/node.js";
import { options, recordingStorage, scriptedFetch } from "./helpers.mjs";

const scratch = [];
/** A fresh directory, deleted when the tests end. */
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "tally-node-"));
  scratch.push(dir);
  return dir;
};
after(() => scratch.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const entry = new URL("../dist/node.js", import.meta.url).href;

/** A collector double: `answer(events)` gives the status; never answers when null. */
async function collector(answer) {
  const received = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      const status = answer(body);
      if (status === null) return;
      received.push(...JSON.parse(body).events);
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify({ accepted: 0, duplicates: 0, rejected: [] }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, received, close: () => server.closeAllConnections() || server.close() };
}

/** Runs a script with the Node entry; resolves with its exit code and run time. */
function run(script, env = {}) {
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { createTally } from ${JSON.stringify(entry)};\n${script}`,
    ],
    {
      env: { ...process.env, DO_NOT_TRACK: "", ...env },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  return new Promise((resolve) =>
    child.on("exit", (code) => resolve({ code, ms: Date.now() - started })),
  );
}

const config = (url, extra = "") =>
  `{ app: "cli_tool", appVersion: "0.3.0", endpoint: ${JSON.stringify(url)}, key: ${JSON.stringify(options.key)}${extra} }`;

test("a short script records, exits without calling shutdown, and every event arrives once", async () => {
  const server = await collector(() => 200);
  const { code } = await run(
    `const t = createTally(${config(server.url)});\nt.command("build").success();\nt.feature("cache_hit");`,
  );
  server.close();
  assert.equal(code, 0);
  const names = server.received.map((e) => e.name);
  assert.deepEqual(names.sort(), [
    "cache_hit",
    "command_executed",
    "session_ended",
    "session_started",
  ]);
  assert.equal(new Set(server.received.map((e) => e.id)).size, server.received.length);
  assert.ok(server.received.every((e) => e.source === "backend"));
});

test("shutdown never keeps the process alive past its timeout", async () => {
  const server = await collector(() => null);
  const { code, ms } = await run(
    `const t = createTally(${config(server.url)});\nt.feature("x");\nawait t.shutdown({ timeoutMs: 300 });\nconsole.log("shut down");`,
  );
  server.close();
  assert.equal(code, 0);
  assert.ok(ms < 10_000, `exited after ${ms} ms against a collector that never answers`);
  // And without a shutdown call, the exit flush is bounded too.
  const silent = await collector(() => null);
  const second = await run(
    `const t = createTally(${config(silent.url, ", exitTimeoutMs: 300")});\nt.feature("x");`,
  );
  silent.close();
  assert.equal(second.code, 0);
  assert.ok(second.ms < 10_000, `exited after ${second.ms} ms`);
});

test("a file-backed queue keeps events across runs until a collector takes them", async () => {
  const dir = tempDir();
  const queuePath = join(dir, "state", "queue.json");
  const down = await collector(() => 503);
  await run(
    `const t = createTally(${config(down.url, `, queuePath: ${JSON.stringify(queuePath)}, retryBaseMs: 5, retryMaxMs: 20`)});\nt.feature("offline_save");\nawait t.shutdown({ timeoutMs: 200 });`,
  );
  down.close();
  const stored = JSON.parse(readFileSync(queuePath, "utf8"));
  const queued = JSON.parse(stored["tally:cli_tool:queue"]);
  assert.deepEqual(queued.map((e) => e.name).sort(), [
    "offline_save",
    "session_ended",
    "session_started",
  ]);
  const install = stored["tally:cli_tool:install"];

  const up = await collector(() => 200);
  await run(
    `const t = createTally(${config(up.url, `, queuePath: ${JSON.stringify(queuePath)}`)});\nawait t.shutdown({ timeoutMs: 2000 });`,
  );
  up.close();
  const ids = up.received.map((e) => e.id);
  for (const event of queued)
    assert.equal(ids.filter((id) => id === event.id).length, 1, event.name);
  assert.ok(
    up.received.every((e) => e.install_id === install),
    "the install id persists",
  );
  assert.equal(JSON.parse(readFileSync(queuePath, "utf8"))["tally:cli_tool:queue"], undefined);
});

test("DO_NOT_TRACK: nothing sent, no file written", async () => {
  const dir = tempDir();
  const queuePath = join(dir, "queue.json");
  const server = await collector(() => 200);
  const { code } = await run(
    `const t = createTally(${config(server.url, `, queuePath: ${JSON.stringify(queuePath)}`)});\nif (t.isEnabled()) process.exit(3);\nt.feature("x");\nawait t.shutdown();`,
    { DO_NOT_TRACK: "1" },
  );
  server.close();
  assert.equal(code, 0);
  assert.equal(server.received.length, 0);
  assert.equal(existsSync(queuePath), false);
});

test("file storage survives a torn or missing file", () => {
  const dir = tempDir();
  const path = join(dir, "q.json");
  const first = fileStorage(path);
  first.setItem("a", "1");
  assert.equal(fileStorage(path).getItem("a"), "1");
  const broken = join(dir, "broken.json");
  writeFileSync(broken, "{not json");
  assert.equal(fileStorage(broken).getItem("a"), null);
});

test("a session ends after 30 minutes idle, with its duration, and a new one starts", async () => {
  let now = Date.parse("2026-12-01T10:00:00.000Z");
  const fetch = scriptedFetch();
  const tally = createCore(
    { ...options, flushIntervalMs: 60_000 },
    {
      storage: recordingStorage(),
      fetch,
      random: (bytes) => bytes.forEach((_, i) => (bytes[i] = (i * 37 + now) & 255)),
      now: () => now,
      refusal: null,
      defaultSource: "web",
    },
  );
  tally.feature("a");
  now += 10 * 60 * 1000;
  tally.feature("b");
  now += 31 * 60 * 1000;
  tally.feature("c");
  await tally.flush();
  const events = fetch.requests.flatMap((r) => r.body.events);
  assert.deepEqual(
    events.map((e) => e.name),
    ["session_started", "a", "b", "session_ended", "session_started", "c"],
  );
  const ended = events[3];
  assert.equal(ended.duration_ms, 10 * 60 * 1000);
  assert.equal(ended.ts, "2026-12-01T10:10:00.000Z");
  assert.equal(ended.session_id, events[0].session_id);
  assert.notEqual(events[5].session_id, events[0].session_id);
  await tally.shutdown({ timeoutMs: 5 });
});
