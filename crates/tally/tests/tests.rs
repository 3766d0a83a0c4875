//! Integration tests of the SDK. Tests that need their own environment (settings come
//! from environment variables, which are process-wide) run the same test binary again
//! as a child process; see `child`.

mod child;
mod concurrency;
mod lifecycle;
#[cfg(feature = "upload")]
mod otlp_sync;
mod privacy;
#[cfg(feature = "cli")]
mod record;
#[cfg(feature = "upload")]
mod scripted_collector;
#[cfg(feature = "upload")]
mod sync;
