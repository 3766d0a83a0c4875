// Checks an event against docs/API.md, rule for rule and message for message as
// crates/tally-core/src/validate.rs does, so the SDK drops exactly what the collector
// would refuse, and says why in the same words.

import {
  MAX_APP_LEN,
  MAX_APP_VERSION_LEN,
  MAX_COMMAND_LEN,
  MAX_DURATION_MS,
  MAX_ERROR_MESSAGE_LEN,
  MAX_EVENT_BYTES,
  MAX_ID_LEN,
  MAX_NAME_LEN,
  MAX_PROPS,
  MAX_PROP_STRING_LEN,
} from "./limits.js";

/** A props value: flat by design. */
export type PropValue = string | number | boolean;
/** Flat properties of an event. */
export type Props = Record<string, PropValue>;
/** What kind of program recorded an event. */
export type Source = "cli" | "web" | "mobile" | "backend" | "extension";

/** One event, in its wire form (docs/API.md). */
export interface TallyEvent {
  id: string;
  ts: string;
  app: string;
  app_version: string;
  source: Source;
  type: string;
  name: string;
  command?: string;
  session_id: string;
  install_id: string;
  workspace?: string;
  target_type?: string;
  target_id?: string;
  duration_ms?: number;
  success?: boolean;
  error_category?: string;
  error_message?: string;
  props?: Props;
}

/** A broken rule: the field as named on the wire, and the rule in words. */
export interface ValidationError {
  field: string;
  rule: string;
}

const SOURCES = ["cli", "web", "mobile", "backend", "extension"];
const FIELDS = new Set([
  "id",
  "ts",
  "app",
  "app_version",
  "source",
  "type",
  "name",
  "command",
  "session_id",
  "install_id",
  "workspace",
  "target_type",
  "target_id",
  "duration_ms",
  "success",
  "error_category",
  "error_message",
  "props",
]);
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const APP = /^[a-z][a-z0-9_-]*$/;
const IDENTIFIER = /^[a-z][a-z0-9_]*$/;
const TOKEN = /^[A-Za-z0-9._+:-]+$/;
const COMMAND = /^[a-z][a-z0-9 _.:-]*$/;
const HASHED = /^h1:[0-9a-f]{24}$/;

/** UTF-8 length of `text`, as Rust's `str::len` counts it. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit < 0xdc00 && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Shows a bad value without echoing a long or private input whole. */
function shown(value: string): string {
  const chars = Array.from(value);
  if (chars.length <= 40) return JSON.stringify(value);
  return `${JSON.stringify(chars.slice(0, 40).join(""))}... (${utf8Length(value)} bytes)`;
}

function fail(field: string, rule: string): ValidationError {
  return { field, rule };
}

function identifier(field: string, value: string, max: number): ValidationError | null {
  if (value.length > 0 && value.length <= max && IDENTIFIER.test(value)) return null;
  return fail(
    field,
    `must be 1 to ${max} characters of a-z, 0-9 and _, starting with a letter (got ${shown(value)})`,
  );
}

function token(field: string, value: string, max: number): ValidationError | null {
  if (value.length > 0 && value.length <= max && TOKEN.test(value)) return null;
  return fail(
    field,
    `must be 1 to ${max} characters of A-Z, a-z, 0-9 and . _ - + : (got ${shown(value)})`,
  );
}

function hashed(field: string, value: string): ValidationError | null {
  if (HASHED.test(value)) return null;
  return fail(
    field,
    "must be a keyed hash: h1: followed by 24 lowercase hex digits (names are never sent in clear)",
  );
}

/** Checks `app` alone: the rule for events and for `createTally({ app })`. */
export function checkApp(app: string): ValidationError | null {
  if (app.length > 0 && app.length <= MAX_APP_LEN && APP.test(app)) return null;
  return fail(
    "app",
    `must be 1 to ${MAX_APP_LEN} characters of a-z, 0-9, _ and -, starting with a letter (got ${shown(app)})`,
  );
}

