// Levels, as docs/PRIVACY.md and FIELD_LEVELS in crates/tally-core/src/level.rs define
// them: `basic` keeps the counts and outcomes, `enhanced` adds props and hashed
// targets, `full` adds the (redacted) error message.

import type { TallyEvent } from "./validate.js";

/** How much is recorded. */
export type Level = "off" | "basic" | "enhanced" | "full";

export const LEVELS: readonly Level[] = ["off", "basic", "enhanced", "full"];

const ENHANCED = ["workspace", "target_type", "target_id", "props"] as const;
/** Props kept only at `full`. */
const FULL_PROPS = ["peak_memory_kb"];

/** Strips from `event` every field `level` does not keep (in place). */
export function applyLevel(event: TallyEvent, level: Level): void {
  if (level === "basic") {
    // `delete` only what is there: deleting reshapes the object, which costs.
    for (const field of ENHANCED) if (field in event) delete event[field];
  }
  if (level !== "full") {
    if ("error_message" in event) delete event.error_message;
    if (event.props) for (const key of FULL_PROPS) delete event.props[key];
  }
  if (event.props && Object.keys(event.props).length === 0) delete event.props;
}
