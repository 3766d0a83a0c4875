//! The `tally` command: inspect and control any app's Tally store.

fn main() {}
