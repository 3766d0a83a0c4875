// The recorder: events built, checked and queued in memory (the host's call does
// nothing more, so `track()` stays cheap and never throws), sessions, the queue's
// persistence, delivery (batches with `fetch`, retries with backoff, beacons when the
// page is hidden), consent and shutdown.
//
// It is one closure over local state, with inner functions, rather than classes: the
// browser bundle ships this file, and a minifier can shorten local names to one letter
// but must keep every member name whole. See docs/BENCHMARKS.md section 7.

import { backoffMs, batches, retryAfterMs, verdict, type Batch } from "./delivery.js";
import { uuid } from "./ids.js";
import { applyLevel, LEVELS } from "./level.js";
import { QUEUE_CAP, SEND_BATCH_BYTES, SEND_BATCH_EVENTS, SESSION_IDLE_MS } from "./limits.js";
import type { Note, Refusal } from "./messages.js";
import type { Platform, Tally, TallyOptions, TrackFields } from "./core.js";
import { checkApp, checkEvent, type Broken, type TallyEvent } from "./rules.js";
import type { StoredItem } from "./storage.js";

interface Session {
  id: string;
  start: number;
  last: number;
}

export function createCore(options: TallyOptions, platform: Platform): Tally {
  const { app, appVersion, key, debug, level = "basic" } = options;
  const { flushIntervalMs = 30_000, retryBaseMs = 1000, retryMaxMs = 300_000 } = options;
  const { storage, random, now, unref, describe } = platform;
  const source = options.source ?? platform.defaultSource;
  const endpoint = String(options.endpoint ?? "").replace(/\/+$/, "");
  const url = `${endpoint}/v1/events/batch`;
  /** Why recording may never start: a bad option, DNT, GPC, DO_NOT_TRACK, level off. */
  const refused: Broken | Refusal | null =
    checkApp(app ?? "") ??
    (LEVELS.includes(level) ? null : ["level", "level"]) ??
    (/^https?:\/\//.test(endpoint) ? null : ["endpoint", "url"]) ??
    platform.refusal ??
    (level === "off" ? "level" : null);
  // What `stats()` reports, besides the queue's length.
  let sent = 0;
  let droppedInvalid = 0;
  let droppedOverflow = 0;
  let droppedRefused = 0;
  /** The debug notes said so far: each is said once. */
  const said = new Set<string>();
  /** Ids of the events in keepalive requests not yet answered: neither a second
   * `pagehide`/`visibilitychange` nor a flush sends them again meanwhile. */
  const pending = new Set<string>();
  let queue: TallyEvent[] = [];
  let enabled = false;
  /** Shutting down after recording: the last flush may still send and persist. */
  let closing = false;
  let shut = false;
  let install: string | null | undefined;
  let session: Session | null = null;
  let interval: ReturnType<typeof setInterval> | undefined;
  /** A persist (and a flush, if a batch is full) is due after the current task. */
  let due = false;
  let sending: Promise<void> | null = null;
  let inFlight: AbortController | undefined;
  /** When the next attempt may start (backoff), and in shutdown, when sending must stop. */
  let retryAt = 0;
  let deadline = 0;
  let attempt = 0;
  let lastMs = NaN;
  let lastTs = "";

  /** Says a note once on the console, in debug mode. */
  const explain = (...note: [Note, ...unknown[]]): void => {
    if (!debug) return;
    const text = describe ? describe(note[0], note.slice(1)) : note.join(" ");
    if (!said.has(text)) console.warn(`tally: ${text}`);
    said.add(text);
  };

  /** Reads an item (without `value`), or writes it (null removes it). Storage may be
   * missing or may throw: the SDK then keeps going in memory. Keys carry the app's
   * name, so two apps on one origin never mix. */
  const store = (item: StoredItem, value?: string | null): string | null | undefined => {
    const name = `tally:${app}:${item}`;
    try {
      if (value === undefined) return storage?.getItem(name);
      if (value === null) storage?.removeItem(name);
      else storage?.setItem(name, value);
    } catch (err) {
      explain("storage", name, err);
    }
  };

  const later = (fn: () => void, ms: number): void => {
    const timer = setTimeout(fn, ms);
    unref?.(timer);
  };

  /** Writes the queue and session to storage (while recording or shutting down). */
  const persist = (): void => {
    if (!storage || (!enabled && !closing)) return;
    store("queue", queue.length ? JSON.stringify(queue) : null);
    store("session", session && JSON.stringify(session));
  };

  /** After the calls of this task: persist once, and send at once if a batch is full. */
  const afterTask = (): void => {
    if (due) return;
    due = true;
    later(() => {
      due = false;
      persist();
      if (queue.length >= SEND_BATCH_EVENTS) void flush();
    }, 0);
  };

  /** Takes sent or refused events out of the queue; returns how many were in it. */
  const forget = (events: TallyEvent[]): number => {
    const ids = new Set(events.map((event) => event.id));
    const before = queue.length;
    queue = queue.filter((event) => !ids.has(event.id));
    afterTask();
    return before - queue.length;
  };

  /** Builds, checks and queues one event. */
  const record = (
    type: string,
    name: string,
    fields: TrackFields | undefined,
    at: number,
    sessionId: string,
  ): void => {
    // Events recorded in a burst share their millisecond: format it once.
    if (at !== lastMs) lastTs = new Date((lastMs = at)).toISOString();
    // One literal, always the same shape: objects built by spreading and then extending
    // cost many times more to make and to check.
    const event: TallyEvent = {
      id: uuid(random, at),
      ts: lastTs,
      app,
      app_version: appVersion,
      source,
      type,
      name,
      session_id: sessionId,
      install_id: install!,
    };
    const extra = event as unknown as Record<string, unknown>;
    for (const field in fields) {
      // The caller's fields never replace the SDK's; anything unknown is refused by
      // validation.
      const value = (fields as Record<string, unknown>)[field];
      if (!(field in event)) extra[field] = field === "props" ? { ...(value as object) } : value;
    }
    applyLevel(event, level);
    const broken = checkEvent(event);
    if (broken) {
      droppedInvalid++;
      return explain("dropped", `${String(type)}/${String(name)}`, broken);
    }
    if (queue.push(event) > QUEUE_CAP) {
      queue.shift();
      droppedOverflow++;
      explain("full");
    }
    afterTask();
  };

  /** Ends the session at its last activity, with its duration, when it has been idle
   * since `idleAt` for longer than the limit (or, with no `idleAt`, now). */
  const endSession = (idleAt?: number): void => {
    const ended = session;
    if (!ended || (idleAt ?? Infinity) - ended.last <= SESSION_IDLE_MS) return;
    session = null;
    const duration_ms = Math.max(0, Math.round(ended.last - ended.start));
    record("session", "session_ended", { duration_ms }, ended.last, ended.id);
  };

  /** Records one event now; a broken call is dropped and counted, never thrown. */
  const track = (type: string, name: string, fields?: TrackFields): void => {
    if (!enabled) return;
    try {
      const at = now();
      endSession(at);
      if (!session) {
        session = { id: uuid(random, at), start: at, last: at };
        record("session", "session_started", undefined, at, session.id);
      }
      session.last = at;
      record(type, name, fields, at, session.id);
    } catch (err) {
      droppedInvalid++;
      explain("dropped", `${String(type)}/${String(name)}`, err);
    }
  };

  /** Starts recording unless something refuses it: with the install id, and the queue
   * and session a previous page or run left. */
  const start = (): void => {
    const why = refused ?? (store("consent") === "out" ? "optout" : null);
    if (why) return explain("off", why);
    enabled = true;
    if (!(install = store("install"))) store("install", (install = uuid(random)));
    try {
      const stored = JSON.parse(store("queue") ?? "[]") as TallyEvent[];
      // Whatever else is in storage (another version, a hand edit) is left out: the
      // collector would refuse it anyway, and it must not wedge the queue.
      if (Array.isArray(stored)) {
        queue = stored.filter((event) => typeof event?.id === "string").slice(-QUEUE_CAP);
      }
      const saved = JSON.parse(store("session") ?? "null") as Session | null;
      if (typeof saved?.id === "string") session = saved;
    } catch {
      explain("unreadable");
    }
    endSession(now());
    interval = setInterval(() => {
      endSession(now());
      void flush();
    }, flushIntervalMs);
    unref?.(interval as ReturnType<typeof setTimeout>);
    if (queue.length) later(flush, 0);
  };

  /** Sends what is queued, batch after batch; one drain at a time. */
  const flush = async (): Promise<void> => {
    if (!sending && (enabled || closing)) {
      sending = drain()
        .catch((err) => explain("failed", err))
        .finally(() => {
          sending = null;
          persist();
        });
    }
    await sending;
  };

  /** The queue in request bodies, oldest first, without the events a keepalive
   * request carries (they leave the queue when it is answered). */
  const queuedBatches = (): Batch[] =>
    batches(
      queue.filter((event) => !pending.has(event.id)),
      SEND_BATCH_EVENTS,
      SEND_BATCH_BYTES,
    );

  /** Batch after batch until the queue is empty, a backoff holds the next one back, or
   * the shutdown's deadline passed. A backoff is waited out here in shutdown (within
   * the deadline); otherwise a timer flushes again when it is over. */
  const drain = async (): Promise<void> => {
    while (enabled || closing) {
      const wait = retryAt - now();
      if (wait > 0) {
        if (!closing) return later(flush, wait);
        if (retryAt >= deadline) return;
        await new Promise<void>((resolve) => later(resolve, wait));
        continue;
      }
      const [batch] = queuedBatches();
      if (!batch) return;
      await post(batch);
      if (closing && now() >= deadline) return;
    }
  };

  /** Sends one batch: with the key in a header, or in the beacon form (`beaconUrl`: the
   * key in the query, a text/plain body) with `keepalive`, which outlives the page.
   * Then acts on the answer. */
  const post = async (batch: Batch, beaconUrl?: string): Promise<void> => {
    const ids = beaconUrl ? batch.events.map((event) => event.id) : [];
    ids.forEach((id) => pending.add(id));
    let answer: Response | undefined;
    try {
      answer = await platform.fetch!(
        beaconUrl ?? url,
        beaconUrl
          ? { method: "POST", body: batch.body, credentials: "omit", keepalive: true }
          : {
              method: "POST",
              body: batch.body,
              credentials: "omit",
              headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
              signal: (inFlight = new AbortController()).signal,
            },
      );
    } catch (err) {
      // Aborted at the shutdown's deadline, or unreachable: the events stay queued.
      if (!closing || now() < deadline) explain("unreachable", endpoint, err);
    }
    ids.forEach((id) => pending.delete(id));
    await settle(batch, answer);
  };

  /** Acts on the collector's answer (none: it was not reached): forget what was
   * committed or refused for good, back off for what must be resent. */
  const settle = async (batch: Batch, answer: Response | undefined): Promise<void> => {
    const status = answer?.status ?? 0;
    const outcome = verdict(status);
    if (outcome === "retry") {
      // Full jitter needs no strong randomness; only the ids do.
      const asked = retryAfterMs(answer?.headers.get("retry-after"), now());
      retryAt = now() + backoffMs(attempt++, retryBaseMs, retryMaxMs, Math.random(), asked);
      return;
    }
    attempt = 0;
    let rejected: unknown = batch.events;
    if (outcome === "drop") explain("answered", status, batch.events.length);
    else {
      // A 2xx means committed even when its body cannot be read.
      try {
        rejected = ((await answer!.json()) as { rejected?: unknown }).rejected;
      } catch {}
      rejected = Array.isArray(rejected) ? rejected : [];
      for (const refusal of rejected as { message?: string }[]) {
        explain("refused", refusal?.message);
      }
    }
    // An event counts once, even when a keepalive request and a flush both carried it.
    const removed = forget(batch.events);
    const refusedNow = Math.min(removed, (rejected as unknown[]).length);
    droppedRefused += refusedNow;
    sent += removed - refusedNow;
  };

  /** The page is going away or hidden: hand what is queued to the browser, and store
   * what is left before the page may be gone. An event leaves the queue once the
   * browser took its beacon, or once the collector answered its keepalive request;
   * until then it stays stored and goes with the next flush or page load, where the
   * collector's dedupe makes a second copy harmless. */
  const beacon = (): void => {
    if (!enabled) return;
    const beaconUrl = `${url}?key=${encodeURIComponent(key)}`;
    for (const batch of queuedBatches()) {
      let taken: boolean | undefined;
      try {
        taken = platform.sendBeacon?.(beaconUrl, batch.body);
      } catch {}
      // Refused (the browser's beacon budget is spent) or missing: `fetch` keepalive.
      if (taken) forget(batch.events);
      else void post(batch, beaconUrl);
    }
    persist();
  };

  /** Ends the session and sends what is queued, within `timeoutMs`; stops for good.
   * The timeout's timer is not unref'd: it keeps a process alive for the flush, and no
   * longer. */
  const shutdown = async ({ timeoutMs = 2000 } = {}): Promise<void> => {
    if (shut || !enabled) return void (shut = true);
    shut = true;
    if (session) session.last = now();
    endSession();
    stop();
    closing = true;
    deadline = now() + timeoutMs;
    // Queued events reach storage first, whatever the network does next.
    persist();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      // A flush already under way keeps going (it sees `closing`); then one more pass
      // takes whatever it left.
      Promise.resolve(sending).then(flush),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    inFlight?.abort();
    persist();
    closing = false;
  };

  /** Timers left running find `enabled` false and do nothing. */
  const stop = (): void => {
    enabled = false;
    clearInterval(interval);
  };

  // The listeners are added once, however often optIn() restarts recording.
  platform.onHidden?.(beacon);
  start();
  return {
    track,
    // The shorthands for features, pages, commands and errors are calls of `track`.
    feature: (name, props) => track("feature", name, props && { props }),
    page: (route = platform.route?.()) =>
      track("page", "page_viewed", route ? { props: { route } } : undefined),
    command: (name) => {
      const started = now();
      // The first of `success()` and `failure()` records the command.
      let end = (success: boolean, error_category?: string): void => {
        end = () => {};
        const duration_ms = Math.max(0, Math.round(now() - started));
        track("command", "command_executed", {
          command: name,
          duration_ms,
          success,
          error_category,
        });
        if (!success) track("error", "error_occurred", { command: name, error_category });
      };
      return { success: () => end(true), failure: (category) => end(false, category) };
    },
    error: (category) => track("error", "error_occurred", { error_category: category }),
    flush,
    shutdown,
    // Deletes the queue and ids, and remembers the choice.
    optOut: () => {
      stop();
      inFlight?.abort();
      queue = [];
      session = null;
      for (const item of ["queue", "session", "install"] as const) store(item, null);
      store("consent", "out");
    },
    optIn: () => {
      store("consent", null);
      if (!enabled && !shut) start();
    },
    isEnabled: () => enabled,
    stats: () => ({
      queued: queue.length,
      sent,
      droppedInvalid,
      droppedOverflow,
      droppedRefused,
    }),
  };
}
