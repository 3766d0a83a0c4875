//! One constant per limit on events and batches. `docs/API.md` documents each of them;
//! the collector enforces the batch and body limits, [`crate::Event::validate`] the rest.

/// Longest `type`, `name`, `error_category`, `target_type` and props key, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `command` (a subcommand path such as `workspace create`), in bytes.
pub const MAX_COMMAND_LEN: usize = 128;
/// Longest `app` name, in bytes.
pub const MAX_APP_LEN: usize = 64;
/// Longest `app_version`, in bytes.
pub const MAX_APP_VERSION_LEN: usize = 64;
/// Longest `session_id` and `install_id`, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Most keys in `props`.
pub const MAX_PROPS: usize = 32;
/// Longest string value in `props`, in bytes.
pub const MAX_PROP_STRING_LEN: usize = 256;
/// Longest `error_message` (kept at level `full` only, after redaction), in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Largest `duration_ms`: 30 days. Anything longer is a clock or unit bug.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Largest event, serialized as compact JSON, in bytes.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
/// Most events in one batch, on the wire and in one SDK flush.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Largest request body the collector accepts, after decompression, in bytes.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Deepest JSON nesting the collector accepts in a request body.
pub const MAX_JSON_DEPTH: usize = 16;
