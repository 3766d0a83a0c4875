// Checks an event against docs/API.md, rule for rule and message for message as
// crates/tally-core/src/validate.rs does, so the SDK drops exactly what the collector
// would refuse, and says why in the same words: the rules of `rules.ts` with the
// sentences of `messages.ts`.

import { ruleText } from "./messages.js";
import { checkEvent, RULES, type Row, type TallyEvent } from "./rules.js";

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

/** Every rule, in the collector's order: the recorder's, and those of the two fields only
 * the recorder makes (see `RULES`). */
const ALL_RULES: Row[] = [
  RULES[0],
  ["ts", "ts", /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$/],
  RULES[1],
  ["id", "uuid", /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/i],
  ...RULES.slice(2),
];

/** The first rule `event` breaks, in the collector's order, or null when it is valid. */
export function validateEvent(event: TallyEvent): ValidationError | null {
  const broken = checkEvent(event, ALL_RULES);
  return broken && { field: broken[0], rule: ruleText(broken) };
}
