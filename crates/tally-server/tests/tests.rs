//! The collector's integration tests: one binary, one module per concern.

mod browser;
mod http;
mod otlp;
mod privacy;
mod storage_contract;
mod storage_upgrade;
mod support;
