//! A collector that answers what a test tells it to: a tiny HTTP/1.1 server on a free
//! port of 127.0.0.1 that reads each request and its body (per `Content-Length`), keeps
//! both, and answers with a scripted status, headers and body, closes the connection
//! without answering (the client sees a reset), or never answers at all.
//!
//! The SDK's sync tests use it through the library; the `tally` binary's tests include
//! this same file (`#[path]`) to watch what `nexus sync` sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One request the collector received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The request line and headers, as sent.
    pub(crate) head: String,
    /// The body, as sent (gzip for a sync).
    pub(crate) body: Vec<u8>,
    /// When its first byte was read.
    pub(crate) arrived: Instant,
    /// When the answer was written (`None`: closed or left unanswered).
    pub(crate) answered: Option<Instant>,
}

impl Request {
    /// A header's value, by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The body decompressed, if it was sent with `Content-Encoding: gzip`.
    pub(crate) fn json_bytes(&self) -> Vec<u8> {
        if self.header("content-encoding") != Some("gzip") {
            return self.body.clone();
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    }

    /// The events of a batch body (`{"events": [...]}`).
    pub(crate) fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.json_bytes()).expect("a JSON body");
        body["events"].as_array().expect("an events array").clone()
    }

    /// The ids of the events of a batch body, in order.
    pub(crate) fn event_ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|event| event["id"].as_str().expect("an id").to_owned())
            .collect()
    }
}

/// What the collector does with a request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// Answers with this status, extra headers and body.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Closes the connection without answering, as a collector that died would.
    Close,
    /// Never answers, and keeps the connection open until the collector is dropped.
    Hang,
}

impl Answer {
    /// `200` with every event of the batch accepted, as the real collector answers.
    pub(crate) fn accept_all(request: &Request) -> Answer {
        let events = request.events().len();
        Answer::json(200, json!({"accepted": events, "duplicates": 0, "rejected": []}))
    }

    /// `200` with the events at `indexes` refused as `invalid_event`, the others accepted.
    pub(crate) fn refuse(request: &Request, indexes: &[usize], message: &str) -> Answer {
        let events = request.events();
        let rejected: Vec<Value> = indexes
            .iter()
            .map(|index| {
                json!({"index": index, "id": events[*index]["id"], "code": "invalid_event", "message": message})
            })
            .collect();
        Answer::json(
            200,
            json!({"accepted": events.len() - indexes.len(), "duplicates": 0, "rejected": rejected}),
        )
    }

    /// An error in the collector's format: `{"error": {"code", "message"}}`.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::json(status, json!({"error": {"code": code, "message": message}}))
    }

    /// A JSON body.
    pub(crate) fn json(status: u16, body: Value) -> Answer {
        Answer::Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// The same answer with one more header.
    pub(crate) fn with_header(self, name: &str, value: &str) -> Answer {
        match self {
            Answer::Reply {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Answer::Reply { status, headers, body }
            }
            other => other,
        }
    }
}

/// Decides the answer to the `n`-th request (from 0).
type Script = Box<dyn FnMut(usize, &Request) -> Answer + Send>;

/// The running server; it stops when dropped.
pub(crate) struct ScriptedCollector {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

impl ScriptedCollector {
    /// Starts a collector answering each request as `script` says.
    pub(crate) fn start(script: impl FnMut(usize, &Request) -> Answer + Send + 'static) -> ScriptedCollector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let collector = ScriptedCollector {
            address: listener.local_addr().expect("local address"),
            requests: Arc::default(),
            connections: Arc::default(),
            stopped: Arc::default(),
        };
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (requests, connections, stopped) = (
            Arc::clone(&collector.requests),
            Arc::clone(&collector.connections),
            Arc::clone(&collector.stopped),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let (requests, script, stopped) = (Arc::clone(&requests), Arc::clone(&script), Arc::clone(&stopped));
                thread::spawn(move || serve_connection(stream, &requests, &script, &stopped));
            }
        });
        collector
    }

    /// A collector that accepts every event.
    pub(crate) fn accepting() -> ScriptedCollector {
        ScriptedCollector::start(|_, request| Answer::accept_all(request))
    }

    /// `http://127.0.0.1:PORT`, the endpoint to configure.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request received so far, in order of arrival.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until `count` requests arrived; false if they did not within `within`.
    pub(crate) fn wait_for_requests(&self, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.requests().len() < count {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for ScriptedCollector {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

fn serve_connection(stream: TcpStream, requests: &Mutex<Vec<Request>>, script: &Mutex<Script>, stopped: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    // One connection may carry several requests (keep-alive).
    while let Some(message) = read_message(&mut reader) {
        // An install registers its key before its first upload; that is no batch, and
        // the scripts are about batches, so it is answered here and not recorded.
        if message.head.starts_with("POST /v1/installs/self/key ") {
            let body = r#"{"registered":"new"}"#;
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let request = Request {
            head: message.head,
            body: message.body,
            arrived: message.arrived,
            answered: None,
        };
        let index = {
            let mut requests = requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.push(request.clone());
            requests.len() - 1
        };
        let answer = (script.lock().unwrap_or_else(PoisonError::into_inner))(index, &request);
        match answer {
            Answer::Reply { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body.as_bytes()).is_err() {
                    return;
                }
                let _ = writer.flush();
                requests.lock().unwrap_or_else(PoisonError::into_inner)[index].answered = Some(Instant::now());
            }
            Answer::Close => return,
            Answer::Hang => {
                while !stopped.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(10));
                }
                return;
            }
        }
    }
}

/// An HTTP/1.1 message: the start line and headers, then a `Content-Length` body.
pub(crate) struct Message {
    /// The start line and headers, without the blank line.
    pub(crate) head: String,
    /// Exactly `Content-Length` bytes, as sent (gzip for a sync).
    pub(crate) body: Vec<u8>,
    /// When its first byte was read.
    pub(crate) arrived: Instant,
}

/// Reads one message; `None` when the peer closed the connection first.
pub(crate) fn read_message(reader: &mut impl BufRead) -> Option<Message> {
    let mut head = String::new();
    let mut arrived = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        arrived.get_or_insert_with(Instant::now);
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .skip(1)
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "chunked bodies are not supported here:\n{head}"
    );
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Message {
        head,
        body,
        arrived: arrived?,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}
