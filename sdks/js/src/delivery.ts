// How queued events leave: batches within the count and byte limits, which answers
// mean retry, drop or done, and how long to wait before trying again.

import { utf8Length, type TallyEvent } from "./validate.js";

/** A request body and the events in it. */
export interface Batch {
  events: TallyEvent[];
  body: string;
}

/** What to do with a batch after the collector answered `status`. */
export type Verdict = "sent" | "retry" | "drop";

/** 2xx: committed. 429, 502, 503, 504: try again later with the same ids. Anything
 * else is an answer about the batch itself (a bad key, a bad event, too large) that
 * resending cannot change, so it is dropped and counted. */
export function verdict(status: number): Verdict {
  if (status >= 200 && status < 300) return "sent";
  if (status === 429 || status === 502 || status === 503 || status === 504) return "retry";
  return "drop";
}

/** Splits `events` (oldest first) into request bodies of at most `maxEvents` events and
 * `maxBytes` bytes each, in order. */
export function batches(events: TallyEvent[], maxEvents: number, maxBytes: number): Batch[] {
  const out: Batch[] = [];
  let current: TallyEvent[] = [];
  let parts: string[] = [];
  // `{"events":[` and `]}`.
  const frame = 13;
  let bytes = frame;
  for (const event of events) {
    const json = JSON.stringify(event);
    const length = utf8Length(json);
    if (parts.length > 0 && (parts.length >= maxEvents || bytes + 1 + length > maxBytes)) {
      out.push({ events: current, body: `{"events":[${parts.join(",")}]}` });
      current = [];
      parts = [];
      bytes = frame;
    }
    bytes += (parts.length > 0 ? 1 : 0) + length;
    current.push(event);
    parts.push(json);
  }
  if (parts.length > 0) out.push({ events: current, body: `{"events":[${parts.join(",")}]}` });
  return out;
}

/** `Retry-After` (seconds or an HTTP date) in milliseconds from `nowMs`, or null. */
export function retryAfterMs(header: string | null, nowMs: number): number | null {
  if (!header) return null;
  // A number of seconds; anything else is read as a date (NaN when it is none).
  const wait = /^\s*\d+\s*$/.test(header) ? +header * 1000 : Date.parse(header) - nowMs;
  return Number.isNaN(wait) ? null : Math.max(0, wait);
}

/** Full-jitter backoff: a uniform wait in [0, min(maxMs, baseMs * 2^attempt)), but
 * never sooner than the collector asked for. */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random01: number,
  askedMs: number | null,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  const jittered = Math.floor(random01 * ceiling);
  return askedMs === null ? jittered : Math.max(askedMs, jittered);
}
