// The recorder shared by the browser and Node entry points. The host's call only builds,
// validates and queues an event in memory; persistence, batching and delivery happen
// later on timers, so `track()` stays cheap and never throws into the app.

import { backoffMs, batches, retryAfterMs, verdict, type Batch } from "./delivery.js";
import { uuidv4, uuidv7, type RandomFill } from "./ids.js";
import { applyLevel, LEVELS, type Level } from "./level.js";
import { QUEUE_CAP, SEND_BATCH_BYTES, SEND_BATCH_EVENTS, SESSION_IDLE_MS } from "./limits.js";
import { storageKeys, type KeyValueStorage } from "./storage.js";
import { checkApp, validateEvent, type Props, type Source, type TallyEvent } from "./validate.js";

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
  refusal: string | null;
  /** Browsers only: `navigator.sendBeacon`. */
  sendBeacon?: (url: string, body: string) => boolean;
  /** Browsers only: calls back when the page is hidden or unloaded. */
  onHidden?: (callback: () => void) => void;
  /** Node: keeps timers from holding the process open. */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** Where the host's page route comes from when `page()` is called without one. */
  route?: () => string | undefined;
  defaultSource: Source;
}

interface Session {
  id: string;
  start: number;
  last: number;
}

type Timer = ReturnType<typeof setTimeout>;

const NOOP_TIMER: CommandTimer = { success() {}, failure() {} };

