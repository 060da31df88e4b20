//! The server as a whole: health, routing fallbacks, body limits, and the binary's start-up,
//! failure and shutdown behaviour (issue 2 items 2 and 5).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    database_url, embedded_only, on_both_backends, parked, spawn_app, spawn_app_with, start_app,
    unavailable, within, Backend, TestDatabase,
};

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

on_both_backends!(health_answers_like_the_reference);
async fn health_answers_like_the_reference(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], "mcp-mesh-registry");
    assert!(body["uptime_seconds"].is_u64());
    assert!(body["timestamp"].is_string());
    // HEAD: no body, the same facts in the reference's headers.
    let head = app.http.head(app.url("/health")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let header = |name: &str| head.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("x-health-status"), "healthy");
    assert_eq!(
        header("x-service-version"),
        body["version"].as_str().unwrap()
    );
    assert!(header("x-uptime-seconds").parse::<u64>().is_ok());
    assert_eq!(header("content-type"), "application/json");
    assert!(head.bytes().await.unwrap().is_empty());
}

on_both_backends!(unknown_routes_and_methods_are_gin_404s);
async fn unknown_routes_and_methods_are_gin_404s(backend: Backend) {
    let app = spawn_app(backend).await;
    for (method, path) in [
        ("GET", "/nope"),
        ("PUT", "/jobs"),
        ("DELETE", "/jobs/claim"),
        ("GET", "/jobs/x/unknown"),
    ] {
        let response = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(response.text().await.unwrap(), "404 page not found");
    }
    // Routing is by method and path: GET /jobs/claim is a read of a job called "claim".
    let response = app.get("/jobs/claim").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "job not found: claim"
    );
}

on_both_backends!(a_trailing_slash_redirects);
async fn a_trailing_slash_redirects(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/jobs/?limit=5")).send().await.unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "/jobs?limit=5");
    let response = client.post(app.url("/jobs/claim/")).send().await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], "/jobs/claim");
}

on_both_backends!(oversized_bodies_are_refused_with_413);
async fn oversized_bodies_are_refused_with_413(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.max_body_bytes = 2048).await;
    let big = "x".repeat(4096);
    for path in ["/jobs", "/jobs/batch", "/jobs/claim"] {
        let response = app
            .post(path, &json!({"capability": "c", "submitted_by": "s", "submitted_payload": {"blob": big}}))
            .await;
        assert_eq!(response.status(), 413, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"],
            "request body exceeds the limit of 2048 bytes"
        );
    }
    // Just under the cap is fine.
    let small = "x".repeat(1500);
    let response = app
        .post(
            "/jobs",
            &json!({"capability": "c", "submitted_by": "s", "submitted_payload": {"blob": small}}),
        )
        .await;
    assert_eq!(response.status(), 201);
}

