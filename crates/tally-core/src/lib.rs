//! The event every part of Tally agrees on, and the pure rules applied to it.
//!
//! An app builds an [`EventBuilder`] with clear-text values; [`EventBuilder::finish`] turns
//! it into an [`Event`] by hashing every identifier a user named ([`KeyedHasher`]),
//! redacting free text ([`redact`]), stripping what the telemetry [`Level`] does not keep
//! ([`apply_level`]) and checking the documented [`limits`] ([`Event::validate`]). The
//! [`Event`] is the one shape stored locally, sent on the wire and ingested by the
//! collector, so the SDK and the server cannot disagree about what a valid event is.
//!
//! The key design decision: this crate is pure. It does no I/O, starts no threads and
//! knows nothing about SQLite or HTTP; the only outside facts it reads are the clock and
//! randomness for new event ids. Everything here can be tested with plain values.
//!
//! # Layout
//! - [`event`]: the [`Event`], its [`Source`] and [`PropValue`]s, and the wire form (serde).
//! - [`builder`]: [`EventBuilder`] and the [`EventContext`] it is finished against.
//! - [`validate`]: [`Event::validate`] and [`ValidationError`].
//! - [`limits`]: one constant per documented limit.
//! - [`proof`]: [`proof::InstallProof`], how an install proves itself to a collector.
//! - [`counts`]: [`counts::DayCounts`], the counts-only upload of one install and day.
//! - [`level`]: [`Level`] and [`apply_level`].
//! - [`hashing`]: [`KeyedHasher`], HMAC-SHA256 identifiers prefixed `h1:`.
//! - [`redact`]: removes paths, e-mail addresses, secrets, IPs and URLs from free text.
//! - [`time`]: RFC 3339 timestamps in UTC with milliseconds.

pub mod builder;
pub mod counts;
pub mod event;
pub mod hashing;
pub mod level;
pub mod limits;
pub mod proof;
pub mod redact;
pub mod time;
pub mod validate;

pub use builder::{EventBuilder, EventContext};
pub use event::{Event, PropValue, Props, Source};
pub use hashing::KeyedHasher;
pub use level::{Level, apply_level};
pub use redact::redact;
pub use validate::ValidationError;

/// Re-exported so users of the event type need not depend on these crates directly.
pub use jiff::Timestamp;
/// Re-exported so users of the event type need not depend on these crates directly.
pub use uuid::Uuid;
