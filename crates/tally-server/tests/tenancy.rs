//! Auth and tenancy, on every backend: every route against no key, a malformed key, a
//! revoked key, and the ingest and admin keys of app A and app B; then app B's ingest
//! key sending what could reach app A's data (A's session and install ids, A's event
//! names, A's event ids, times a day ahead), checked table by table: A's raw events,
//! sessions, installs, rollups and totals are exactly what they were.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally_core::time::Period;
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::config::ServerConfig;
use tally_server::storage::{EventQuery, Role, Storage};
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::backends;

const A_SESSION: &str = "alpha-session";
const A_INSTALL: &str = "alpha-install";

fn event(app: &str, name: &str, session: &str, install: &str, ahead_ms: i64) -> Event {
    let hasher = KeyedHasher::new(&[9; 32]);
    let context = EventContext {
        app,
        app_version: "2.0.0",
        source: Source::Cli,
        session_id: session,
        install_id: install,
        hasher: &hasher,
        level: Level::Enhanced,
    };
    let mut event = Event::builder("command", name.to_owned())
        .command("build")
        .duration_ms(5)
        .success(true)
        .finish(&context)
        .unwrap()
        .unwrap();
    event.ts = event
        .ts
        .checked_add(jiff::SignedDuration::from_millis(ahead_ms))
        .unwrap();
    event
}

/// The keys of the matrix.
struct Keys {
    a_ingest: String,
    a_admin: String,
    b_ingest: String,
    b_admin: String,
    revoked: String,
}

async fn keys(store: &Arc<dyn Storage>) -> Keys {
    let make = async |app: &str, role| {
        let key = tally_server::auth::generate(app, role, "test", jiff::Timestamp::now()).unwrap();
        store.put_key(&key.stored).await.unwrap();
        key
    };
    let revoked = make("alpha", Role::Admin).await;
    store
        .revoke_key(&revoked.stored.id, jiff::Timestamp::now())
        .await
        .unwrap();
    Keys {
        a_ingest: make("alpha", Role::Ingest).await.secret,
        a_admin: make("alpha", Role::Admin).await.secret,
        b_ingest: make("beta", Role::Ingest).await.secret,
        b_admin: make("beta", Role::Admin).await.secret,
        revoked: revoked.secret,
    }
}

