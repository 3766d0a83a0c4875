// The rules of docs/API.md, in crates/tally-core/src/validate.rs's order, as code: a
// broken rule comes back as a short code (`Broken`), and `messages.ts` turns it into
// the collector's sentence. The browser bundle carries only this file, so the rules
// cost little to ship; the debug bundle and the Node entry carry the sentences too.

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

/** Which rule a value breaks; `messages.ts` has the words for each. */
export type Rule =
  | "unknown" // not a field of the wire form
  | "type" // wrong JSON type; detail: the type it must be
  | "required"
  | "paired" // target_type and target_id come together
  | "source" // detail: the value
  | "ts"
  | "uuid"
  | "chars" // length or characters; detail: the value
  | "hash"
  | "whole" // duration_ms is not a whole number >= 0
  | "max" // a number or a size over its limit; detail: the value or size
  | "keys" // too many props; detail: how many
  | "finite"
  | "flat"
  | "level" // an option: `level` is none of the levels
  | "url"; // an option: `endpoint` is not an http(s) URL

/** The field as named on the wire, the rule it breaks, and the value or size at fault. */
export type Broken = [field: string, rule: Rule, detail?: unknown];

export const SOURCES = ["cli", "web", "mobile", "backend", "extension"];
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const HASHED = /^h1:[0-9a-f]{24}$/;

/** The character rules; their words are in `messages.ts`. */
export const APP = /^[a-z][a-z0-9_-]*$/;
export const IDENTIFIER = /^[a-z][a-z0-9_]*$/;
export const TOKEN = /^[A-Za-z0-9._+:-]+$/;
export const COMMAND = /^[a-z][a-z0-9 _.:-]*$/;

/** Every wire field and its JSON type; upper case marks the required ones. */
const FIELDS: Record<string, string> = {
  id: "S",
  ts: "S",
  app: "S",
  app_version: "S",
  source: "S",
  type: "S",
  name: "S",
  command: "s",
  session_id: "S",
  install_id: "S",
  workspace: "s",
  target_type: "s",
  target_id: "s",
  duration_ms: "n",
  success: "b",
  error_category: "s",
  error_message: "s",
  props: "o",
};
const TYPES: Record<string, string> = { s: "string", n: "number", b: "boolean", o: "object" };
const REQUIRED = Object.keys(FIELDS).filter((field) => FIELDS[field] === "S");

/** The string fields checked by character rules right after the types, in
 * validate.rs's order. */
