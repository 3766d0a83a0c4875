// The debug bundle's entry (dist/tally.debug.js): the browser's `createTally` whose
// debug notes are the collector's sentences rather than codes. For development; the
// small bundle (dist/tally.min.js) records the same events by the same rules.

import { createBrowserTally } from "./web.js";
import type { Tally, TallyOptions } from "./core.js";
import { describe } from "./messages.js";

export { browserRefusal } from "./web.js";

/** Starts recording in a web page; see `web.ts`. */
export function createTally(options: TallyOptions): Tally {
  return createBrowserTally(options, describe);
}
