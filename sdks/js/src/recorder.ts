// The recorder's state and its life: events built, checked and queued in memory (the
// host's call does nothing more, so `track()` stays cheap and never throws), sessions,
// the queue's persistence, and starting, stopping and shutting down. `Sender` moves
// the queue to the collector.

import { batches, type Batch } from "./delivery.js";
import { uuidv4, uuidv7 } from "./ids.js";
import { applyLevel, type Level } from "./level.js";
import { QUEUE_CAP, SEND_BATCH_BYTES, SEND_BATCH_EVENTS, SESSION_IDLE_MS } from "./limits.js";
import type { Note, Refusal } from "./messages.js";
import type { Platform, TallyOptions, TallyStats, TrackFields } from "./core.js";
import { checkRecorded, type Broken, type Props, type Source, type TallyEvent } from "./rules.js";
import { Sender } from "./sender.js";
import { AppStorage } from "./storage.js";

type Timer = ReturnType<typeof setTimeout>;

interface Session {
  id: string;
  start: number;
  last: number;
}

/** Says a note once on the console, in debug mode. */
export type Explain = (note: Note, ...details: unknown[]) => void;

export class Recorder {
  _enabled = false;
  /** Shutting down after recording: the last flush may still send and persist. */
  _closing = false;
  _shut = false;
  _queue: TallyEvent[] = [];
  _counts: Omit<TallyStats, "queued"> = {
    sent: 0,
    droppedInvalid: 0,
    droppedOverflow: 0,
    droppedRefused: 0,
  };
  readonly _endpoint: string;
  readonly _key: string;
  readonly _store: AppStorage;
  readonly _sender = new Sender(this);
  private readonly _source: Source;
  private _install = "";
  private _session: Session | null = null;
  /** The page's lifecycle listeners are added once, however often optIn() restarts. */
  private _listening = false;
  private _interval: ReturnType<typeof setInterval> | null = null;
  private _persistTimer: Timer | null = null;
  private _flushTimer: Timer | null = null;
  private _lastMs = NaN;
  private _lastTs = "";

  constructor(
    readonly _options: TallyOptions,
    readonly _platform: Platform,
    readonly _level: Level,
    readonly _explain: Explain,
    /** Why recording may never start: a bad option, DNT, GPC, DO_NOT_TRACK. */
    private readonly _refused: Refusal | Broken | null,
  ) {
    this._endpoint = String(_options.endpoint ?? "").replace(/\/+$/, "");
    this._key = _options.key;
    this._source = _options.source ?? _platform.defaultSource;
    this._store = new AppStorage(_platform.storage, _options.app, (key, err) =>
      _explain("storage", key, err),
    );
  }

  _now(): number {
    return this._platform.now();
  }

  _later(fn: () => void, ms: number): Timer {
    const timer = setTimeout(fn, ms);
    this._platform.unref?.(timer);
    return timer;
  }

  /** The queue in request bodies, oldest first, without the events a keepalive
   * request carries (they leave the queue when it is answered). */
  _batches(): Batch[] {
    const pending = this._sender._pending;
    const events = pending.size
      ? this._queue.filter((event) => !pending.has(event.id))
      : this._queue;
    return batches(events, SEND_BATCH_EVENTS, SEND_BATCH_BYTES);
  }

  /** Starts recording unless something refuses it. */
  _start(): void {
    const why = this._refused ?? this._refusal();
    if (why) return this._explain("off", why);
    this._enabled = true;
    this._load();
    if (this._session && this._now() - this._session.last > SESSION_IDLE_MS) this._endSession();
    this._interval = setInterval(() => this._tick(), this._options.flushIntervalMs ?? 30_000);
    this._platform.unref?.(this._interval as Timer);
    if (!this._listening) this._platform.onHidden?.(() => this._sender._beacon());
    this._listening = true;
    if (this._queue.length) this._later(() => void this._sender._flush(), 0);
  }

  private _refusal(): Refusal | null {
    if (this._level === "off") return "level";
    return this._store._read("consent") === "out" ? "optout" : null;
  }

  /** The install id, and the queue and session a previous page or run left. */
  private _load(): void {
    const store = this._store;
    this._install = store._read("install") ?? "";
    if (!this._install) {
      this._install = uuidv4(this._platform.random);
      store._write("install", this._install);
    }
    try {
      const stored = JSON.parse(store._read("queue") ?? "[]") as unknown;
      // Whatever else is in storage (another version, a hand edit) is left out: the
      // collector would refuse it anyway, and it must not wedge the queue.
      if (Array.isArray(stored)) {
        this._queue = (stored as TallyEvent[])
          .filter((event) => typeof event?.id === "string")
          .slice(-QUEUE_CAP);
      }
      const saved = JSON.parse(store._read("session") ?? "null") as Session | null;
      if (saved && typeof saved.id === "string") this._session = saved;
    } catch {
      this._explain("unreadable");
    }
  }

  _stop(): void {
    this._enabled = false;
    const sender = this._sender;
    for (const timer of [sender._retryTimer, this._persistTimer, this._flushTimer]) {
      if (timer) clearTimeout(timer);
    }
    if (this._interval) clearInterval(this._interval);
    sender._retryTimer = this._persistTimer = this._flushTimer = this._interval = null;
  }