const STRINGS: [field: keyof TallyEvent, pattern: RegExp, max: number][] = [
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

/** Length and characters of a present string. */
function chars(field: string, value: string | undefined, pattern: RegExp, max: number) {
  return value === undefined || (value.length > 0 && value.length <= max && pattern.test(value))
    ? null
    : ([field, "chars", value] as Broken);
}

/** `app` alone: the rule for events and for `createTally({ app })`. */
export function checkApp(app: string): Broken | null {
  return chars("app", app, APP, MAX_APP_LEN);
}

/** The JSON types of the wire form; the collector refuses anything else while reading. */
function checkTypes(event: Record<string, unknown>): Broken | null {
  // One pass over what is there; only a missing field needs a second look.
  let required = 0;
  for (const field in event) {
    const value = event[field];
    if (value === undefined) continue;
    const code = FIELDS[field];
    if (!code) return [field, "unknown"];
    const type = TYPES[code.toLowerCase()];
    if (typeof value !== type || value === null || Array.isArray(value)) {
      return [field, "type", type];
    }
    if (code === "S") required++;
  }
  if (required < REQUIRED.length) {
    return [REQUIRED.find((field) => event[field] === undefined)!, "required"];
  }
  return SOURCES.includes(event.source as string) ? null : ["source", "source", event.source];
}

/** `duration_ms` is a whole number of milliseconds. */
function checkWhole(duration: number | undefined): Broken | null {
  return duration === undefined || (Number.isSafeInteger(duration) && duration >= 0)
    ? null
    : ["duration_ms", "whole"];
}

/** A string over `max` UTF-8 bytes. */
function tooLong(field: string, value: string | undefined, max: number): Broken | null {
  const bytes = value === undefined ? 0 : utf8Length(value);
  return bytes > max ? [field, "max", bytes] : null;
}

function checkProps(props: Props = {}): Broken | null {
  const keys = Object.keys(props);
  if (keys.length > MAX_PROPS) return ["props", "keys", keys.length];
  for (const key of keys) {
    const field = `props.${key}`;
    const value: unknown = props[key];
    const broken = chars(field, key, IDENTIFIER, MAX_NAME_LEN);
    if (broken) return broken;
    if (typeof value === "string") {
      const long = tooLong(field, value, MAX_PROP_STRING_LEN);
      if (long) return long;
    } else if (typeof value === "number") {
      if (!Number.isFinite(value)) return [field, "finite"];
    } else if (typeof value !== "boolean") return [field, "flat"];
  }
  return null;
}

function hashed(field: string, value: string | undefined): Broken | null {
  return value === undefined || HASHED.test(value) ? null : [field, "hash"];
}

/** `target_type` and `target_id` come together: a kind, and the hash of a name. */
function checkTarget(event: TallyEvent): Broken | null {
  const hasType = event.target_type !== undefined;
  if (hasType !== (event.target_id !== undefined)) {
    return [hasType ? "target_id" : "target_type", "paired"];
  }
  return (
    chars("target_type", event.target_type, IDENTIFIER, MAX_NAME_LEN) ??
    hashed("target_id", event.target_id)
  );
}

function checkStrings(event: TallyEvent): Broken | null {
  for (const [field, pattern, max] of STRINGS) {
    const broken = chars(field, event[field] as string | undefined, pattern, max);
    if (broken) return broken;
  }
  return null;
}

/** The first rule `event` breaks, in the collector's order, or null when it is valid. */
export function checkEvent(event: TallyEvent): Broken | null {
  return checkHead(event) ?? checkId(event.id) ?? checkRest(event);
}

/** `checkEvent` for an event the recorder made: its id is a UUIDv7 by construction
 * and never comes from the caller, so only that check is left out. */
export function checkRecorded(event: TallyEvent): Broken | null {
  return checkHead(event) ?? checkRest(event);
}

/** The types, then `ts` and `duration_ms`, as the collector reads them. */
function checkHead(event: TallyEvent): Broken | null {
  return (
    checkTypes(event as unknown as Record<string, unknown>) ??
    (RFC3339.test(event.ts) ? null : ["ts", "ts"]) ??
    checkWhole(event.duration_ms)
  );
}

function checkId(id: string): Broken | null {
  return UUID_V7.test(id) ? null : ["id", "uuid"];
}

/** The rules after the types, ts, duration_ms and id, in the collector's order. */
function checkRest(event: TallyEvent): Broken | null {
  return (
    checkStrings(event) ??
    hashed("workspace", event.workspace) ??
    checkTarget(event) ??
    (event.duration_ms! > MAX_DURATION_MS ? ["duration_ms", "max", event.duration_ms] : null) ??
    chars("error_category", event.error_category, IDENTIFIER, MAX_NAME_LEN) ??
    tooLong("error_message", event.error_message, MAX_ERROR_MESSAGE_LEN) ??
    checkProps(event.props) ??
    checkSize(event)
  );
}

/** The whole event's JSON size. Serializing costs more than the rest of the check, so
 * it is skipped when even the worst case (every character escaped as \uXXXX) fits. */
function checkSize(event: TallyEvent): Broken | null {
  if (worstCaseBytes(event) <= MAX_EVENT_BYTES) return null;
  const size = utf8Length(JSON.stringify(event));
  return size > MAX_EVENT_BYTES ? ["event", "max", size] : null;
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