export function createCore(options: TallyOptions, platform: Platform): Tally {
  const said = new Set<string>();
  const explain = (message: string): void => {
    if (options.debug && !said.has(message)) {
      said.add(message);
      console.warn(`tally: ${message}`);
    }
  };
  const level: Level = options.level ?? "basic";
  const badOption =
    checkApp(options.app ?? "") ??
    (LEVELS.includes(level)
      ? null
      : { field: "level", rule: `must be one of ${LEVELS.join(", ")}` }) ??
    (typeof options.endpoint === "string" && /^https?:\/\//.test(options.endpoint)
      ? null
      : { field: "endpoint", rule: "must be an http:// or https:// URL" });
  const keys = storageKeys(options.app);
  const store = platform.storage;
  const read = (key: string): string | null => {
    try {
      return store ? store.getItem(key) : null;
    } catch {
      return null;
    }
  };
  const write = (key: string, value: string | null): void => {
    try {
      if (!store) return;
      if (value === null) store.removeItem(key);
      else store.setItem(key, value);
    } catch (err) {
      explain(`cannot write ${key} to storage: ${String(err)}`);
    }
  };
  const refusal = (): string | null =>
    badOption
      ? `${badOption.field}: ${badOption.rule}`
      : (platform.refusal ??
        (level === "off" ? "level is off" : read(keys.consent) === "out" ? "opted out" : null));

  const endpoint = (options.endpoint ?? "").replace(/\/+$/, "");
  const source = options.source ?? platform.defaultSource;
  const flushEvery = options.flushIntervalMs ?? 30_000;
  const retryBase = options.retryBaseMs ?? 1000;
  const retryMax = options.retryMaxMs ?? 300_000;
  const counts = { sent: 0, droppedInvalid: 0, droppedOverflow: 0, droppedRefused: 0 };

  let enabled = false;
  // Shutting down after recording: the last flush may still send and persist.
  let closing = false;
  let shut = false;
  // The page's lifecycle listeners are added once, however often optIn() restarts.
  let listening = false;
  let queue: TallyEvent[] = [];
  let installId = "";
  let session: Session | null = null;
  let interval: ReturnType<typeof setInterval> | null = null;
  let retryTimer: Timer | null = null;
  let persistTimer: Timer | null = null;
  let flushTimer: Timer | null = null;
  let sending: Promise<void> | null = null;
  let attempt = 0;
  let retryAt = 0;
  let deadline = 0;
  let inFlight: AbortController | null = null;

  const later = (fn: () => void, ms: number): Timer => {
    const timer = setTimeout(fn, ms);
    platform.unref?.(timer);
    return timer;
  };

  const persist = (): void => {
    persistTimer = null;
    if (!enabled && !closing) return;
    write(keys.queue, queue.length ? JSON.stringify(queue) : null);
    write(keys.session, session ? JSON.stringify(session) : null);
  };
  const schedulePersist = (): void => {
    if (store && !persistTimer) persistTimer = later(persist, 0);
  };

  // Events recorded in a burst share their millisecond: format it once.
  let lastMs = NaN;
  let lastTs = "";
  const timestamp = (now: number): string => {
    if (now !== lastMs) {
      lastMs = now;
      lastTs = new Date(now).toISOString();
    }
    return lastTs;
  };

  const makeEvent = (
    type: string,
    name: string,
    fields: TrackFields | undefined,
    now: number,
    sessionId: string,
  ): TallyEvent => {
    // One literal, always the same shape: objects built by spreading and then
    // extending cost many times more to make and to check.
    const event: TallyEvent = {
      id: uuidv7(platform.random, now),
      ts: timestamp(now),
      app: options.app,
      app_version: options.appVersion,
      source,
      type,
      name,
      session_id: sessionId,
      install_id: installId,
    };
    const extra = event as unknown as Record<string, unknown>;
    for (const key in fields) {
      // The caller's fields never replace the SDK's; anything unknown is refused by
      // validation below.
      const value = (fields as Record<string, unknown>)[key];
      if (!(key in event)) extra[key] = key === "props" ? { ...(value as Props) } : value;
    }
    return event;
  };

  const enqueue = (event: TallyEvent): void => {
    applyLevel(event, level);
    const broken = validateEvent(event);
    if (broken) {
      counts.droppedInvalid++;
      explain(`dropped ${event.type}/${event.name}: ${broken.field}: ${broken.rule}`);
      return;
    }
    queue.push(event);
    if (queue.length > QUEUE_CAP) {
      queue.shift();
      counts.droppedOverflow++;
      explain(`the queue is full (${QUEUE_CAP} events): the oldest are dropped`);
    }
    schedulePersist();
    if (queue.length >= SEND_BATCH_EVENTS && !flushTimer && !sending) {
      flushTimer = later(() => {
        flushTimer = null;
        void flush();
      }, 0);
    }
  };

  const endSession = (): void => {
    if (!session) return;
    const ended = session;
    session = null;
    const event = makeEvent("session", "session_ended", undefined, ended.last, ended.id);
    event.duration_ms = Math.max(0, Math.round(ended.last - ended.start));
    enqueue(event);
  };

  /** The session for activity at `now`: the current one, or a new one after an idle gap. */
  const touch = (now: number): Session => {
    if (session && now - session.last > SESSION_IDLE_MS) endSession();
    if (!session) {
      session = { id: uuidv7(platform.random, now), start: now, last: now };
      enqueue(makeEvent("session", "session_started", undefined, now, session.id));
    }
    session.last = now;
    return session;
  };

  const track = (type: string, name: string, fields?: TrackFields): void => {
    if (!enabled) return;
    try {
      const now = platform.now();
      enqueue(makeEvent(type, name, fields, now, touch(now).id));
    } catch (err) {
      counts.droppedInvalid++;
      explain(`dropped ${String(type)}/${String(name)}: ${String(err)}`);
    }
  };

  const forget = (sent: TallyEvent[]): void => {
    const ids = new Set(sent.map((event) => event.id));
    queue = queue.filter((event) => !ids.has(event.id));
    schedulePersist();
  };

  /** Sends one batch: "next" when the next may follow at once, "retry" after setting
   * `retryAt`, "stop" when nothing more can be sent now. */
  const post = async (batch: Batch): Promise<"next" | "retry" | "stop"> => {
    const doFetch = platform.fetch;
    if (!doFetch) return "stop";
    inFlight = new AbortController();
    let status = 0;
    let answer: Response | null = null;
    try {
      answer = await doFetch(`${endpoint}/v1/events/batch`, {
        method: "POST",
        headers: { authorization: `Bearer ${options.key}`, "content-type": "application/json" },
        body: batch.body,
        credentials: "omit",
        signal: inFlight.signal,
      });
      status = answer.status;
    } catch (err) {
      if (closing && platform.now() >= deadline) return "stop";
      explain(`cannot reach ${endpoint}: ${String(err)}; will retry`);
    } finally {
      inFlight = null;
    }
    const outcome = status === 0 ? "retry" : verdict(status);
    if (outcome === "sent") {
      attempt = 0;
      let rejected: { index: number; message?: string }[] = [];
      try {
        const body = (await answer!.json()) as { rejected?: typeof rejected };
        rejected = Array.isArray(body.rejected) ? body.rejected : [];
      } catch {
        // A 2xx means committed even when its body cannot be read.
      }
      for (const refusal of rejected) explain(`the collector refused an event: ${refusal.message}`);
      counts.droppedRefused += rejected.length;
      counts.sent += batch.events.length - rejected.length;
      forget(batch.events);
      return "next";
    }
    if (outcome === "drop") {
      counts.droppedRefused += batch.events.length;
      explain(`the collector answered ${status}: ${batch.events.length} events dropped`);
      forget(batch.events);
      return "next";
    }
    const asked = retryAfterMs(answer ? answer.headers.get("retry-after") : null, platform.now());
    const random = new Uint8Array(4);
    platform.random(random);
    const random01 =
      (random[0] * 2 ** 24 + random[1] * 2 ** 16 + random[2] * 256 + random[3]) / 2 ** 32;
    const wait = backoffMs(attempt++, retryBase, retryMax, random01, asked);
    retryAt = platform.now() + wait;
    return "retry";
  };

  const drain = async (): Promise<void> => {
    while (enabled || closing) {
      const now = platform.now();
      if (now < retryAt) {
        // In shutdown the wait is spent here, within the deadline; otherwise a timer
        // comes back when the backoff is over.
        if (closing && retryAt < deadline) {
          await new Promise((resolve) => later(() => resolve(null), retryAt - now));
          continue;
        }
        if (!closing && !retryTimer) {
          retryTimer = later(() => {
            retryTimer = null;
            void flush();
          }, retryAt - now);
        }
        return;
      }
      const [batch] = batches(queue, SEND_BATCH_EVENTS, SEND_BATCH_BYTES);
      if (!batch || (await post(batch)) === "stop") return;
      if (closing && platform.now() >= deadline) return;
    }
  };

  const flush = (): Promise<void> => {
    if (!enabled && !closing) return Promise.resolve();
    if (!sending) {
      sending = drain()
        .catch((err) => explain(`flush failed: ${String(err)}`))
        .finally(() => {
          sending = null;
          persist();
        });
    }
    return sending;
  };

  /** The page is going away or hidden: hand what is queued to the browser. */
  const beacon = (): void => {
    if (!enabled || !queue.length) return;
    persist();
    const url = `${endpoint}/v1/events/batch?key=${encodeURIComponent(options.key)}`;
    for (const batch of batches(queue, SEND_BATCH_EVENTS, SEND_BATCH_BYTES)) {
      let handed = false;
      try {
        handed = platform.sendBeacon ? platform.sendBeacon(url, batch.body) : false;
      } catch {
        handed = false;
      }
      // Not handed over (the browser's 64 KiB budget is spent): it stays queued, in
      // storage, and leaves with the next page load.
      if (!handed) break;
      forget(batch.events);
    }
    persist();
  };

  const tick = (): void => {
    if (session && platform.now() - session.last > SESSION_IDLE_MS) endSession();
    void flush();
  };

  const start = (): void => {
    const why = refusal();
    if (why) {
      explain(`not recording: ${why}`);
      return;
    }
    enabled = true;
    installId = read(keys.install) ?? "";
    if (!installId) {
      installId = uuidv4(platform.random);
      write(keys.install, installId);
    }
    try {
      const stored = JSON.parse(read(keys.queue) ?? "[]") as unknown;
      // Whatever else is in storage (another version, a hand edit) is left out: the
      // collector would refuse it anyway, and it must not wedge the queue.
      if (Array.isArray(stored)) {
        queue = (stored as TallyEvent[])
          .filter((event) => typeof event?.id === "string")
          .slice(-QUEUE_CAP);
      }
      const saved = JSON.parse(read(keys.session) ?? "null") as Session | null;
      if (saved && typeof saved.id === "string") session = saved;
    } catch {
      explain("the stored queue was unreadable and is replaced");
    }
    if (session && platform.now() - session.last > SESSION_IDLE_MS) endSession();
    interval = setInterval(tick, flushEvery);
    platform.unref?.(interval as Timer);
    if (!listening) platform.onHidden?.(beacon);
    listening = true;
    if (queue.length) later(() => void flush(), 0);
  };

  const stop = (): void => {
    enabled = false;
    for (const timer of [retryTimer, persistTimer, flushTimer]) if (timer) clearTimeout(timer);
    if (interval) clearInterval(interval);
    retryTimer = persistTimer = flushTimer = interval = null;
  };

  start();

  const handle: Tally = {
    track,
    feature: (name, props) => track("feature", name, props ? { props } : undefined),
    page: (route) => {
      const path = route ?? platform.route?.();
      track("page", "page_viewed", path ? { props: { route: path } } : undefined);
    },
    command: (name) => {
      if (!enabled) return NOOP_TIMER;
      const started = platform.now();
      let done = false;
      const end = (success: boolean, category?: string): void => {
        if (done) return;
        done = true;
        const duration_ms = Math.max(0, Math.round(platform.now() - started));
        const fields: TrackFields = { command: name, duration_ms, success };
        if (category !== undefined) fields.error_category = category;
        track("command", "command_executed", fields);
        if (!success) track("error", "error_occurred", { command: name, error_category: category });
      };
      return { success: () => end(true), failure: (category) => end(false, category) };
    },
    error: (category) => track("error", "error_occurred", { error_category: category }),
    flush,
    shutdown: async ({ timeoutMs = 2000 } = {}) => {
      if (shut) return;
      shut = true;
      if (!enabled) return;
      if (session) {
        session.last = platform.now();
        endSession();
      }
      stop();
      closing = true;
      deadline = platform.now() + timeoutMs;
      retryAt = Math.min(retryAt, deadline);
      let timer: Timer | null = null;
      // Queued events reach storage first, whatever the network does next.
      persist();
      // This timer is not unref'd: it keeps a process alive for the flush, and no
      // longer than timeoutMs.
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      const drained = (async () => {
        // A flush already under way keeps going (it sees `closing`); then one more
        // pass takes whatever it left.
        if (sending) await sending;
        await flush();
      })();
      await Promise.race([drained, timeout]);
      if (timer) clearTimeout(timer);
      inFlight?.abort();
      persist();
      closing = false;
    },
    optOut: () => {
      stop();
      inFlight?.abort();
      queue = [];
      session = null;
      for (const key of [keys.queue, keys.session, keys.install]) write(key, null);
      write(keys.consent, "out");
    },
    optIn: () => {
      write(keys.consent, null);
      if (!enabled && !shut) start();
    },
    isEnabled: () => enabled,
    stats: () => ({ queued: queue.length, ...counts }),
  };
  return handle;
}
