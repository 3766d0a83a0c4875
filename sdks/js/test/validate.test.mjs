import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as limits from "../dist/limits.js";
import { applyLevel } from "../dist/level.js";
import { utf8Length, validateEvent } from "../dist/validate.js";

const good = () => ({
  id: "01936b2e-5bcd-71a4-ae99-93edd35a123d",
  ts: "2026-11-22T01:02:03.456Z",
  app: "nexus",
  app_version: "1.4.2",
  source: "web",
  type: "command",
  name: "command_executed",
  command: "workspace create",
  session_id: "01936b2e-5bc0-7703-89e1-18974bde5572",
  install_id: "17cfb5eb-a938-4ee4-b48c-19d7f56b8123",
  workspace: "h1:b1fb350ca18e5f9145ace0e2",
  target_type: "task",
  target_id: "h1:07ab9f2c07ab9f2c07ab9f2c",
  duration_ms: 1234,
  success: false,
  error_category: "io",
  error_message: "cannot write <path>: permission denied",
  props: { template: "rust", services_count: 3, fast: true },
});

const broken = (change) => {
  const event = good();
  change(event);
  const error = validateEvent(event);
  return error && `${error.field}: ${error.rule}`;
};

test("every limit equals its constant in crates/tally-core/src/limits.rs", () => {
  const rust = readFileSync(
    new URL("../../../crates/tally-core/src/limits.rs", import.meta.url),
    "utf8",
  );
  const names = [
    "MAX_NAME_LEN",
    "MAX_COMMAND_LEN",
    "MAX_APP_LEN",
    "MAX_APP_VERSION_LEN",
    "MAX_ID_LEN",
    "MAX_PROPS",
    "MAX_PROP_STRING_LEN",
    "MAX_ERROR_MESSAGE_LEN",
    "MAX_DURATION_MS",
    "MAX_EVENT_BYTES",
  ];
  for (const name of names) {
    const match = rust.match(new RegExp(`pub const ${name}: \\w+ = ([^;]+);`));
    assert.ok(match, `${name} is in limits.rs`);
    const value = Function(`return ${match[1].replace(/_/g, "")}`)();
    assert.equal(limits[name], value, name);
  }
});

test("the documented example event is valid", () => {
  assert.equal(validateEvent(good()), null);
});

test("messages are the collector's, word for word, as docs/API.md shows them", () => {
  assert.equal(
    broken((e) => (e.name = "Command Executed")),
    'name: must be 1 to 64 characters of a-z, 0-9 and _, starting with a letter (got "Command Executed")',
  );
  assert.equal(
    broken((e) => (e.props.template = "x".repeat(300))),
    "props.template: string values must be at most 256 bytes, got 300",
  );
  assert.equal(
    broken((e) => (e.props.template = "a\u0000b")),
    "props.template: must not contain the NUL character (U+0000)",
  );
  assert.equal(
    broken((e) => (e.error_message = "bad\u0000")),
    "error_message: must not contain the NUL character (U+0000)",
  );
  assert.equal(
    broken((e) => (e.app = "Nexus")),
    'app: must be 1 to 64 characters of a-z, 0-9, _ and -, starting with a letter (got "Nexus")',
  );
  assert.equal(
    broken((e) => (e.session_id = "a b")),
    'session_id: must be 1 to 64 characters of A-Z, a-z, 0-9 and . _ - + : (got "a b")',
  );
  assert.equal(
    broken((e) => (e.name = "n".repeat(65))),
    `name: must be 1 to 64 characters of a-z, 0-9 and _, starting with a letter (got "${"n".repeat(40)}"... (65 bytes))`,
  );
});

