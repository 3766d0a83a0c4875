//! The OTLP/HTTP transport (`config set endpoint-kind otlp`): each batch goes to
//! `{endpoint}/v1/logs` as a gzip-compressed protobuf `ExportLogsServiceRequest`, so the
//! user's events can flow into an OpenTelemetry pipeline (or Tally's own `/v1/logs`).
//!
//! It takes the same batch body as the other transports and answers in the batch-result
//! form the sync pass reads, so consent, level, cursor, retries and 413 splitting are
//! the sync pass's, unchanged. OTLP's answer only counts refused records; when some are,
//! the batch's events are sent again one by one to learn which and why. That is safe:
//! each record carries its event's id (`tally.id`), so a receiver that dedupes (Tally's
//! collector does) stores nothing twice. OTLP does not tell new records from duplicates:
//! every record not refused counts as accepted.

use std::io::{Read, Write};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use serde::Deserialize;
use serde_json::json;
use tally_core::Event;

use super::{Response, Transport, TransportError};
use crate::config::EndpointKind;

/// The transport to `endpoint` for its kind: the one place sync and background upload
/// choose between the batch API and OTLP.
pub fn network_transport(kind: EndpointKind, endpoint: &str, key: &str) -> Box<dyn Transport + Send> {
    match kind {
        EndpointKind::Tally => Box::new(super::HttpTransport::new(endpoint, key)),
        EndpointKind::Otlp => Box::new(OtlpTransport::new(endpoint, key)),
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), the body of an OTLP/HTTP error; its
/// `details` are not read.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Deserialize)]
struct Batch {
    events: Vec<Event>,
}

/// `POST {endpoint}/v1/logs` in OTLP protobuf.
pub struct OtlpTransport {
    agent: ureq::Agent,
    url: String,
    authorization: String,
}

impl OtlpTransport {
    /// A transport to the OTLP/HTTP receiver at `endpoint`, with `key` sent as
    /// `Authorization: Bearer`. Built only when a sync runs.
    pub fn new(endpoint: &str, key: &str) -> OtlpTransport {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build();
        OtlpTransport {
            agent: config.into(),
            url: format!("{}/v1/logs", endpoint.trim_end_matches('/')),
            authorization: format!("Bearer {key}"),
        }
    }

    /// Sends `events` as one request; the answer's body is still OTLP.
    fn post(&self, events: &[Event]) -> Result<Response, TransportError> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let body = crate::otlp::request(events).encode_to_vec();
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(&body);
        let gzip_body = encoder.finish().unwrap_or_default();
        super::transport::post_gzip(
            &self.agent,
            &self.url,
            "application/x-protobuf",
            &self.authorization,
            &gzip_body,
        )
    }
}

/// Records refused in a 2xx answer, and the receiver's reason.
fn refused(body: &[u8]) -> Result<(u64, String), TransportError> {
    // An empty body is an empty message: everything was accepted.
    let answer = ExportLogsServiceResponse::decode(body)
        .map_err(|err| TransportError(format!("the OTLP answer is not an ExportLogsServiceResponse: {err}")))?;
    Ok(answer.partial_success.map_or((0, String::new()), |partial| {
        (
            u64::try_from(partial.rejected_log_records).unwrap_or(0),
            partial.error_message,
        )
    }))
}

/// A non-2xx answer with its `google.rpc.Status` message in the collector's error form.
fn error_answer(mut response: Response) -> Response {
    let message = Status::decode(response.body.as_slice()).map_or_else(
        |_| String::from_utf8_lossy(&response.body[..response.body.len().min(300)]).into_owned(),
        |status| status.message,
    );
    response.body = json!({"error": {"code": "otlp", "message": message}})
        .to_string()
        .into_bytes();
    response
}

impl Transport for OtlpTransport {
    fn send(&mut self, gzip_body: &[u8], _events: usize) -> Result<Response, TransportError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gzip_body)
            .read_to_end(&mut json)
            .map_err(|err| TransportError(format!("reading the batch: {err}")))?;
        let batch: Batch =
            serde_json::from_slice(&json).map_err(|err| TransportError(format!("reading the batch: {err}")))?;
        let response = self.post(&batch.events)?;
        if !(200..300).contains(&response.status) {
            return Ok(error_answer(response));
        }
        let (count, message) = refused(&response.body)?;
        let mut rejected = Vec::new();
        if count > 0 && batch.events.len() == 1 {
            rejected.push(json!({"index": 0, "code": "otlp_rejected", "message": message}));
        } else if count > 0 {
            // Which ones? Each alone; a resend of an accepted one stores nothing again.
            for (index, event) in batch.events.iter().enumerate() {
                let single = self.post(std::slice::from_ref(event))?;
                if !(200..300).contains(&single.status) {
                    return Ok(error_answer(single));
                }
                let (count, message) = refused(&single.body)?;
                if count > 0 {
                    rejected.push(json!({"index": index, "code": "otlp_rejected", "message": message}));
                }
            }
        }
        let accepted = batch.events.len() - rejected.len();
        Ok(Response {
            status: response.status,
            retry_after: None,
            body: json!({"accepted": accepted, "duplicates": 0, "rejected": rejected})
                .to_string()
                .into_bytes(),
        })
    }

    fn destination(&self) -> String {
        self.url.clone()
    }

    /// The OTLP/JSON form of the protobuf request, record for record.
    fn readable_body(&self, batch_json: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Batch>(batch_json) {
            Ok(batch) => serde_json::to_vec(&crate::otlp::request(&batch.events)).unwrap_or_default(),
            Err(_) => batch_json.to_vec(),
        }
    }
}
