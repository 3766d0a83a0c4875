//! `export --format otlp`: the events as OTLP JSON (`{"resourceLogs": [...]}`), the
//! body an OTLP/HTTP receiver takes at `/v1/logs` (Tally's collector among them).
//!
//! Streamed like the other formats: each record is written as it is read, and a new
//! `ResourceLogs` opens whenever the app or version changes, so memory stays constant
//! however large the store. Records are serialized by `opentelemetry-proto`'s serde
//! (OTLP/JSON: camelCase, 64-bit integers as strings), one per line.

use std::io::Write;

use tally_core::Event;

use super::CliError;

/// Writes one OTLP JSON document, an event at a time.
#[derive(Default)]
pub(crate) struct OtlpJsonWriter {
    /// The app and version of the open `ResourceLogs`, if one is open.
    open: Option<(String, String)>,
}

impl OtlpJsonWriter {
    pub(crate) fn begin(&mut self, writer: &mut dyn Write) -> Result<(), CliError> {
        writer.write_all(b"{\"resourceLogs\": [")?;
        Ok(())
    }

    pub(crate) fn write(&mut self, writer: &mut dyn Write, event: &Event) -> Result<(), CliError> {
        let same = self
            .open
            .as_ref()
            .is_some_and(|(app, version)| *app == event.app && *version == event.app_version);
        if same {
            writer.write_all(b",\n")?;
        } else {
            if self.open.is_some() {
                writer.write_all(b"\n]}]},")?;
            }
            writer.write_all(b"\n{\"resource\": ")?;
            serde_json::to_writer(&mut *writer, &crate::otlp::resource(&event.app, &event.app_version))
                .map_err(std::io::Error::from)?;
            writer.write_all(b", \"scopeLogs\": [{\"scope\": ")?;
            serde_json::to_writer(&mut *writer, &crate::otlp::scope()).map_err(std::io::Error::from)?;
            writer.write_all(b", \"logRecords\": [\n")?;
            self.open = Some((event.app.clone(), event.app_version.clone()));
        }
        serde_json::to_writer(&mut *writer, &crate::otlp::log_record(event)).map_err(std::io::Error::from)?;
        Ok(())
    }

    pub(crate) fn finish(self, writer: &mut dyn Write) -> Result<(), CliError> {
        if self.open.is_some() {
            writer.write_all(b"\n]}]}\n")?;
        }
        writer.write_all(b"]}\n")?;
        Ok(())
    }
}
