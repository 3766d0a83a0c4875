//! How batches travel: HTTP to a collector, or files in a directory for machines that
//! may not connect (`tally ingest` loads them into a collector later).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// What the other side answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status (200 from a directory, which takes everything).
    pub status: u16,
    /// `Retry-After`, when given in seconds.
    pub retry_after: Option<Duration>,
    /// The answer's body, at most 1 MiB: a batch result or an error in JSON.
    pub body: Vec<u8>,
}

/// The request never got an answer (connection refused or reset, timeout); it may be
/// retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Carries one gzip-compressed batch body (`{"events": [...]}`).
pub trait Transport {
    /// Sends the body of `events` events and returns the answer.
    fn send(&mut self, gzip_body: &[u8], events: usize) -> Result<Response, TransportError>;

    /// Where batches go, for messages (`https://collector/v1/events/batch`).
    fn destination(&self) -> String;

    /// What a dry run shows for the batch body `batch_json`: what this transport would
    /// send, readably. The batch API sends the body itself (gzip-compressed).
    fn readable_body(&self, batch_json: &[u8]) -> Vec<u8> {
        batch_json.to_vec()
    }
}

/// `POST {endpoint}/v1/events/batch` (or `/v1/counts`) over HTTPS (rustls) or HTTP.
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    authorization: String,
}

impl HttpTransport {
    /// A transport to `endpoint` with ingest `key`. The client is built here, only when
    /// a sync runs: recording never builds one.
    pub fn new(endpoint: &str, key: &str) -> HttpTransport {
        HttpTransport::to_route(endpoint, "/v1/events/batch", key)
    }

    /// A transport of counts-only uploads: `POST {endpoint}/v1/counts`.
    pub fn counts(endpoint: &str, key: &str) -> HttpTransport {
        HttpTransport::to_route(endpoint, "/v1/counts", key)
    }

    fn to_route(endpoint: &str, route: &str, key: &str) -> HttpTransport {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpTransport {
            agent: config.into(),
            url: format!("{}{route}", endpoint.trim_end_matches('/')),
            authorization: format!("Bearer {key}"),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, gzip_body: &[u8], _events: usize) -> Result<Response, TransportError> {
        post_gzip(
            &self.agent,
            &self.url,
            "application/json",
            &self.authorization,
            gzip_body,
        )
    }

    fn destination(&self) -> String {
        self.url.clone()
    }
}

/// Most bytes of an answer read; a collector's answer is far smaller.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// POSTs a gzip body of `content_type` with a bearer key, and reads the answer: its
/// status, `Retry-After` in seconds, and at most [`MAX_ANSWER_BYTES`] of its body. The
/// HTTP transports of both endpoint kinds send this way.
pub(super) fn post_gzip(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    authorization: &str,
    gzip_body: &[u8],
) -> Result<Response, TransportError> {
    let mut response = agent
        .post(url)
        .header("Content-Type", content_type)
        .header("Content-Encoding", "gzip")
        .header("Authorization", authorization)
        .send(gzip_body)
        .map_err(|err| TransportError(err.to_string()))?;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut body)
        .map_err(|err| TransportError(format!("reading the answer: {err}")))?;
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// Writes each batch as `batch-<ms>-<n>.json.gz` in a directory, atomically (a
/// temporary file renamed into place), and answers as a collector that accepted all.
pub struct DirTransport {
    dir: PathBuf,
    written: u64,
}

impl DirTransport {
    /// A transport into `dir`, created if needed. A directory that cannot be written
    /// is refused here, once, rather than retried batch by batch like a collector
    /// that does not answer.
    pub fn new(dir: PathBuf) -> Result<DirTransport, TransportError> {
        std::fs::create_dir_all(&dir)
            .map_err(|err| TransportError(format!("cannot create {}: {err}", dir.display())))?;
        let probe = dir.join(format!(".tally-write-check-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|err| TransportError(format!("the directory {} is not writable: {err}", dir.display())))?;
        Ok(DirTransport { dir, written: 0 })
    }
}

impl Transport for DirTransport {
    fn send(&mut self, gzip_body: &[u8], events: usize) -> Result<Response, TransportError> {
        self.written += 1;
        let name = format!(
            "batch-{}-{:04}.json.gz",
            jiff::Timestamp::now().as_millisecond(),
            self.written
        );
        let path = self.dir.join(&name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let io = |err: std::io::Error| TransportError(format!("write {}: {err}", path.display()));
        std::fs::write(&temporary, gzip_body).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        Ok(Response {
            status: 200,
            retry_after: None,
            body: serde_json::json!({"accepted": events, "duplicates": 0, "rejected": []})
                .to_string()
                .into_bytes(),
        })
    }

    fn destination(&self) -> String {
        self.dir.display().to_string()
    }
}
