// The package's main entry: the browser's `createTally` (with debug notes in words)
// and everything a host or a test may want besides (the shared recorder, validation,
// storage doubles). Node programs import `@tally/sdk/node` instead.

export { browserRefusal, createTally } from "./browser-debug.js";
export type {
  CommandTimer,
  Platform,
  Tally,
  TallyOptions,
  TallyStats,
  TrackFields,
} from "./core.js";
export { createCore } from "./core.js";
export { describe, type Describe, type Note, type Refusal } from "./messages.js";
export type { Level } from "./level.js";
export { memoryStorage, type KeyValueStorage } from "./storage.js";
export {
  validateEvent,
  type Props,
  type PropValue,
  type Source,
  type TallyEvent,
  type ValidationError,
} from "./validate.js";
