//! Hardening at the connection and request level, over real sockets where the bytes on
//! the wire matter: slow clients are dropped and others served, a badly framed body is a
//! 400 that says what was wrong, the bearer scheme is case-insensitive, `/metrics` is
//! closed unless it is safe, and one app cannot take every stream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tally_server::config::ServerConfig;
use tally_server::storage::Role;
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::sqlite;

/// A collector serving on a real socket, stopped when dropped.
struct Running {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _backend: crate::support::Backend,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn running(config: ServerConfig) -> Running {
    let backend = sqlite();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let store = Arc::clone(&backend.store);
    tokio::spawn(async move {
        tally_server::serve_on(listener, store, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        address,
        stop: Some(stop),
        _backend: backend,
    }
}

/// Writes `request` to a fresh connection and reads until the server closes it or
/// `patience` passes; what came back.
fn exchange(address: SocketAddr, request: &[u8], patience: Duration) -> String {
    let mut socket = TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(patience)).unwrap();
    socket.write_all(request).unwrap();
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `bytes` one at a time, `gap` apart, until the server closes the connection;
/// how long that took, or `None` if it was still open after all of them.
fn drip(address: SocketAddr, bytes: &[u8], gap: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut socket = TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(gap)).unwrap();
    for byte in bytes {
        if socket.write_all(&[*byte]).is_err() {
            return Some(started.elapsed());
        }
        let mut answer = [0u8; 512];
        match socket.read(&mut answer) {
            Err(err) if is_wait(&err) => {}
            // Closed (or answered, then closed).
            _ => return Some(started.elapsed()),
        }
    }
    None
}

/// A read that only ran out of patience.
fn is_wait(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn tight() -> ServerConfig {
    ServerConfig {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        idle_timeout_secs: 2,
        max_connections: 4,
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_dripping_its_head_is_dropped() {
    let collector = running(tight()).await;
    let address = collector.address;
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte every 250 ms would take 20 s; the head must be whole within 1 s.
    let closed = tokio::task::spawn_blocking(move || drip(address, head, Duration::from_millis(250)))
        .await
        .unwrap();
    let closed = closed.expect("the server kept a dripping client past its header timeout");
    assert!(closed < Duration::from_secs(8), "closed only after {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dripped_ingest_body_is_answered_408() {
    let backend = sqlite();
    let key = tally_server::auth::generate("nexus", Role::Ingest, "test", jiff::Timestamp::now()).unwrap();
    backend.store.put_key(&key.stored).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let store = Arc::clone(&backend.store);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tally_server::serve_on(listener, store, tight(), async {
        let _ = stopped.await;
    }));
    let head = format!(
        "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n",
        key.secret
    );
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(address).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        for _ in 0..80 {
            if socket.write_all(b" ").is_err() {
                break;
            }
            let mut buffer = [0u8; 1024];
            match socket.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout_secs = 1"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_at_the_connection_cap_do_not_lock_others_out() {
    let collector = running(tight()).await;
    let address = collector.address;
    // As many silent connections as the cap allows, and one more.
    let silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(address).unwrap()).collect();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        exchange(
            address,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(15),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "not served: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    // The silent ones were closed by the server, not left waiting.
    for mut socket in silent {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buffer = [0u8; 64];
        match socket.read(&mut buffer) {
            Err(err) if is_wait(&err) => panic!("a silent connection is still open"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_badly_framed_body_is_a_400_that_says_what_was_wrong() {
    let backend = sqlite();
    let key = tally_server::auth::generate("nexus", Role::Ingest, "test", jiff::Timestamp::now()).unwrap();
    backend.store.put_key(&key.stored).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let store = Arc::clone(&backend.store);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tally_server::serve_on(
        listener,
        store,
        ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let head = |framing: &str| {
        format!(
            "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{framing}\r\n",
            key.secret
        )
    };
    let cases = [
        (
            format!("{}zz\r\n{{}}\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")),
            "chunk",
        ),
        (
            format!("{}{{\"events\":", head("Content-Length: 100\r\n")),
            "end of file",
        ),
    ];
    for (request, says) in cases {
        let answer =
            tokio::task::spawn_blocking(move || exchange(address, request.as_bytes(), Duration::from_secs(10)))
                .await
                .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("malformed_body"), "{answer}");
        assert!(answer.to_lowercase().contains(says), "no {says:?} in {answer}");
        assert!(!answer.contains("max_body_bytes"), "{answer}");
    }
}

async fn oneshot(state: &AppState, request: Request<Body>) -> (StatusCode, String) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let backend = sqlite();
    let key = tally_server::auth::generate("nexus", Role::Admin, "test", jiff::Timestamp::now()).unwrap();
    backend.store.put_key(&key.stored).await.unwrap();
    let (state, _committer) = AppState::new(Arc::clone(&backend.store), ServerConfig::default());
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = Request::get("/v1/stats")
            .header(header::AUTHORIZATION, format!("{scheme} {}", key.secret))
            .body(Body::empty())
            .unwrap();
        let (status, body) = oneshot(&state, request).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_closed_unless_on_loopback_or_behind_a_token() {
    let backend = sqlite();
    let get = |authorization: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(Body::empty()).unwrap()
    };
    let public = ServerConfig {
        listen: "0.0.0.0:8080".parse().unwrap(),
        ..ServerConfig::default()
    };
    assert!(public.metrics_warning().unwrap().contains("closed"));
    let (state, _committer) = AppState::new(Arc::clone(&backend.store), public.clone());
    let (status, body) = oneshot(&state, get(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("metrics_token"), "{body}");

    let token = "a-long-enough-metrics-token";
    let (state, _committer) = AppState::new(
        Arc::clone(&backend.store),
        ServerConfig {
            metrics_token: Some(token.into()),
            ..public
        },
    );
    assert_eq!(oneshot(&state, get(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        oneshot(&state, get(Some("Bearer wrong-token-of-some-length"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        oneshot(&state, get(Some(&format!("bearer {token}")))).await.0,
        StatusCode::OK
    );

    let loopback = ServerConfig::default();
    assert!(loopback.metrics_warning().unwrap().contains("open to anyone"));
    let (state, _committer) = AppState::new(Arc::clone(&backend.store), loopback);
    assert_eq!(oneshot(&state, get(None)).await.0, StatusCode::OK);
    assert!(
        ServerConfig {
            metrics_token: Some("short".into()),
            ..ServerConfig::default()
        }
        .check()
        .unwrap_err()
        .starts_with("metrics_token:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_cannot_take_every_stream() {
    let backend = sqlite();
    let mut keys = Vec::new();
    for app in ["a", "b"] {
        let key = tally_server::auth::generate(app, Role::Admin, "test", jiff::Timestamp::now()).unwrap();
        backend.store.put_key(&key.stored).await.unwrap();
        keys.push(key.secret);
    }
    let config = ServerConfig {
        max_stream_subscribers: 4,
        max_stream_subscribers_per_app: 2,
        ..ServerConfig::default()
    };
    let (state, _committer) = AppState::new(Arc::clone(&backend.store), config);
    let open = |key: &str| {
        let request = Request::get("/v1/stream")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        app(state.clone()).oneshot(request)
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = open(&keys[0]).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let refused = open(&keys[0]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body = http_body_util::BodyExt::collect(refused.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("max_stream_subscribers_per_app = 2"));
    // App b still gets its streams.
    for _ in 0..2 {
        let response = open(&keys[1]).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    // A closed stream frees its place.
    held.remove(0);
    assert_eq!(open(&keys[0]).await.unwrap().status(), StatusCode::OK);
}
