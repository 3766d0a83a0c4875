//! End-to-end tests of the real `nexus` binary: the work it does and what it records.

mod sandbox;

use std::path::Path;
use std::time::{Duration, Instant};

use sandbox::{Sandbox, contains, files_under};

#[test]
fn commands_do_their_work_and_record_the_adr_004_events() {
    let sandbox = Sandbox::new();
    let created = sandbox.run(&["workspace", "create", "demo", "--template", "rust"]);
    assert!(created.status.success());
    assert!(sandbox.home.join("workspaces/demo/Cargo.toml").is_file());
    assert!(
        sandbox
            .run(&["task", "done", "write-docs", "-w", "demo"])
            .status
            .success()
    );
    let log = std::fs::read_to_string(sandbox.home.join("workspaces/demo/tasks.done")).unwrap();
    assert_eq!(log, "write-docs\n");
    let again = sandbox.run(&["workspace", "create", "demo"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(sandbox.run(&["workspace", "destroy", "demo"]).status.success());
    assert!(!sandbox.home.join("workspaces/demo").exists());

    assert_eq!(
        sandbox.names(),
        [
            "workspace_created",
            "command_executed",
            "task_completed",
            "command_executed",
            "command_executed",
            "error_occurred",
            "workspace_destroyed",
            "command_executed",
        ]
    );
    let db = sandbox.db();
    let failed: (String, i64, String) = db
        .query_row(
            "SELECT command, success, error_category FROM events WHERE name = 'command_executed' AND success = 0",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!(failed, ("workspace create".to_owned(), 0, "already_exists".to_owned()));
    // Every run is a session, with the counters of Nexus ADR-003.
    let sessions: Vec<(i64, i64, i64, i64)> = db
        .prepare(
            "SELECT commands_executed, workspaces_created, tasks_completed, errors_encountered \
             FROM sessions ORDER BY started_at",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sessions, [(1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1), (1, 0, 0, 0)]);
}

#[test]
fn a_canary_workspace_name_never_reaches_the_store_bytes() {
    const CANARY: &str = "canary-zx81-acme-merger";
    for level in ["basic", "enhanced", "full"] {
        let sandbox = Sandbox::new();
        for args in [
            &["workspace", "create", CANARY, "--template", "node"][..],
            &["workspace", "create", CANARY],
            &["task", "done", CANARY, "-w", CANARY],
            &["task", "done", "x", "-w", &format!("{CANARY}-missing")],
            &["workspace", "destroy", CANARY],
            &["workspace", "destroy", CANARY],
        ] {
            sandbox.nexus(args).env("NEXUS_TELEMETRY", level).output().unwrap();
        }
        let mut files = 0;
        for path in files_under(&sandbox.telemetry) {
            files += 1;
            assert!(
                !contains(&std::fs::read(&path).unwrap(), CANARY),
                "level {level}: {} holds it",
                path.display()
            );
        }
        assert!(files >= 1);
        let errors: i64 = sandbox
            .db()
            .query_row("SELECT count(*) FROM events WHERE name = 'error_occurred'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(errors, 3, "level {level}");
    }
}

#[test]
fn do_not_track_leaves_no_file_and_the_command_still_works() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .nexus(&["workspace", "create", "quiet"])
        .env("DO_NOT_TRACK", "1")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert!(sandbox.home.join("workspaces/quiet").is_dir());
    assert!(!sandbox.telemetry.exists());
}

#[test]
fn corrupt_and_unwritable_stores_do_not_fail_the_command() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(&sandbox.telemetry).unwrap();
    std::fs::write(sandbox.telemetry.join("telemetry.db"), vec![0xA5; 64 * 1024]).unwrap();
    let output = sandbox.run(&["task", "done", "after-corruption"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(sandbox.names(), ["task_completed", "command_executed"]);

    let blocker = sandbox.home.with_extension("file");
    std::fs::write(&blocker, b"").unwrap();
    let output = sandbox
        .nexus(&["task", "done", "unwritable"])
        .env("NEXUS_TELEMETRY_DIR", blocker.join("telemetry"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "task unwritable done\n");
}

#[test]
fn a_locked_store_does_not_hold_up_the_command() {
    let sandbox = Sandbox::new();
    assert!(sandbox.run(&["task", "done", "first"]).status.success());
    let lock = sandbox.db();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let output = sandbox.run(&["task", "done", "while-locked"]);
    let elapsed = started.elapsed();
    lock.execute_batch("ROLLBACK").unwrap();
    assert!(output.status.success());
    // The flush thread would wait 5 s for the lock; the command waits at most its
    // 100 ms shutdown timeout.
    assert!(elapsed < Duration::from_millis(2_500), "nexus took {elapsed:?}");
}

#[test]
fn bad_names_are_refused_and_nothing_is_created() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["workspace", "create", "../escape"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid name"));
    assert!(!sandbox.home.join("escape").exists());
    assert!(!Path::new(&sandbox.home).join("workspaces/../escape").exists());
}

/// One raw HTTP/1.1 GET with exactly these headers: (status, head and body).
fn raw_get(address: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, answer)
}

#[test]
fn telemetry_view_serves_the_users_own_data_on_loopback_behind_a_token() {
    use std::io::BufRead;
    let sandbox = Sandbox::new();
    assert!(sandbox.run(&["workspace", "create", "alpha"]).status.success());
    let mut child = sandbox
        .nexus(&["telemetry", "view"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.starts_with("http://127.0.0.1:"))
        .expect("nexus telemetry view prints its address");
    let address = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let path = url
        .trim_start_matches("http://")
        .trim_start_matches(address.as_str())
        .to_owned();

    let (status, _) = raw_get(&address, &path, &[("Host", "evil.test")]);
    assert_eq!(status, 403, "a foreign Host");
    let (status, _) = raw_get(&address, "/", &[("Host", &address)]);
    assert_eq!(status, 401, "no token");
    let (status, answer) = raw_get(&address, &path, &[("Host", &address)]);
    assert_eq!(status, 303, "{answer}");
    let cookie = answer
        .lines()
        .find_map(|line| {
            line.strip_prefix("set-cookie: ")
                .or_else(|| line.strip_prefix("Set-Cookie: "))
        })
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (status, answer) = raw_get(
        &address,
        "/dashboard/api/session",
        &[("Host", &address), ("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with(r#"{"apps":["nexus"],"read_only":true}"#), "{answer}");
    let (status, answer) = raw_get(
        &address,
        "/dashboard/api/stats?app=nexus",
        &[("Host", &address), ("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""command":"workspace create""#), "{answer}");
    let _ = child.kill();
    let _ = child.wait();
}
