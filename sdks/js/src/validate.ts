// Checks an event against docs/API.md, rule for rule and message for message as
// crates/tally-core/src/validate.rs does, so the SDK drops exactly what the collector
// would refuse, and says why in the same words: the rules of `rules.ts` with the
// sentences of `messages.ts`.

import { ruleText } from "./messages.js";
import { checkEvent, type TallyEvent } from "./rules.js";

export {
  utf8Length,
  type Broken,
  type PropValue,
  type Props,
  type Source,
  type TallyEvent,
} from "./rules.js";

/** A broken rule: the field as named on the wire, and the rule in words. */
export interface ValidationError {
  field: string;
  rule: string;
}

/** The first rule `event` breaks, in the collector's order, or null when it is valid. */
export function validateEvent(event: TallyEvent): ValidationError | null {
  const broken = checkEvent(event);
  return broken && { field: broken[0], rule: ruleText(broken) };
}
