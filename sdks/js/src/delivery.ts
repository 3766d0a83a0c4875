// How queued events leave: batches within the count and byte limits, which answers
// mean retry, drop or done, and how long to wait before trying again.

import { utf8Length, type TallyEvent } from "./rules.js";

/** A request body and the events in it. */
export interface Batch {
  events: TallyEvent[];
  body: string;
}

/** What to do with a batch after the collector answered `status`. */
export type Verdict = "sent" | "retry" | "drop";

/** 2xx: committed. 429, 502, 503, 504, and 0 (no answer: a network error): try again
 * later with the same ids. Anything else is an answer about the batch itself (a bad
 * key, a bad event, too large) that resending cannot change, so it is dropped and
 * counted. */
export function verdict(status: number): Verdict {
  if (status >= 200 && status < 300) return "sent";
  return [0, 429, 502, 503, 504].includes(status) ? "retry" : "drop";
}

/** Splits `events` (oldest first) into request bodies of at most `maxEvents` events and
 * `maxBytes` bytes each, in order. */
export function batches(events: TallyEvent[], maxEvents: number, maxBytes: number): Batch[] {
  const out: Batch[] = [];
  let batch: Batch | undefined;
  let bytes = 0;
  for (const event of events) {
    const json = JSON.stringify(event);
    // The event and the comma before it; a body's first event has none, which the
    // frame's 13 bytes (`{"events":[` and `]}`) counted one short make up for.
    const length = utf8Length(json) + 1;
    if (!batch || batch.events.length >= maxEvents || bytes + length > maxBytes) {
      out.push((batch = { events: [], body: "" }));
      bytes = 12;
    }
    bytes += length;
    batch.events.push(event);
    batch.body += `,${json}`;
  }
  for (const each of out) each.body = `{"events":[${each.body.slice(1)}]}`;
  return out;
}

/** `Retry-After` (seconds or an HTTP date) in milliseconds from `nowMs`, or null. */
export function retryAfterMs(header: string | null | undefined, nowMs: number): number | null {
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
  const jittered = Math.floor(random01 * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30)));
  return Math.max(askedMs ?? 0, jittered);
}
