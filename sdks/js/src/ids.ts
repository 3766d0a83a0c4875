// Ids made on the client: UUIDv7 for events and sessions (time-ordered, so the
// collector's indexes stay compact), a random UUIDv4 for the install. Nothing is
// derived from the device or the person.

/** Fills a buffer with cryptographically strong random bytes. */
export type RandomFill = (bytes: Uint8Array) => void;

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push((i + 0x100).toString(16).slice(1));

// Random bytes are drawn 4 KiB at a time: one call into the platform's generator
// costs more than the rest of making an id.
const pool = new Uint8Array(4096);
let used = pool.length;
let poolSource: RandomFill | null = null;

function randomBytes(random: RandomFill): Uint8Array {
  if (used + 16 > pool.length || poolSource !== random) {
    random(pool);
    used = 0;
    poolSource = random;
  }
  used += 16;
  // A view, not a copy: these bytes are used once, for this id.
  return pool.subarray(used - 16, used);
}

/** A UUID of `version` from 16 random bytes; for v7 the first six are `ms`, the Unix
 * milliseconds. */
function uuid(random: RandomFill, version: number, ms?: number): string {
  const b = randomBytes(random);
  if (ms !== undefined) {
    for (let i = 5; i >= 0; i--) {
      b[i] = ms % 256;
      ms = Math.floor(ms / 256);
    }
  }
  b[6] = (b[6] & 0x0f) | (version << 4);
  b[8] = (b[8] & 0x3f) | 0x80;
  let out = "";
  for (let i = 0; i < 16; i++)
    out += (i === 4 || i === 6 || i === 8 || i === 10 ? "-" : "") + HEX[b[i]];
  return out;
}

/** A UUIDv7 for `nowMs`: 48 bits of Unix milliseconds, then 74 random bits. */
export function uuidv7(random: RandomFill, nowMs: number): string {
  return uuid(random, 7, Math.floor(nowMs));
}

/** A random UUIDv4. */
export function uuidv4(random: RandomFill): string {
  return uuid(random, 4);
}
