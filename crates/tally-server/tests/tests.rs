//! The collector's integration tests: one binary, one module per concern.

mod browser;
mod http;
mod storage_contract;
mod support;