async fn call(
    state: &AppState,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    if path == "/v1/stream" {
        // A live stream never ends; its status is the answer.
        return (status, Value::Null);
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Everything app `app` has, table by table, as the storage layer reads it.
async fn everything_of(store: &dyn Storage, app: &str) -> String {
    let far_past = jiff::Timestamp::UNIX_EPOCH;
    let events = store
        .events(&EventQuery {
            app: app.to_owned(),
            limit: 10_000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let sessions = store.sessions(app, &Period::ALL).await.unwrap();
    let installs: Vec<_> = store
        .active_installs(&[far_past])
        .await
        .unwrap()
        .into_iter()
        .filter(|(of, _)| of == app)
        .collect();
    let rollups = store.rollups(app, &Period::ALL).await.unwrap();
    let daily_rollups = store.daily_rollups(app, &Period::ALL).await.unwrap();
    // The daily install activity: the installs of the app's whole history, and of each
    // hour from two days before now to two days after (the tests' events are near now).
    let mut windows = vec![Period::ALL];
    let now = jiff::Timestamp::now();
    for back in -48..48 {
        let to = now.checked_sub(jiff::SignedDuration::from_hours(back)).unwrap();
        windows.push(Period {
            from: to.checked_sub(jiff::SignedDuration::from_hours(1)).unwrap(),
            to,
        });
    }
    let install_days = store.active_installs_in(app, &windows).await.unwrap();
    let totals: Vec<_> = store
        .totals()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.app == app)
        .collect();
    format!(
        "events {events:?}\nsessions {sessions:?}\ninstalls {installs:?}\nrollups {rollups:?}\n\
         daily rollups {daily_rollups:?}\ninstall days {install_days:?}\ntotals {totals:?}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_every_kind_of_key() {
    for backend in backends().await {
        let name = backend.name;
        let store = Arc::clone(&backend.store);
        let keys = keys(&store).await;
        let (state, _committer) = AppState::new(Arc::clone(&store), ServerConfig::default());
        let a_event = serde_json::to_value(event("alpha", "command_executed", A_SESSION, A_INSTALL, 0)).unwrap();
        let a_batch = json!({"events": [event("alpha", "command_executed", A_SESSION, A_INSTALL, 0)]});
        let routes: Vec<(Method, String, Option<Value>, Role)> = vec![
            (Method::POST, "/v1/events".into(), Some(a_event), Role::Ingest),
            (Method::POST, "/v1/events/batch".into(), Some(a_batch), Role::Ingest),
            (
                Method::POST,
                "/v1/actions".into(),
                Some(json!({"action": "stats.get", "payload": {"app": "alpha"}})),
                Role::Admin,
            ),
            (Method::GET, "/v1/events?app=alpha".into(), None, Role::Admin),
            (Method::GET, "/v1/stats?app=alpha".into(), None, Role::Admin),
            (Method::GET, "/v1/stream".into(), None, Role::Admin),
            (Method::DELETE, format!("/v1/installs/{A_INSTALL}"), None, Role::Admin),
        ];
        let malformed = "tly_admin_nothex_short";
        for (method, path, body, role) in &routes {
            let case = |who: &str| format!("{name}: {method} {path} with {who}");
            for (who, key) in [
                ("no key", None),
                ("a malformed key", Some(malformed)),
                ("a revoked key", Some(keys.revoked.as_str())),
            ] {
                let (status, answer) = call(&state, method.clone(), path, key, body.as_ref()).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {answer}", case(who));
            }
            let (own, wrong_role) = match role {
                Role::Ingest => (&keys.a_ingest, &keys.a_admin),
                Role::Admin => (&keys.a_admin, &keys.a_ingest),
            };
            let (status, answer) = call(&state, method.clone(), path, Some(own), body.as_ref()).await;
            assert!(status.is_success(), "{}: {status} {answer}", case("A's own key"));
            let (status, answer) = call(&state, method.clone(), path, Some(wrong_role), body.as_ref()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{}: {answer}",
                case("A's key of the other role")
            );

            // B's keys: refused, or (where a route always answers for the key's own app)
            // answered about B only, leaving A's data as it was.
            let before = everything_of(store.as_ref(), "alpha").await;
            for (who, key) in [("B's ingest key", &keys.b_ingest), ("B's admin key", &keys.b_admin)] {
                let (status, answer) = call(&state, method.clone(), path, Some(key), body.as_ref()).await;
                let harmless = match (path.as_str(), status) {
                    (_, StatusCode::FORBIDDEN) => true,
                    // A batch answers per event: each of A's events is refused.
                    ("/v1/events/batch", StatusCode::OK) => {
                        answer["accepted"] == 0 && answer["rejected"][0]["code"] == "forbidden"
                    }
                    // The stream and erasure act on the key's own app only.
                    ("/v1/stream", StatusCode::OK) => true,
                    (erase, StatusCode::OK) if erase.starts_with("/v1/installs/") => answer["deleted_events"] == 0,
                    _ => false,
                };
                assert!(harmless, "{}: {status} {answer}", case(who));
            }
            assert_eq!(
                everything_of(store.as_ref(), "alpha").await,
                before,
                "{}",
                case("B's keys")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_key_cannot_reach_sessions_installs_rollups_or_totals() {
    for backend in backends().await {
        let name = backend.name;
        let store = Arc::clone(&backend.store);
        let keys = keys(&store).await;
        let (state, _committer) = AppState::new(Arc::clone(&store), ServerConfig::default());
        // A's session: two commands 1 ms apart.
        let own = vec![
            event("alpha", "command_executed", A_SESSION, A_INSTALL, 0),
            event("alpha", "command_executed", A_SESSION, A_INSTALL, 1),
        ];
        let (status, _) = call(
            &state,
            Method::POST,
            "/v1/events/batch",
            Some(&keys.a_ingest),
            Some(&json!({"events": own})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let before = everything_of(store.as_ref(), "alpha").await;
        let (_, stats_before) = call(&state, Method::GET, "/v1/stats", Some(&keys.a_admin), None).await;

        // B's ingest key: 50 commands in A's session and install, 23 hours ahead; an
        // event claiming to be A's; and one reusing the id of A's first event.
        let mut hostile: Vec<Value> = (0..50)
            .map(|i| {
                serde_json::to_value(event(
                    "beta",
                    "command_executed",
                    A_SESSION,
                    A_INSTALL,
                    23 * 3_600_000 + i,
                ))
                .unwrap()
            })
            .collect();
        hostile.push(serde_json::to_value(event("alpha", "command_executed", A_SESSION, A_INSTALL, 5)).unwrap());
        let mut same_id = event("beta", "command_executed", A_SESSION, A_INSTALL, 0);
        same_id.id = own[0].id;
        same_id.ts = own[0].ts;
        hostile.push(serde_json::to_value(same_id).unwrap());
        let (status, answer) = call(
            &state,
            Method::POST,
            "/v1/events/batch",
            Some(&keys.b_ingest),
            Some(&json!({"events": hostile})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert_eq!(answer["rejected"][0]["code"], "forbidden", "{name}: {answer}");
        assert_eq!(answer["accepted"], 50, "{name}: {answer}");

        assert_eq!(
            everything_of(store.as_ref(), "alpha").await,
            before,
            "{name}: B's writes changed A's tables"
        );
        let (_, stats_after) = call(&state, Method::GET, "/v1/stats", Some(&keys.a_admin), None).await;
        for part in [
            "totals",
            "sessions",
            "active_installs",
            "active_installs_windows",
            "series",
        ] {
            assert_eq!(stats_after[part], stats_before[part], "{name}: A's {part} changed");
        }
        // Milliseconds, not the 23 hours B's events would have stretched it to.
        let average = stats_after["sessions"]["avg_duration_ms"].as_f64().unwrap();
        assert!(average < 1_000.0, "{name}: {stats_after}");
        // B sees its own session, not A's.
        let now = jiff::Timestamp::now();
        let window = format!(
            "/v1/stats?from={}&to={}",
            tally_core::time::format(now.checked_sub(jiff::SignedDuration::from_hours(24)).unwrap()),
            tally_core::time::format(now.checked_add(jiff::SignedDuration::from_hours(48)).unwrap())
        );
        let (_, b_stats) = call(&state, Method::GET, &window, Some(&keys.b_admin), None).await;
        assert_eq!(b_stats["sessions"]["count"], 1, "{name}: {b_stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_are_rekeyed_from_every_earlier_schema() {
    use tally_server::storage::postgres::PostgresStorage;
    for version in 0..PostgresStorage::SCHEMA_VERSION {
        let Some(database) = crate::support::postgres::TestDatabase::create().await else {
            return;
        };
        PostgresStorage::migrate_to(database.url(), version).await.unwrap();
        // Sessions exist from version 2 on: one of A's, as that collector stored it.
        if version >= 2 {
            let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "INSERT INTO sessions (session_id, app, install_id, started_at, ended_at, duration_ms, \
                     commands_executed) VALUES ('{A_SESSION}', 'alpha', '{A_INSTALL}', now(), now() + interval '1 ms', 1, 2)"
                ))
                .await
                .unwrap();
        }
        let store = database.open().await;
        let before = store.sessions("alpha", &Period::ALL).await.unwrap();
        assert_eq!(before.count, u64::from(version >= 2), "from version {version}");
        // B's event in A's session and install makes B's own row.
        store
            .insert(vec![event(
                "beta",
                "command_executed",
                A_SESSION,
                A_INSTALL,
                23 * 3_600_000,
            )])
            .await
            .unwrap();
        assert_eq!(
            store.sessions("alpha", &Period::ALL).await.unwrap(),
            before,
            "from version {version}"
        );
        assert_eq!(store.sessions("beta", &Period::ALL).await.unwrap().count, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_answers_its_previous_period_down_to_year_zero_on_every_backend() {
    for backend in backends().await {
        let name = backend.name;
        let store = Arc::clone(&backend.store);
        let keys = keys(&store).await;
        let (state, _committer) = AppState::new(Arc::clone(&store), ServerConfig::default());
        let batch = json!({"events": [event("alpha", "command_executed", A_SESSION, A_INSTALL, 0)]});
        let (status, _) = call(
            &state,
            Method::POST,
            "/v1/events/batch",
            Some(&keys.a_ingest),
            Some(&batch),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // From the earliest time a request can name: the previous period would start
        // before year 0, and is cut there.
        let path = "/v1/stats?from=0000-01-01T00:00:00Z&to=0090-01-01T00:00:00Z&bucket=week";
        let (status, stats) = call(&state, Method::GET, path, Some(&keys.a_admin), None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {stats}");
        assert_eq!(stats["previous"]["from"], "0000-01-01T00:00:00.000Z", "{name}: {stats}");
        assert_eq!(stats["previous"]["totals"]["events"], 0, "{name}: {stats}");
        assert_eq!(
            stats["active_installs_windows"]["30d"],
            json!({"current": 0, "previous": 0}),
            "{name}"
        );
        // And the 90 years up to now hold the event, the 90 before it nothing.
        let now = jiff::Timestamp::now();
        let path = format!(
            "/v1/stats?from={}&to={}&bucket=week",
            tally_core::time::format(
                now.checked_sub(jiff::SignedDuration::from_hours(90 * 365 * 24))
                    .unwrap()
            ),
            tally_core::time::format(now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap())
        );
        let (status, stats) = call(&state, Method::GET, &path, Some(&keys.a_admin), None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {stats}");
        assert_eq!(
            (&stats["totals"]["events"], &stats["previous"]["totals"]["events"]),
            (&json!(1), &json!(0)),
            "{name}: {stats}"
        );
        assert_eq!(stats["active_installs_windows"]["30d"]["current"], 1, "{name}: {stats}");
    }
}
