// The rules of docs/API.md, in crates/tally-core/src/validate.rs's order, as data: the
// JSON type of each wire field, then one table row per rule, which a short loop applies.
// A broken rule comes back as a short code (`Broken`), and `messages.ts` turns it into
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
  | "max" // a number or a size over its limit; detail: the value, or the size in bytes
  | "keys" // too many props; detail: how many
  | "finite"
  | "flat"
  | "nul" // free text holds U+0000, which PostgreSQL cannot store
  | "level" // an option: `level` is none of the levels
  | "url"; // an option: `endpoint` is not an http(s) URL

/** The field as named on the wire, the rule it breaks, and the value or size at fault. */
export type Broken = [field: string, rule: Rule, detail?: unknown];

export const SOURCES = ["cli", "web", "mobile", "backend", "extension"];

/** The character rules, each field's length limit included: these characters are all
 * ASCII, so characters and bytes count alike. Their words are in `messages.ts`. */
const APP = RegExp(`^[a-z][a-z0-9_-]{0,${MAX_APP_LEN - 1}}$`);
const IDENTIFIER = RegExp(`^[a-z][a-z0-9_]{0,${MAX_NAME_LEN - 1}}$`);
const TOKEN = RegExp(`^[\\w.+:-]{1,${MAX_ID_LEN}}$`);
const VERSION = RegExp(`^[\\w.+:-]{1,${MAX_APP_VERSION_LEN}}$`);
const COMMAND = RegExp(`^[a-z][a-z0-9 _.:-]{0,${MAX_COMMAND_LEN - 1}}$`);
const HASHED = /^h1:[0-9a-f]{24}$/;

/** Every wire field by JSON type; the first nine strings are the required fields. */
const TYPES: Record<string, string> = {
  string:
    "id ts app app_version source type name session_id install_id command workspace target_type target_id error_category error_message",
  number: "duration_ms",
  boolean: "success",
  object: "props",
};
const FIELDS: Record<string, string> = {};
for (const type in TYPES) for (const field of TYPES[type].split(" ")) FIELDS[field] = type;
const REQUIRED = TYPES.string.split(" ").slice(0, 9);

/** Says whether a field's value (undefined when absent) keeps the rule, or names what
 * broke inside it (a props key, the whole event). */
type Test = (value: any, event: TallyEvent) => boolean | Broken | null;

/** One rule: a pattern applies to a present string, a test to any value. */
export type Row = [field: string, rule: Rule, check: RegExp | Test];

/** The rules after the types, in the collector's order, but for two: the rules of `ts`
 * (after `source`) and `id` (after the `whole` rule of `duration_ms`) are in
 * `validate.ts`. The recorder makes both fields itself, from `toISOString()` and
 * `uuid()`, so they cannot break them, and the browser bundle leaves their patterns out. */
export const RULES: Row[] = [
  ["source", "source", (source) => SOURCES.includes(source)],
  ["duration_ms", "whole", (ms) => ms === undefined || (Number.isSafeInteger(ms) && ms >= 0)],
  ["app", "chars", APP],
  ["app_version", "chars", VERSION],
  ["type", "chars", IDENTIFIER],
  ["name", "chars", IDENTIFIER],
  ["command", "chars", COMMAND],
  ["session_id", "chars", TOKEN],
  ["install_id", "chars", TOKEN],
  ["workspace", "hash", HASHED],
  ["target_id", "paired", (id, event) => id !== undefined || event.target_type === undefined],
  ["target_type", "paired", (type, event) => type !== undefined || event.target_id === undefined],
  ["target_type", "chars", IDENTIFIER],
  ["target_id", "hash", HASHED],
  ["duration_ms", "max", (ms) => !(ms > MAX_DURATION_MS)],
  ["error_category", "chars", IDENTIFIER],
  ["error_message", "max", (text = "") => !tooLong(text, MAX_ERROR_MESSAGE_LEN)],
  ["error_message", "nul", (text = "") => !text.includes("\0")],
  ["props", "keys", checkProps],
  ["event", "max", (_, event) => checkSize(event)],
];

const utf8 = new TextEncoder();

/** UTF-8 length of `text`, as Rust's `str::len` counts it. */
export function utf8Length(text: string): number {
  return utf8.encode(text).length;
}

/** More than `max` UTF-8 bytes. A UTF-16 unit is at most 3 bytes: short strings are
 * not encoded, which costs more than the rest of a check. */
function tooLong(text: string, max: number): boolean {
  return text.length * 3 > max && utf8Length(text) > max;
}

/** `app` alone: the rule for events and for `createTally({ app })`. */
export function checkApp(app: string): Broken | null {
  return APP.test(app) ? null : ["app", "chars", app];
}

/** The first rule of `rules` that `event` breaks, after the types, or null. */
export function checkEvent(event: TallyEvent, rules = RULES): Broken | null {
  const fields = event as unknown as Record<string, unknown>;
  // The JSON types, which the collector checks while reading: one pass over what is there.
  for (const field in fields) {
    const value = fields[field];
    const type = FIELDS[field];
    if (value === undefined) continue;
    if (!type) return [field, "unknown"];
    if (typeof value != type || value === null || Array.isArray(value)) {
      return [field, "type", type];
    }
  }
  const missing = REQUIRED.find((field) => fields[field] === undefined);
  if (missing) return [missing, "required"];
  for (const [field, rule, check] of rules) {
    const value = fields[field];
    const kept =
      check instanceof RegExp
        ? value === undefined || check.test(value as string)
        : check(value, event);
    if (kept !== true) return kept || [field, rule, value];
  }
  return null;
}

/** Key count, then each key and value. */
function checkProps(props: Props = {}): true | Broken | null {
  const keys = Object.keys(props);
  if (keys.length > MAX_PROPS) return ["props", "keys", keys.length];
  for (const key of keys) {
    const field = `props.${key}`;
    const value: unknown = props[key];
    const type = typeof value;
    if (!IDENTIFIER.test(key)) return [field, "chars", key];
    if (type == "string" && tooLong(value as string, MAX_PROP_STRING_LEN)) {
      return [field, "max", value];
    }
    if (type == "string" && (value as string).includes("\0")) return [field, "nul"];
    if (type == "number" && !Number.isFinite(value)) return [field, "finite"];
    if (type != "string" && type != "number" && type != "boolean") return [field, "flat"];
  }
  return true;
}

/** The whole event's JSON size. Serializing costs more than the rest of the check, so
 * it is skipped when even the worst case fits: the names and punctuation, six bytes per
 * UTF-16 unit of every string (each escaped as \uXXXX), 25 per number or bool. */
function checkSize(event: TallyEvent): true | Broken {
  let bound = 400;
  for (const value of Object.values(event)) {
    if (typeof value === "string") bound += 6 * value.length + 3;
    else if (typeof value === "object") {
      for (const key in value) {
        const item = value[key];
        bound += 6 * key.length + 4 + (typeof item === "string" ? 6 * item.length + 3 : 25);
      }
    } else bound += 25;
  }
  const size = bound > MAX_EVENT_BYTES ? utf8Length(JSON.stringify(event)) : 0;
  return size > MAX_EVENT_BYTES ? ["event", "max", size] : true;
}
