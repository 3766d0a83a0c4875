// The small bundle's entry (dist/tally.min.js): the browser's `createTally`, and
// nothing else a page does not need. Its debug notes are codes; `browser-debug.ts`
// has the same recorder with their sentences.

import type { Tally, TallyOptions } from "./core.js";
import { createBrowserTally } from "./web.js";

/** Starts recording in a web page. Never throws; with DNT, GPC or an earlier
 * `optOut()`, the handle records, stores and sends nothing. */
export function createTally(options: TallyOptions): Tally {
  return createBrowserTally(options);
}