// Embedded only: the other spelling of an embedded DATABASE_URL.
embedded_only!(a_sqlite_url_names_the_same_file_as_its_plain_path);
async fn a_sqlite_url_names_the_same_file_as_its_plain_path(backend: Backend) {
    let database = Arc::new(TestDatabase::create(backend).await);
    let url = database.sqlite_url();
    assert!(url.starts_with("sqlite:///"), "{url}");
    let app = start_app(database, |config| config.database_url = url).await;
    let id = app.submit("c").await;
    // The test's own connection opens the plain path, and never creates the file.
    let rows = app.job_rows().await;
    assert_eq!(
        rows.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    // Restarted on the plain path, the registry finds the job.
    let app = app.stop().await.start(|_| {}).await;
    assert!(!app.database_url().starts_with("sqlite:"));
    assert_eq!(app.job(&id).await["capability"], "c");
}

// Embedded only: the file's lock. A registry restarted in the same process right after stop()
// must find the file unlocked, even while the process spawns children (each holds a copy of
// every descriptor, the lock's too, from its fork to its exec).
embedded_only!(a_restart_right_after_stop_finds_the_file_unlocked);
async fn a_restart_right_after_stop_finds_the_file_unlocked(backend: Backend) {
    // Given a process that keeps spawning children
    let spawning = Arc::new(AtomicBool::new(true));
    let spawner = std::thread::spawn({
        let spawning = spawning.clone();
        move || {
            while spawning.load(Ordering::Relaxed) {
                let _ = Command::new("true").status();
            }
        }
    });
    // When a registry on an embedded file is stopped and started again, many times
    let mut app = start_app(Arc::new(TestDatabase::create(backend).await), |_| {}).await;
    let id = app.submit("c").await;
    for _ in 0..100 {
        app = app.stop().await.start(|_| {}).await;
    }
    // Then every start found the file free (start_app fails on a locked file), and the data
    spawning.store(false, Ordering::Relaxed);
    spawner.join().unwrap();
    assert_eq!(app.job(&id).await["capability"], "c");
}

#[test]
fn help_documents_every_flag_and_version_prints() {
    let help = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--host",
        "-H",
        "--port",
        "-p",
        "--database-url",
        "--db-pool-size",
        "--http-workers",
        "--max-body-bytes",
        "--max-long-polls",
        "--cancel-event-grace-ms",
        "--job-stale-timeout",
        "--shutdown-timeout",
        "--log-level",
        "--debug-mode",
        "--version",
        "DATABASE_URL",
        "MCP_MESH_LOG_LEVEL",
        "serve",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    for flag in ["--version", "-v"] {
        let version = Command::new(BINARY).arg(flag).output().unwrap();
        assert!(version.status.success());
        assert_eq!(
            String::from_utf8(version.stdout).unwrap().trim(),
            format!("mesh-registry {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Runs the binary to completion with a time limit; returns (exit code, stderr).
fn run_to_exit(command: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (exit, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || exit.send(child.wait_with_output()));
    match exited.recv_timeout(limit) {
        Ok(output) => {
            let output = output.unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.code(), stderr)
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the registry neither started nor exited within {limit:?}");
        }
    }
}

// A missing DATABASE_URL is no error any more: it is the embedded file in the working directory
// (issue 9; `embedded::with_no_database_configured_it_serves_from_a_file_and_survives_a_kill`).
#[test]
fn an_unreachable_database_is_one_clear_error_not_a_hang() {
    // A server that answers, without that database (when the machine has PostgreSQL at all).
    let missing_database =
        (!unavailable(Backend::Postgres)).then(|| database_url("mesh_registry_no_such_db"));
    let urls = [
        "postgres://postgres@127.0.0.1:1/mesh?sslmode=disable",
        "mysql://nope",
        // Embedded files that cannot be created: under a device, in both spellings.
        "/dev/null/registry.db",
        "sqlite:///dev/null/registry.db",
    ];
    for url in urls.map(String::from).into_iter().chain(missing_database) {
        let (code, stderr) = run_to_exit(
            Command::new(BINARY)
                .env("DATABASE_URL", &url)
                .args(["--port", "0"]),
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(1), "{url}: {stderr}");
        let errors: Vec<_> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

on_both_backends!(sigterm_finishes_in_flight_requests_then_exits_zero);
async fn sigterm_finishes_in_flight_requests_then_exits_zero(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let mut child = Command::new(BINARY)
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--database-url",
            &database.url(),
        ])
        .env("MCP_MESH_LOG_LEVEL", "INFO")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let log_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if let Some((_, port)) = line.split_once("listening on 127.0.0.1:") {
                let _ = port_tx.send(port.trim().parse::<u16>().unwrap());
            }
            lines.push(line);
        }
        lines
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the registry started");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/jobs"))
        .json(&json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    // A long-poll is in flight when SIGTERM arrives: it is answered (not cut), promptly.
    let started = Instant::now();
    let in_flight = parked(http.get(format!("{base}/jobs/{id}/events?wait=30"))).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let response = in_flight.response().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["events"], json!([]));
    assert!(started.elapsed() < Duration::from_secs(10));

    within(Duration::from_secs(15), "the exit after SIGTERM", || {
        let exited = child.try_wait().unwrap().is_some();
        async move { exited }
    })
    .await;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log = log_reader.join().unwrap().join("\n");
    assert!(log.contains("received SIGTERM"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

on_both_backends!(the_root_answers_like_the_reference);
async fn the_root_answers_like_the_reference(backend: Backend) {
    let app = spawn_app(backend).await;
    let root: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(root["service"], "mcp-mesh-registry");
    assert_eq!(root["status"], "running");
    assert_eq!(
        root["endpoints"],
        json!(["/health", "/heartbeat", "/agents"])
    );
}
