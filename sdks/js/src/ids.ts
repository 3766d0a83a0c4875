// Ids made on the client: UUIDv7 for events and sessions (time-ordered, so the
// collector's indexes stay compact), a random UUIDv4 for the install. Nothing is
// derived from the device or the person.

/** Fills a buffer with cryptographically strong random bytes. */
export type RandomFill = (bytes: Uint8Array) => void;

const HEX = Array.from({ length: 256 }, (_, byte) => (byte + 256).toString(16).slice(1));

// Random bytes are drawn 4 KiB at a time: one call into the platform's generator
// costs more than the rest of making an id.
const pool = new Uint8Array(4096);
let used = 4096;
let poolSource: RandomFill | undefined;

/** A UUIDv7 for `ms`, the Unix milliseconds (48 bits of them, then 74 random bits), or
 * without `ms`, a random UUIDv4. */
export function uuid(random: RandomFill, ms?: number): string {
  if (used > 4080 || poolSource !== random) {
    random(pool);
    used = 0;
    poolSource = random;
  }
  // A view, not a copy: these bytes are used once, for this id.
  const b = pool.subarray(used, (used += 16));
  // Uint8Array stores each quotient modulo 256: the time's bytes, big-endian.
  if (ms !== undefined) for (let i = 5, t = ms; i >= 0; i--, t = Math.floor(t / 256)) b[i] = t;
  b[6] = (b[6] & 15) | (ms === undefined ? 64 : 112);
  b[8] = (b[8] & 63) | 128;
  let out = "";
  // 680 has the bits 3, 5, 7 and 9: the bytes a dash follows.
  for (let i = 0; i < 16; i++) out += HEX[b[i]] + ((680 >> i) & 1 ? "-" : "");
  return out;
}