  private _tick(): void {
    if (this._session && this._now() - this._session.last > SESSION_IDLE_MS) this._endSession();
    void this._sender._flush();
  }

  /** Writes the queue and session to storage (while recording or shutting down). */
  _persist(): void {
    this._persistTimer = null;
    if (!this._enabled && !this._closing) return;
    const queue = this._queue;
    this._store._write("queue", queue.length ? JSON.stringify(queue) : null);
    this._store._write("session", this._session ? JSON.stringify(this._session) : null);
  }

  /** Persists once per task, after the calls of this one. */
  private _schedulePersist(): void {
    if (this._store._storage && !this._persistTimer) {
      this._persistTimer = this._later(() => this._persist(), 0);
    }
  }

  /** Takes sent or refused events out of the queue; returns how many were in it. */
  _forget(events: TallyEvent[]): number {
    const ids = new Set(events.map((event) => event.id));
    const before = this._queue.length;
    this._queue = this._queue.filter((event) => !ids.has(event.id));
    this._schedulePersist();
    return before - this._queue.length;
  }

  /** Records one event now; a broken call is dropped and counted, never thrown. */
  _track(type: string, name: string, fields?: TrackFields): void {
    if (!this._enabled) return;
    try {
      const now = this._now();
      this._enqueue(this._event(type, name, fields, now, this._touch(now).id));
    } catch (err) {
      this._counts.droppedInvalid++;
      this._explain("dropped", `${String(type)}/${String(name)}`, err);
    }
  }

  /** Events recorded in a burst share their millisecond: format it once. */
  private _timestamp(now: number): string {
    if (now !== this._lastMs) {
      this._lastMs = now;
      this._lastTs = new Date(now).toISOString();
    }
    return this._lastTs;
  }

  private _event(
    type: string,
    name: string,
    fields: TrackFields | undefined,
    now: number,
    sessionId: string,
  ): TallyEvent {
    // One literal, always the same shape: objects built by spreading and then
    // extending cost many times more to make and to check.
    const event: TallyEvent = {
      id: uuidv7(this._platform.random, now),
      ts: this._timestamp(now),
      app: this._options.app,
      app_version: this._options.appVersion,
      source: this._source,
      type,
      name,
      session_id: sessionId,
      install_id: this._install,
    };
    const extra = event as unknown as Record<string, unknown>;
    for (const key in fields) {
      // The caller's fields never replace the SDK's; anything unknown is refused by
      // validation.
      const value = (fields as Record<string, unknown>)[key];
      if (!(key in event)) extra[key] = key === "props" ? { ...(value as Props) } : value;
    }
    return event;
  }

  private _enqueue(event: TallyEvent): void {
    applyLevel(event, this._level);
    const broken: Broken | null = checkRecorded(event);
    if (broken) {
      this._counts.droppedInvalid++;
      return this._explain("dropped", `${event.type}/${event.name}`, broken);
    }
    const queue = this._queue;
    queue.push(event);
    if (queue.length > QUEUE_CAP) {
      queue.shift();
      this._counts.droppedOverflow++;
      this._explain("full");
    }
    this._schedulePersist();
    if (queue.length >= SEND_BATCH_EVENTS && !this._flushTimer && !this._sender._sending) {
      this._flushTimer = this._later(() => {
        this._flushTimer = null;
        void this._sender._flush();
      }, 0);
    }
  }

  /** The session for activity at `now`: the current one, or a new one after an idle gap. */
  private _touch(now: number): Session {
    let session = this._session;
    if (session && now - session.last > SESSION_IDLE_MS) session = this._endSession();
    if (!session) {
      session = this._session = { id: uuidv7(this._platform.random, now), start: now, last: now };
      this._enqueue(this._event("session", "session_started", undefined, now, session.id));
    }
    session.last = now;
    return session;
  }

  /** Ends the session at its last activity, with its duration; returns null. */
  _endSession(): null {
    const ended = this._session;
    if (!ended) return null;
    this._session = null;
    const event = this._event("session", "session_ended", undefined, ended.last, ended.id);
    event.duration_ms = Math.max(0, Math.round(ended.last - ended.start));
    this._enqueue(event);
    return null;
  }

  /** Ends the session and sends what is queued, within `timeoutMs`; stops for good. */
  async _shutdown(timeoutMs: number): Promise<void> {
    if (this._shut) return;
    this._shut = true;
    if (!this._enabled) return;
    if (this._session) {
      this._session.last = this._now();
      this._endSession();
    }
    this._stop();
    this._closing = true;
    const sender = this._sender;
    sender._deadline = this._now() + timeoutMs;
    sender._retryAt = Math.min(sender._retryAt, sender._deadline);
    // Queued events reach storage first, whatever the network does next.
    this._persist();
    await sender._within(timeoutMs);
    this._persist();
    this._closing = false;
  }

  /** Deletes the queue and ids, and remembers the choice. */
  _optOut(): void {
    this._stop();
    this._sender._inFlight?.abort();
    this._queue = [];
    this._session = null;
    for (const item of ["queue", "session", "install"] as const) this._store._write(item, null);
    this._store._write("consent", "out");
  }

  _optIn(): void {
    this._store._write("consent", null);
    if (!this._enabled && !this._shut) this._start();
  }
}
