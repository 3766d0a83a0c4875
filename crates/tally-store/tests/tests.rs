//! Integration tests of the SQLite store, built as one test binary.
//!
//! Each module checks one promise the store makes to the apps recording into it: an
//! upgrade keeps old data, a killed writer never leaves half a batch, a batch is stored
//! whole or not at all, folding keeps totals, spooled events arrive once, the size cap
//! holds, a damaged or unwritable location still gives a working store, and another
//! program's database is never taken for one.

mod app_events;
mod atomicity;
mod concurrency;
mod crash;
mod migrations;
mod ownership;
mod prng;
mod recovery;
mod retention;
mod sessions;
mod size_cap;
mod spool;
mod stats;
mod store_doc;