test("each rule of the event format is enforced", () => {
  const cases = [
    [(e) => (e.id = "01936b2e-5bcd-41a4-ae99-93edd35a123d"), "id: must be a UUIDv7"],
    [(e) => (e.ts = "yesterday"), "ts: must be an RFC 3339 timestamp"],
    [(e) => (e.source = "desktop"), "source:"],
    [(e) => (e.app_version = ""), "app_version:"],
    [(e) => (e.type = "9lives"), "type:"],
    [(e) => (e.command = "workspace create --name=secret"), "command:"],
    [(e) => (e.command = "c".repeat(129)), "command:"],
    [(e) => (e.install_id = "i".repeat(65)), "install_id:"],
    [(e) => (e.workspace = "my-project"), "workspace: must be a keyed hash"],
    [(e) => delete e.target_id, "target_id: is required when target_type is set"],
    [(e) => delete e.target_type, "target_type: is required when target_id is set"],
    [(e) => (e.duration_ms = 2_592_000_001), "duration_ms: must be at most 2592000000 (30 days)"],
    [(e) => (e.duration_ms = -1), "duration_ms:"],
    [(e) => (e.duration_ms = 1.5), "duration_ms:"],
    [(e) => (e.success = "yes"), "success:"],
    [(e) => (e.error_category = "IO"), "error_category:"],
    [
      (e) => (e.error_message = "é".repeat(513)),
      "error_message: must be at most 1024 bytes, got 1026",
    ],
    [
      (e) => (e.props = Object.fromEntries([...Array(33)].map((_, i) => [`k${i}`, i]))),
      "props: must have at most 32 keys, got 33",
    ],
    [(e) => (e.props = { "Bad Key": 1 }), "props.Bad Key:"],
    [(e) => (e.props = { nested: { a: 1 } }), "props.nested:"],
    [(e) => (e.props = { n: Number.NaN }), "props.n: numbers must be finite"],
    [(e) => (e.props = { n: null }), "props.n:"],
    [(e) => (e.url = "https://example.com/?q=secret"), "url: unknown field"],
    [(e) => delete e.install_id, "install_id: is required"],
  ];
  for (const [change, expected] of cases) {
    const message = broken(change);
    assert.ok(message?.startsWith(expected), `${expected} -> ${message}`);
  }
});

test("sizes are UTF-8 bytes, as the collector counts them", () => {
  assert.equal(utf8Length("aé€😀"), 1 + 2 + 3 + 4);
  const ok = broken((e) => (e.props.template = "€".repeat(85)));
  assert.equal(ok, null, "255 bytes fit");
  assert.equal(
    broken((e) => (e.props.template = "€".repeat(86))),
    "props.template: string values must be at most 256 bytes, got 258",
  );
});

test("a whole event over 8192 bytes of JSON is refused", () => {
  const message = broken((e) => {
    e.props = Object.fromEntries([...Array(32)].map((_, i) => [`key_${i}`, "v".repeat(256)]));
  });
  assert.match(message, /^event: must serialize to at most 8192 bytes of JSON, got \d+$/);
});

test("levels keep what docs/PRIVACY.md says, nothing more", () => {
  const basic = good();
  applyLevel(basic, "basic");
  for (const field of ["workspace", "target_type", "target_id", "props", "error_message"]) {
    assert.equal(basic[field], undefined, field);
  }
  assert.equal(basic.error_category, "io");
  const enhanced = good();
  enhanced.props.peak_memory_kb = 10;
  applyLevel(enhanced, "enhanced");
  assert.deepEqual(enhanced.props, { template: "rust", services_count: 3, fast: true });
  assert.equal(enhanced.error_message, undefined);
  const full = good();
  applyLevel(full, "full");
  assert.deepEqual(full, good());
});

test("each length limit holds exactly at its value", () => {
  const cases = [
    ["app", limits.MAX_APP_LEN, (e, v) => (e.app = v)],
    ["app_version", limits.MAX_APP_VERSION_LEN, (e, v) => (e.app_version = v)],
    ["name", limits.MAX_NAME_LEN, (e, v) => (e.name = v)],
    ["command", limits.MAX_COMMAND_LEN, (e, v) => (e.command = v)],
    ["session_id", limits.MAX_ID_LEN, (e, v) => (e.session_id = v)],
    ["error_category", limits.MAX_NAME_LEN, (e, v) => (e.error_category = v)],
    ["props.", limits.MAX_NAME_LEN, (e, v) => (e.props = { [v]: 1 })],
  ];
  for (const [field, max, set] of cases) {
    assert.equal(
      broken((e) => set(e, "a".repeat(max))),
      null,
      `${field}: ${max} characters fit`,
    );
    const over = broken((e) => set(e, "a".repeat(max + 1)));
    assert.ok(over?.startsWith(field), `${field}: ${max + 1} characters -> ${over}`);
  }
});
