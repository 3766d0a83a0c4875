//! The committed C header is what cbindgen makes from the code: a change to the ABI
//! that forgot the header fails here. `TALLY_FFI_BLESS=1` rewrites the header instead.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("generate the header")
        .write(&mut generated);
    let path = crate_dir.join("include/tally.h");
    if std::env::var_os("TALLY_FFI_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with src/lib.rs; regenerate it with \
         TALLY_FFI_BLESS=1 cargo test -p tally-ffi --test header, and commit it",
        path.display()
    );
}