/** The types the wire form allows; the collector refuses anything else while reading. */
function checkShape(event: Record<string, unknown>): ValidationError | null {
  for (const key of Object.keys(event)) {
    if (event[key] === undefined) continue;
    if (!FIELDS.has(key)) return fail(key, "unknown field");
  }
  const strings = ["id", "ts", "app", "app_version", "type", "name", "session_id", "install_id"];
  for (const key of strings) {
    if (typeof event[key] !== "string") return fail(key, "is required and must be a string");
  }
  const optionalStrings = [
    "command",
    "workspace",
    "target_type",
    "target_id",
    "error_category",
    "error_message",
  ];
  for (const key of optionalStrings) {
    if (event[key] !== undefined && typeof event[key] !== "string") {
      return fail(key, "must be a string");
    }
  }
  if (!SOURCES.includes(event.source as string)) {
    return fail(
      "source",
      `must be one of ${SOURCES.join(", ")} (got ${JSON.stringify(event.source)})`,
    );
  }
  if (!RFC3339.test(event.ts as string)) return fail("ts", "must be an RFC 3339 timestamp");
  const duration = event.duration_ms;
  if (duration !== undefined && !(Number.isSafeInteger(duration) && (duration as number) >= 0)) {
    return fail("duration_ms", "must be a whole number of milliseconds, at least 0");
  }
  if (event.success !== undefined && typeof event.success !== "boolean") {
    return fail("success", "must be true or false");
  }
  const props = event.props;
  if (
    props !== undefined &&
    (typeof props !== "object" || props === null || Array.isArray(props))
  ) {
    return fail("props", "must be an object of flat values");
  }
  return null;
}

function checkProps(props: Props | undefined): ValidationError | null {
  if (props === undefined) return null;
  const keys = Object.keys(props);
  if (keys.length > MAX_PROPS) {
    return fail("props", `must have at most ${MAX_PROPS} keys, got ${keys.length}`);
  }
  for (const key of keys) {
    const field = `props.${key}`;
    const broken = identifier(field, key, MAX_NAME_LEN);
    if (broken) return broken;
    const value: unknown = props[key];
    if (typeof value === "string") {
      const bytes = utf8Length(value);
      if (bytes > MAX_PROP_STRING_LEN) {
        return fail(
          field,
          `string values must be at most ${MAX_PROP_STRING_LEN} bytes, got ${bytes}`,
        );
      }
    } else if (typeof value === "number") {
      if (!Number.isFinite(value)) return fail(field, "numbers must be finite");
    } else if (typeof value !== "boolean") {
      return fail(field, "values must be a string, a finite number or a bool (no nesting)");
    }
  }
  return null;
}

/** The first rule `event` breaks, in the collector's order, or null when it is valid. */
export function validateEvent(event: TallyEvent): ValidationError | null {
  const e = event as unknown as Record<string, unknown>;
  const shape = checkShape(e);
  if (shape) return shape;
  if (!UUID_V7.test(event.id)) return fail("id", "must be a UUIDv7");
  const broken =
    checkApp(event.app) ??
    token("app_version", event.app_version, MAX_APP_VERSION_LEN) ??
    identifier("type", event.type, MAX_NAME_LEN) ??
    identifier("name", event.name, MAX_NAME_LEN) ??
    checkCommand(event.command) ??
    token("session_id", event.session_id, MAX_ID_LEN) ??
    token("install_id", event.install_id, MAX_ID_LEN) ??
    (event.workspace === undefined ? null : hashed("workspace", event.workspace)) ??
    checkTarget(event.target_type, event.target_id) ??
    checkRest(event);
  if (broken) return broken;
  const size = utf8Length(JSON.stringify(event));
  if (size > MAX_EVENT_BYTES) {
    return fail("event", `must serialize to at most ${MAX_EVENT_BYTES} bytes of JSON, got ${size}`);
  }
  return null;
}

function checkCommand(command: string | undefined): ValidationError | null {
  if (command === undefined) return null;
  if (command.length > 0 && command.length <= MAX_COMMAND_LEN && COMMAND.test(command)) {
    return null;
  }
  return fail(
    "command",
    `must be 1 to ${MAX_COMMAND_LEN} characters of a-z, 0-9, space and _ - . :, starting with a letter: a subcommand path, never its arguments (got ${shown(command)})`,
  );
}

function checkTarget(type?: string, id?: string): ValidationError | null {
  if (type !== undefined && id !== undefined) {
    return identifier("target_type", type, MAX_NAME_LEN) ?? hashed("target_id", id);
  }
  if (type !== undefined) return fail("target_id", "is required when target_type is set");
  if (id !== undefined) return fail("target_type", "is required when target_id is set");
  return null;
}

function checkRest(event: TallyEvent): ValidationError | null {
  if (event.duration_ms !== undefined && event.duration_ms > MAX_DURATION_MS) {
    return fail(
      "duration_ms",
      `must be at most ${MAX_DURATION_MS} (30 days), got ${event.duration_ms}`,
    );
  }
  if (event.error_category !== undefined) {
    const broken = identifier("error_category", event.error_category, MAX_NAME_LEN);
    if (broken) return broken;
  }
  if (event.error_message !== undefined) {
    const bytes = utf8Length(event.error_message);
    if (bytes > MAX_ERROR_MESSAGE_LEN) {
      return fail("error_message", `must be at most ${MAX_ERROR_MESSAGE_LEN} bytes, got ${bytes}`);
    }
  }
  return checkProps(event.props);
}
