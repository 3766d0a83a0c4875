// How queued events leave: one batch at a time with `fetch` while the page or program
// runs, retried with backoff on the answers that mean "later"; and, when the page is
// hidden or unloaded, every chunk at once with `sendBeacon`, or `fetch` with
// `keepalive` where the browser has no beacon or refuses one.

import { backoffMs, retryAfterMs, verdict, type Batch } from "./delivery.js";
import type { Recorder } from "./recorder.js";

type Timer = ReturnType<typeof setTimeout>;

/** What the drain loop does after one batch. */
type Step = "next" | "retry" | "stop";

export class Sender {
  _retryTimer: Timer | null = null;
  _sending: Promise<void> | null = null;
  /** When the next attempt may start (backoff), in the platform's clock. */
  _retryAt = 0;
  /** In shutdown: when sending must have stopped. */
  _deadline = 0;
  _inFlight: AbortController | null = null;
  /** Ids of the events in keepalive requests not yet answered: neither a second
   * `pagehide`/`visibilitychange` nor a flush sends them again meanwhile. */
  readonly _pending = new Set<string>();
  private _attempt = 0;

  constructor(private readonly _r: Recorder) {}

  /** Sends what is queued, batch after batch; one drain at a time. */
  _flush(): Promise<void> {
    const r = this._r;
    if (!r._enabled && !r._closing) return Promise.resolve();
    if (!this._sending) {
      this._sending = this._drain()
        .catch((err) => r._explain("failed", err))
        .finally(() => {
          this._sending = null;
          r._persist();
        });
    }
    return this._sending;
  }

  /** The last flush of a shutdown, given at most `timeoutMs`. Its timer is not
   * unref'd: it keeps a process alive for the flush, and no longer. */
  async _within(timeoutMs: number): Promise<void> {
    let timer: Timer | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    const drained = (async () => {
      // A flush already under way keeps going (it sees `closing`); then one more pass
      // takes whatever it left.
      if (this._sending) await this._sending;
      await this._flush();
    })();
    await Promise.race([drained, timeout]);
    clearTimeout(timer);
    this._inFlight?.abort();
  }

  private async _drain(): Promise<void> {
    const r = this._r;
    while (r._enabled || r._closing) {
      if (r._now() < this._retryAt) {
        if (await this._wait()) continue;
        return;
      }
      const [batch] = r._batches();
      if (!batch || (await this._post(batch)) === "stop") return;
      if (r._closing && r._now() >= this._deadline) return;
    }
  }

  /** Waits out a backoff: in shutdown here, within the deadline (true: go on);
   * otherwise a timer comes back when the backoff is over (false: stop for now). */
  private async _wait(): Promise<boolean> {
    const r = this._r;
    const wait = this._retryAt - r._now();
    if (r._closing) {
      if (this._retryAt >= this._deadline) return false;
      await new Promise((resolve) => r._later(() => resolve(null), wait));
      return true;
    }
    this._retryTimer ??= r._later(() => {
      this._retryTimer = null;
      void this._flush();
    }, wait);
    return false;
  }

  /** Sends one batch with the key in a header; says what the loop does next. */
  private async _post(batch: Batch): Promise<Step> {
    const r = this._r;
    const doFetch = r._platform.fetch;
    if (!doFetch) return "stop";
    const inFlight = (this._inFlight = new AbortController());
    let answer: Response | null = null;
    try {
      answer = await doFetch(`${r._endpoint}/v1/events/batch`, {
        method: "POST",
        headers: { authorization: `Bearer ${r._key}`, "content-type": "application/json" },
        body: batch.body,
        credentials: "omit",
        signal: inFlight.signal,
      });
    } catch (err) {
      if (r._closing && r._now() >= this._deadline) return "stop";
      r._explain("unreachable", r._endpoint, err);
    } finally {
      this._inFlight = null;
    }
    return this._settle(batch, answer);
  }

  /** Acts on the collector's answer (null: none came): forget what was committed or
   * refused for good, back off for what must be resent. */
  private async _settle(batch: Batch, answer: Response | null): Promise<Step> {
    const r = this._r;
    const status = answer ? answer.status : 0;
    const outcome = status ? verdict(status) : "retry";
    if (outcome === "retry") {
      this._backoff(answer);
      return "retry";
    }
    const rejected = outcome === "sent" ? await rejections(answer!) : batch.events;
    this._attempt = 0;
    if (outcome === "drop") r._explain("answered", status, batch.events.length);
    for (const refusal of outcome === "sent" ? rejected : []) {
      r._explain("refused", (refusal as { message?: string }).message);
    }
    // An event counts once, even when a keepalive request and a flush both carried it.
    const removed = r._forget(batch.events);
    const refused = Math.min(removed, rejected.length);
    r._counts.droppedRefused += refused;
    r._counts.sent += removed - refused;
    return "next";
  }

  /** Full-jitter backoff from the attempt count, never sooner than `Retry-After`. */
  private _backoff(answer: Response | null): void {
    const r = this._r;
    const asked = retryAfterMs(answer && answer.headers.get("retry-after"), r._now());
    const random = new Uint32Array(1);
    r._platform.random(new Uint8Array(random.buffer));
    const { retryBaseMs = 1000, retryMaxMs = 300_000 } = r._options;
    const wait = backoffMs(this._attempt++, retryBaseMs, retryMaxMs, random[0] / 2 ** 32, asked);
    this._retryAt = r._now() + wait;
  }

  /** The page is going away or hidden: hand what is queued to the browser. An event
   * leaves the queue once the browser took its beacon, or once the collector answered
   * its keepalive request; until then it stays stored and goes with the next flush or
   * page load, where the collector's dedupe makes a second copy harmless. */
  _beacon(): void {
    const r = this._r;
    if (!r._enabled || !r._queue.length) return;
    r._persist();
    const url = `${r._endpoint}/v1/events/batch?key=${encodeURIComponent(r._key)}`;
    for (const batch of r._batches()) {
      if (this._handOver(url, batch.body)) r._forget(batch.events);
      else this._keepalive(url, batch);
    }
    r._persist();
  }

  /** `sendBeacon`: true when the browser took the chunk. */
  private _handOver(url: string, body: string): boolean {
    try {
      return !!this._r._platform.sendBeacon?.(url, body);
    } catch {
      return false;
    }
  }

  /** The beacon form (key in the query, a text/plain body) through `fetch`, which
   * outlives the page with `keepalive`. */
  private _keepalive(url: string, batch: Batch): void {
    const doFetch = this._r._platform.fetch;
    if (!doFetch) return;
    const ids = batch.events.map((event) => event.id);
    const done = (): void => ids.forEach((id) => this._pending.delete(id));
    ids.forEach((id) => this._pending.add(id));
    // Refused (the browser's keepalive budget is spent) or unreachable: the events stay
    // queued. A fetch that throws at once has taken nothing either.
    try {
      doFetch(url, { method: "POST", body: batch.body, credentials: "omit", keepalive: true })
        .then((answer) => (done(), this._settle(batch, answer)), done)
        .catch(done);
    } catch {
      done();
    }
  }
}

/** The events a 2xx answer lists as rejected; a 2xx means committed even when its
 * body cannot be read. */
async function rejections(answer: Response): Promise<unknown[]> {
  try {
    const body = (await answer.json()) as { rejected?: unknown };
    return Array.isArray(body.rejected) ? body.rejected : [];
  } catch {
    return [];
  }
}
