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
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const HASHED = /^h1:[0-9a-f]{24}$/;

/** A character rule: the pattern, and the words validate.rs uses for it. */
type Shape = [pattern: RegExp, characters: string, startsWithLetter: boolean, note?: string];
const APP: Shape = [/^[a-z][a-z0-9_-]*$/, "a-z, 0-9, _ and -", true];
const IDENTIFIER: Shape = [/^[a-z][a-z0-9_]*$/, "a-z, 0-9 and _", true];
const TOKEN: Shape = [/^[A-Za-z0-9._+:-]+$/, "A-Z, a-z, 0-9 and . _ - + :", false];
const COMMAND: Shape = [
  /^[a-z][a-z0-9 _.:-]*$/,
  "a-z, 0-9, space and _ - . :",
  true,
  ": a subcommand path, never its arguments",
];

/** Every wire field, its JSON type, and whether it is required. */
const FIELDS: [field: string, type: string, required: boolean][] = (
  [
    ["id", "string!"],
    ["ts", "string!"],
    ["app", "string!"],
    ["app_version", "string!"],
    ["source", "string!"],
    ["type", "string!"],
    ["name", "string!"],
    ["command", "string"],
    ["session_id", "string!"],
    ["install_id", "string!"],
    ["workspace", "string"],
    ["target_type", "string"],
    ["target_id", "string"],
    ["duration_ms", "number"],
    ["success", "boolean"],
    ["error_category", "string"],
    ["error_message", "string"],
    ["props", "object"],
  ] as const
).map(([field, type]) => [field, type.replace("!", ""), type.endsWith("!")]);
const KNOWN = new Map(FIELDS.map(([field, type, required]) => [field, [type, required] as const]));
const REQUIRED = FIELDS.filter(([, , required]) => required).length;

/** The string fields checked by character rules, in validate.rs's order. */
const STRINGS: [field: keyof TallyEvent, shape: Shape, max: number][] = [
  ["app", APP, MAX_APP_LEN],
  ["app_version", TOKEN, MAX_APP_VERSION_LEN],
  ["type", IDENTIFIER, MAX_NAME_LEN],
  ["name", IDENTIFIER, MAX_NAME_LEN],
  ["command", COMMAND, MAX_COMMAND_LEN],
  ["session_id", TOKEN, MAX_ID_LEN],
  ["install_id", TOKEN, MAX_ID_LEN],
];

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

function check(
  field: string,
  value: string,
  [pattern, characters, letter, note = ""]: Shape,
  max: number,
) {
  return value.length > 0 && value.length <= max && pattern.test(value)
    ? null
    : fail(
        field,
        `must be 1 to ${max} characters of ${characters}${letter ? ", starting with a letter" : ""}${note} (got ${shown(value)})`,
      );
}

function hashed(field: string, value: string | undefined): ValidationError | null {
  return value === undefined || HASHED.test(value)
    ? null
    : fail(
        field,
        "must be a keyed hash: h1: followed by 24 lowercase hex digits (names are never sent in clear)",
      );
}

/** Checks `app` alone: the rule for events and for `createTally({ app })`. */
export function checkApp(app: string): ValidationError | null {
  return check("app", app, APP, MAX_APP_LEN);
}

/** The JSON types of the wire form; the collector refuses anything else while reading. */
function checkTypes(event: Record<string, unknown>): ValidationError | null {
  // One pass over what is there; only a missing field needs a second look.
  let required = 0;
  for (const field in event) {
    const value = event[field];
    if (value === undefined) continue;
    const known = KNOWN.get(field);
    if (!known) return fail(field, "unknown field");
    const [type] = known;
    if (typeof value !== type || value === null || Array.isArray(value)) {
      return fail(field, `must be a JSON ${type === "object" ? "object of flat values" : type}`);
    }
    if (known[1]) required++;
  }
  if (required < REQUIRED) {
    const [missing] = FIELDS.find(([field, , needed]) => needed && event[field] === undefined)!;
    return fail(missing, "is required");
  }
  if (!SOURCES.includes(event.source as string)) {
    return fail(
      "source",
      `must be one of ${SOURCES.join(", ")} (got ${JSON.stringify(event.source)})`,
    );
  }
  if (!RFC3339.test(event.ts as string)) return fail("ts", "must be an RFC 3339 timestamp");
  const duration = event.duration_ms as number | undefined;
  if (duration !== undefined && !(Number.isSafeInteger(duration) && duration >= 0)) {
    return fail("duration_ms", "must be a whole number of milliseconds, at least 0");
  }
  return null;
}

function checkProps(props: Props | undefined): ValidationError | null {
  const keys = Object.keys(props ?? {});
  if (keys.length > MAX_PROPS) {
    return fail("props", `must have at most ${MAX_PROPS} keys, got ${keys.length}`);
  }
  for (const key of keys) {
    const field = `props.${key}`;
    const value: unknown = props![key];
    const broken = check(field, key, IDENTIFIER, MAX_NAME_LEN);
    if (broken) return broken;
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
  const types = checkTypes(event as unknown as Record<string, unknown>);
  if (types) return types;
  if (!UUID_V7.test(event.id)) return fail("id", "must be a UUIDv7");
  for (const [field, shape, max] of STRINGS) {
    const value = event[field] as string | undefined;
    const broken = value === undefined ? null : check(field, value, shape, max);
    if (broken) return broken;
  }
  const workspace = hashed("workspace", event.workspace);
  if (workspace) return workspace;
  const hasType = event.target_type !== undefined;
  if (hasType !== (event.target_id !== undefined)) {
    const [missing, present] = hasType
      ? ["target_id", "target_type"]
      : ["target_type", "target_id"];
    return fail(missing, `is required when ${present} is set`);
  }
  if (event.target_type !== undefined) {
    const target =
      check("target_type", event.target_type, IDENTIFIER, MAX_NAME_LEN) ??
      hashed("target_id", event.target_id);
    if (target) return target;
  }
  if (event.duration_ms! > MAX_DURATION_MS) {
    return fail(
      "duration_ms",
      `must be at most ${MAX_DURATION_MS} (30 days), got ${event.duration_ms}`,
    );
  }
  const category = event.error_category;
  const bad =
    category === undefined ? null : check("error_category", category, IDENTIFIER, MAX_NAME_LEN);
  if (bad) return bad;
  const message = utf8Length(event.error_message ?? "");
  if (message > MAX_ERROR_MESSAGE_LEN) {
    return fail("error_message", `must be at most ${MAX_ERROR_MESSAGE_LEN} bytes, got ${message}`);
  }
  const props = checkProps(event.props);
  if (props) return props;
  // Serializing costs more than the rest of the check; skip it when even the worst
  // case (every character escaped as \uXXXX) cannot reach the limit.
  if (worstCaseBytes(event) <= MAX_EVENT_BYTES) return null;
  const size = utf8Length(JSON.stringify(event));
  return size > MAX_EVENT_BYTES
    ? fail("event", `must serialize to at most ${MAX_EVENT_BYTES} bytes of JSON, got ${size}`)
    : null;
}

/** An upper bound of the event's JSON size: names and punctuation, six bytes per
 * UTF-16 unit of every string, 25 per number or bool. */
function worstCaseBytes(event: TallyEvent): number {
  let bytes = 400;
  for (const value of Object.values(event)) {
    if (typeof value === "string") bytes += 6 * value.length + 3;
    else if (typeof value === "object") {
      for (const key in value) {
        const item = (value as Props)[key];
        bytes += 6 * key.length + 4 + (typeof item === "string" ? 6 * item.length + 3 : 25);
      }
    } else bytes += 25;
  }
  return bytes;
}
