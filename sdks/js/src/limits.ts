// The limits of docs/API.md, one constant each, equal to crates/tally-core/src/limits.rs
// (a test reads that file and compares), plus the SDK's own delivery limits.

/** Longest `type`, `name`, `error_category`, `target_type` and props key, in bytes. */
export const MAX_NAME_LEN = 64;
/** Longest `command`, in bytes. */
export const MAX_COMMAND_LEN = 128;
/** Longest `app`, in bytes. */
export const MAX_APP_LEN = 64;
/** Longest `app_version`, in bytes. */
export const MAX_APP_VERSION_LEN = 64;
/** Longest `session_id` and `install_id`, in bytes. */
export const MAX_ID_LEN = 64;
/** Most keys in `props`. */
export const MAX_PROPS = 32;
/** Longest string value in `props`, in bytes. */
export const MAX_PROP_STRING_LEN = 256;
/** Longest `error_message`, in bytes. */
export const MAX_ERROR_MESSAGE_LEN = 1024;
/** Largest `duration_ms`: 30 days. */
export const MAX_DURATION_MS = 30 * 24 * 60 * 60 * 1000;
/** Largest event as compact JSON, in bytes. */
export const MAX_EVENT_BYTES = 8 * 1024;

/** Most events the SDK sends in one request. */
export const SEND_BATCH_EVENTS = 100;
/** Largest request body the SDK sends (and largest beacon): under 60 KB, and under the
 * 64 KiB browsers allow for all keepalive requests of a page together. */
export const SEND_BATCH_BYTES = 60_000;
/** Most events kept queued; past it the oldest are dropped and counted. */
export const QUEUE_CAP = 1000;
/** A session ends after this long hidden or idle. */
export const SESSION_IDLE_MS = 30 * 60 * 1000;
