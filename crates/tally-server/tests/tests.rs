//! The collector's integration tests: one binary, one module per concern.

mod browser;
mod cardinality;
mod http;
mod limits;
mod otlp;
mod parser_props;
mod privacy;
mod storage_contract;
mod storage_upgrade;
mod support;
mod tenancy;
