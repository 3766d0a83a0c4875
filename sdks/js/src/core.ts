// The recorder shared by the browser and Node entry points: its settings, the handle
// it returns, and what a host fills in (`Platform`). `recorder.ts` does the work.

import type { Level } from "./level.js";
import type { Describe, Refusal } from "./messages.js";
import type { Props, Source } from "./rules.js";
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
  /** Where it is missing, the collector counts as unreachable. */
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

export { createCore } from "./recorder.js";
