// The recorder shared by the browser and Node entry points: its settings, the handle
// it returns, and what a host fills in (`Platform`). The work is in `recorder.ts`
// (events, sessions, the queue) and `sender.ts` (delivery).

import { LEVELS, type Level } from "./level.js";
import type { Describe, Refusal } from "./messages.js";
import { Recorder, type Explain } from "./recorder.js";
import { checkApp, type Broken, type Props, type Source } from "./rules.js";
import type { RandomFill } from "./ids.js";
import type { KeyValueStorage } from "./storage.js";

/** Settings of `createTally`. */
export interface TallyOptions {
  /** The app's name: 1 to 64 of a-z 0-9 _ -, starting with a letter. */
  app: string;
  /** The app's version (`1.4.2`). */
  appVersion: string;
  /** The collector's base URL (`https://telemetry.example.com`). */
  endpoint: string;
  /** An ingest key (`tly_ingest_...`); never an admin key. */
  key: string;
  /** What kind of program records: `web` in browsers, `backend` in Node by default. */
  source?: Source;
  /** How often queued events are sent; default 30 s. */
  flushIntervalMs?: number;
  /** `basic` (default) keeps counts and outcomes; `enhanced` adds props; `off` records nothing. */
  level?: Level;
  /** Explain dropped events and refusals once each on the console. */
  debug?: boolean;
  /** First retry waits up to this long (full jitter, doubling); default 1 s. */
  retryBaseMs?: number;
  /** Longest wait between retries; default 5 min. */
  retryMaxMs?: number;
}

/** What may accompany an event besides its type and name. */
export interface TrackFields {
  command?: string;
  duration_ms?: number;
  success?: boolean;
  error_category?: string;
  props?: Props;
}

/** What happened to the events of this handle so far. */
export interface TallyStats {
  /** Waiting to be sent. */
  queued: number;
  /** Committed by the collector (new or already stored). */
  sent: number;
  /** Broke a rule of the event format and were never queued. */
  droppedInvalid: number;
  /** Pushed out of a full queue, oldest first. */
  droppedOverflow: number;
  /** Refused by the collector: a 4xx for their batch, or listed in `rejected`. */
  droppedRefused: number;
}

/** A running command: end it once with `success()` or `failure(category)`. */
export interface CommandTimer {
  success(): void;
  failure(category: string): void;
}

/** The handle `createTally` returns. */
export interface Tally {
  track(type: string, name: string, fields?: TrackFields): void;
  feature(name: string, props?: Props): void;
  page(route?: string): void;
  command(name: string): CommandTimer;
  error(category: string): void;
  flush(): Promise<void>;
  shutdown(options?: { timeoutMs?: number }): Promise<void>;
  optOut(): void;
  optIn(): void;
  isEnabled(): boolean;
  stats(): TallyStats;
}

/** What differs between hosts. */
export interface Platform {
  /** Where the queue and ids persist; null where nothing may be written. */
  storage: KeyValueStorage | null;
  fetch: typeof fetch | undefined;
  random: RandomFill;
  now(): number;
  /** Why the environment refuses recording (DNT, GPC, DO_NOT_TRACK), or null. */
  refusal: Refusal | null;
  /** Browsers only: `navigator.sendBeacon`. */
  sendBeacon?: (url: string, body: string) => boolean;
  /** Browsers only: calls back when the page is hidden or unloaded. */
  onHidden?: (callback: () => void) => void;
  /** Node: keeps timers from holding the process open. */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** Where the host's page route comes from when `page()` is called without one. */
  route?: () => string | undefined;
  defaultSource: Source;
  /** The words for debug notes; without it (the small bundle) the codes are printed. */
  describe?: Describe;
}

const NOOP_TIMER: CommandTimer = { success() {}, failure() {} };

/** The first broken rule of the settings; a bad one turns recording off. */
function checkOptions(options: TallyOptions, level: Level): Broken | null {
  return (
    checkApp(options.app ?? "") ??
    (LEVELS.includes(level) ? null : ["level", "level"]) ??
    (/^https?:\/\//.test(String(options.endpoint)) ? null : ["endpoint", "url"])
  );
}

/** Prints each distinct note once, in debug mode only. */
function explainer(debug: boolean | undefined, describe: Describe | undefined): Explain {
  const said = new Set<string>();
  return (note, ...details) => {
    if (!debug) return;
    const text = describe ? describe(note, details) : [note, ...details].join(" ");
    if (!said.has(text)) {
      said.add(text);
      console.warn(`tally: ${text}`);
    }
  };
}

export function createCore(options: TallyOptions, platform: Platform): Tally {
  const level: Level = options.level ?? "basic";
  const refused = checkOptions(options, level) ?? platform.refusal;
  const explain = explainer(options.debug, platform.describe);
  const recorder = new Recorder(options, platform, level, explain, refused);
  recorder._start();
  return handle(recorder);
}

/** The host's handle over a recorder: the shorthands for features, pages, commands
 * and errors are calls of `track`. */
function handle(recorder: Recorder): Tally {
  const track: Tally["track"] = (type, name, fields) => recorder._track(type, name, fields);
  return {
    track,
    feature: (name, props) => track("feature", name, props ? { props } : undefined),
    page: (route) => {
      const path = route ?? recorder._platform.route?.();
      track("page", "page_viewed", path ? { props: { route: path } } : undefined);
    },
    command: (name) => (recorder._enabled ? commandTimer(recorder, track, name) : NOOP_TIMER),
    error: (category) => track("error", "error_occurred", { error_category: category }),
    flush: () => recorder._sender._flush(),
    shutdown: ({ timeoutMs = 2000 } = {}) => recorder._shutdown(timeoutMs),
    optOut: () => recorder._optOut(),
    optIn: () => recorder._optIn(),
    isEnabled: () => recorder._enabled,
    stats: () => ({ queued: recorder._queue.length, ...recorder._counts }),
  };
}

/** Times a command from now; the first of `success()` and `failure()` records it. */
function commandTimer(recorder: Recorder, track: Tally["track"], name: string): CommandTimer {
  const started = recorder._now();
  let done = false;
  const end = (success: boolean, category?: string): void => {
    if (done) return;
    done = true;
    const duration_ms = Math.max(0, Math.round(recorder._now() - started));
    const fields: TrackFields = { command: name, duration_ms, success };
    if (category !== undefined) fields.error_category = category;
    track("command", "command_executed", fields);
    if (!success) track("error", "error_occurred", { command: name, error_category: category });
  };
  return { success: () => end(true), failure: (category) => end(false, category) };
}
