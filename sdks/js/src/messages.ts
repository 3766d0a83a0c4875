// The words for the rule codes of `rules.ts` (the collector's sentences, word for word
// as crates/tally-core/src/validate.rs says them) and for the recorder's notes. The
// small browser bundle leaves this file out and prints the codes; the debug bundle,
// the package's main entry and the Node entry print these sentences.

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
  QUEUE_CAP,
} from "./limits.js";
import { SOURCES, utf8Length, type Broken } from "./rules.js";
import { LEVELS } from "./level.js";

/** What the recorder explains in debug mode; the details follow the code. */
export type Note =
  | "dropped" // an event: `type/name`, then the Broken rule or the error thrown
  | "full" // the queue is full: the oldest event was dropped
  | "storage" // a storage read or write failed: the key, the error
  | "unreachable" // the collector cannot be reached: the endpoint, the error
  | "refused" // the collector refused an event in a batch: its message
  | "answered" // the collector refused a batch: the status, the number of events
  | "failed" // a flush failed: the error
  | "off" // not recording: a Refusal or the Broken rule of an option
  | "unreadable"; // the stored queue could not be read

/** Why recording is off, as `Platform.refusal` and the recorder name it. */
export type Refusal = "gpc" | "dnt" | "env" | "level" | "optout";

/** Turns a note and its details into words. */
export type Describe = (note: Note, details: unknown[]) => string;

/** Character rules by field: their length limit and the words for their characters. */
function shape(field: string): [max: number, words: string] {
  const letter = ", starting with a letter";
  const identifier = `a-z, 0-9 and _${letter}`;
  const token = "A-Z, a-z, 0-9 and . _ - + :";
  const shapes: Record<string, [number, string]> = {
    app: [MAX_APP_LEN, `a-z, 0-9, _ and -${letter}`],
    app_version: [MAX_APP_VERSION_LEN, token],
    command: [
      MAX_COMMAND_LEN,
      `a-z, 0-9, space and _ - . :${letter}: a subcommand path, never its arguments`,
    ],
    session_id: [MAX_ID_LEN, token],
    install_id: [MAX_ID_LEN, token],
  };
  return shapes[field] ?? [MAX_NAME_LEN, identifier];
}

/** Shows a bad value without echoing a long or private input whole. */
function shown(value: string): string {
  const chars = Array.from(value);
  if (chars.length <= 40) return JSON.stringify(value);
  return `${JSON.stringify(chars.slice(0, 40).join(""))}... (${utf8Length(value)} bytes)`;
}

/** Limits of the `max` rule, by field; a string's detail is the string, counted here. */
function tooLarge(field: string, value: unknown): string {
  const detail = typeof value === "string" ? utf8Length(value) : value;
  if (field === "duration_ms") return `must be at most ${MAX_DURATION_MS} (30 days), got ${detail}`;
  if (field === "error_message")
    return `must be at most ${MAX_ERROR_MESSAGE_LEN} bytes, got ${detail}`;
  if (field === "event") {
    return `must serialize to at most ${MAX_EVENT_BYTES} bytes of JSON, got ${detail}`;
  }
  return `string values must be at most ${MAX_PROP_STRING_LEN} bytes, got ${detail}`;
}

/** The collector's sentence for a broken rule (without the field). */
export function ruleText([field, rule, detail]: Broken): string {
  switch (rule) {
    case "unknown":
      return "unknown field";
    case "type":
      return `must be a JSON ${detail === "object" ? "object of flat values" : detail}`;
    case "required":
      return "is required";
    case "paired":
      return `is required when ${field === "target_id" ? "target_type" : "target_id"} is set`;
    case "source":
      return `must be one of ${SOURCES.join(", ")} (got ${JSON.stringify(detail)})`;
    case "ts":
      return "must be an RFC 3339 timestamp";
    case "uuid":
      return "must be a UUIDv7";
    case "chars": {
      const [max, words] = shape(field.startsWith("props.") ? "props" : field);
      return `must be 1 to ${max} characters of ${words} (got ${shown(String(detail))})`;
    }
    case "hash":
      return "must be a keyed hash: h1: followed by 24 lowercase hex digits (names are never sent in clear)";
    case "whole":
      return "must be a whole number of milliseconds, at least 0";
    case "max":
      return tooLarge(field, detail);
    case "keys":
      return `must have at most ${MAX_PROPS} keys, got ${detail}`;
    case "finite":
      return "numbers must be finite";
    case "flat":
      return "values must be a string, a finite number or a bool (no nesting)";
    case "nul":
      return "must not contain the NUL character (U+0000)";
    case "level":
      return `must be one of ${LEVELS.join(", ")}`;
    case "url":
      return "must be an http:// or https:// URL";
  }
}

/** The field and its rule, as the collector words them. */
export function brokenText(broken: Broken): string {
  return `${broken[0]}: ${ruleText(broken)}`;
}

const REFUSALS: Record<Refusal, string> = {
  gpc: "Global Privacy Control is on",
  dnt: "Do Not Track is on",
  env: "DO_NOT_TRACK is set",
  level: "level is off",
  optout: "opted out",
};

/** A detail in words: a Broken rule, a refusal code, or anything else as text. */
function detailText(detail: unknown): string {
  if (Array.isArray(detail)) return brokenText(detail as Broken);
  return REFUSALS[detail as Refusal] ?? String(detail);
}

/** The recorder's notes in sentences. */
export const describe: Describe = (note, details) => {
  const [a, b] = details.map(detailText);
  switch (note) {
    case "dropped":
      return `dropped ${a}: ${b}`;
    case "full":
      return `the queue is full (${QUEUE_CAP} events): the oldest are dropped`;
    case "storage":
      return `cannot use ${a} in storage: ${b}`;
    case "unreachable":
      return `cannot reach ${a}: ${b}; will retry`;
    case "refused":
      return `the collector refused an event: ${a}`;
    case "answered":
      return `the collector answered ${a}: ${b} events dropped`;
    case "failed":
      return `flush failed: ${a}`;
    case "off":
      return `not recording: ${a}`;
    case "unreadable":
      return "the stored queue was unreadable and is replaced";
  }
};
