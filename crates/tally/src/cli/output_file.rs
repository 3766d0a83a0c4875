//! `-o FILE` for `export` and `report`: the output goes to a temporary file beside
//! `FILE` and is renamed over it only once whole and on disk, so a full disk or an
//! interrupted run leaves any earlier `FILE` as it was instead of truncated.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::CliError;

/// Runs `write` into a temporary file beside `path`, then renames it to `path`. On any
/// failure the temporary file is removed and `path` is untouched.
pub(super) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let (temporary, file) = create_beside(path)?;
    let result = fill(file, write).and_then(|()| {
        std::fs::rename(&temporary, path)
            .map_err(|err| CliError::Usage(format!("cannot write {}: {err}", path.display())))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(|err| match err {
        CliError::Io(err) => CliError::Usage(format!("cannot write {}: {err}; it was left as it was", path.display())),
        other => other,
    })
}

fn fill(file: File, write: impl FnOnce(&mut dyn Write) -> Result<(), CliError>) -> Result<(), CliError> {
    let mut writer = BufWriter::new(file);
    write(&mut writer)?;
    writer.flush()?;
    let file = writer.into_inner().map_err(|err| CliError::Io(err.into_error()))?;
    // On disk before the rename, so a crash cannot leave a renamed, empty file.
    file.sync_all()?;
    Ok(())
}

/// A new file in `path`'s directory that no one else is using.
fn create_beside(path: &Path) -> Result<(PathBuf, File), CliError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |name| name.to_string_lossy().into_owned());
    let mut attempt = 0u32;
    loop {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let temporary = directory.join(format!(".{name}.{}-{nonce}-{attempt}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temporary) {
            Ok(file) => return Ok((temporary, file)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(err) => {
                return Err(CliError::Usage(format!("cannot write {}: {err}", path.display())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, "old and complete\n").unwrap();
        let err = write_atomically(&path, |out| {
            out.write_all(b"new but ")?;
            Err(CliError::Io(std::io::Error::other("No space left on device")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("left as it was"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old and complete\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");

        write_atomically(&path, |out| Ok(out.write_all(b"new\n")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
