// Levels, as docs/PRIVACY.md and FIELD_LEVELS in crates/tally-core/src/level.rs define
// them: `basic` keeps the counts and outcomes, `enhanced` adds props and hashed
// targets, `full` adds the (redacted) error message.

import type { TallyEvent } from "./rules.js";

/** How much is recorded. */
export type Level = "off" | "basic" | "enhanced" | "full";

export const LEVELS: readonly Level[] = ["off", "basic", "enhanced", "full"];

/** Fields kept from `enhanced` up. */
const ENHANCED = ["workspace", "target_type", "target_id", "props"] as const;

/** Strips from `event` every field `level` does not keep (in place). */
export function applyLevel(event: TallyEvent, level: Level): void {
  // `delete` only what is there: deleting reshapes the object, which costs.
  if (level === "basic") for (const field of ENHANCED) if (field in event) delete event[field];
  if (level !== "full") {
    if ("error_message" in event) delete event.error_message;
    // A prop kept only at `full`.
    if (event.props) delete event.props.peak_memory_kb;
  }
  if (event.props && !Object.keys(event.props).length) delete event.props;
}
