//! Drain gate, admin port and the operator CLI (issue 5; contract §7; §9 cases 42–45;
//! decisions row 16).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, postgres_only, spawn_app, spawn_app_with, stays_for, within, Backend, TestApp,
};

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

async fn admin(app: &TestApp, base: &str, method: &str, query: &str) -> (u16, Value) {
    let response = app
        .http
        .request(
            method.parse().unwrap(),
            format!("{base}/admin/drain{query}"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn drain_state(app: &TestApp) -> Value {
    let (status, body) = admin(app, &app.address, "GET", "").await;
    assert_eq!(status, 200);
    body
}

on_both_backends!(drain_reports_live_claims_in_the_reference_shape);
async fn drain_reports_live_claims_in_the_reference_shape(backend: Backend) {
    // §9 cases 44 and 45: 2 owned working + 1 unowned + 1 owned-but-cancelled => 2.
    let app = spawn_app(backend).await;
    for _ in 0..3 {
        app.submit("c").await;
    }
    app.claim("c", "w1").await.unwrap();
    let cancelled = app.claim("c", "w2").await.unwrap();
    app.post(
        &format!("/jobs/{}/cancel", cancelled["id"].as_str().unwrap()),
        &json!({}),
    )
    .await;
    app.submit_with("c", json!({"owner_instance_id": "pinned"}))
        .await;
    let base = app.address.clone();
    assert_eq!(
        admin(&app, &base, "GET", "").await,
        (
            200,
            json!({"draining": false, "live_claims": 2, "fleet_draining": false})
        )
    );
    assert_eq!(
        admin(&app, &base, "POST", "").await,
        (
            200,
            json!({"draining": true, "live_claims": 2, "fleet_draining": false})
        )
    );
    assert_eq!(
        admin(&app, &base, "POST", "").await.1["draining"],
        true,
        "idempotent"
    );
    assert_eq!(
        admin(&app, &base, "DELETE", "").await,
        (
            200,
            json!({"draining": false, "live_claims": 2, "fleet_draining": false})
        )
    );
    assert_eq!(admin(&app, &base, "DELETE", "").await.0, 200, "idempotent");
    let (status, body) = admin(&app, &base, "POST", "?scope=everything").await;
    assert_eq!(status, 400);
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "admin errors carry only `error`: {body}"
    );
    assert_eq!(
        app.http
            .put(app.url("/admin/drain"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

on_both_backends!(draining_pauses_claims_only);
async fn draining_pauses_claims_only(backend: Backend) {
    // §9 cases 42 and 43: nothing is touched by a paused claim; everything else goes on.
    let app = spawn_app(backend).await;
    let running = app.submit_with("c", json!({"max_retries": 3})).await;
    app.claim("c", "worker").await.unwrap();
    let waiting = app.submit("c").await;
    admin(&app, &app.address, "POST", "").await;

    assert_eq!(app.claim("c", "worker").await, None);
    let job = app.job(&waiting).await;
    assert_eq!(
        (job["attempt_count"].as_i64(), job["claim_epoch"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(job["owner_instance_id"], Value::Null);
    let queued = app.submit("c").await;
    assert_eq!(app.job(&queued).await["status"], "working");

    // Deltas, event reads and posts, release and reclaim all work while draining.
    let delta = app
        .delta(
            "worker",
            json!({"id": running, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(delta["accepted"], 1);
    assert_eq!(
        app.get(&format!(
            "/jobs/{running}/events?instance_id=worker&claim_epoch=1"
        ))
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post(&format!("/jobs/{running}/events"), &json!({"type": "t"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            &format!("/jobs/{running}/release"),
            &json!({"instance_id": "worker"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post(&format!("/jobs/{queued}/cancel"), &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(&format!("/jobs/{waiting}/reclaim"), &json!({}))
            .await
            .status(),
        200
    );

    admin(&app, &app.address, "DELETE", "").await;
    let claimed = app.claim("c", "worker").await.unwrap();
    assert_eq!(
        claimed["id"],
        running.as_str(),
        "FIFO resumes with the released job"
    );
    let claimed = app.claim("c", "worker").await.unwrap();
    assert_eq!(
        (
            claimed["attempt_count"].as_i64(),
            claimed["claim_epoch"].as_i64()
        ),
        (Some(1), Some(1))
    );
}

on_both_backends!(input_required_jobs_hold_a_drain_open);
async fn input_required_jobs_hold_a_drain_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    app.claim("c", "worker").await.unwrap();
    app.delta(
        "worker",
        json!({"id": id, "claim_epoch": 1, "status": "input_required"}),
    )
    .await;
    assert_eq!(
        admin(&app, &app.address, "POST", "").await.1["live_claims"],
        1
    );
    app.delta(
        "worker",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    assert_eq!(drain_state(&app).await["live_claims"], 0);
}

on_both_backends!(a_failed_count_leaves_the_registry_undrained);
async fn a_failed_count_leaves_the_registry_undrained(backend: Backend) {
    let app = spawn_app(backend).await;
    app.rename_table("jobs", "jobs_elsewhere").await;
    let (status, body) = admin(&app, &app.address, "POST", "").await;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to count live claims: "),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1);
    app.rename_table("jobs_elsewhere", "jobs").await;
    assert_eq!(drain_state(&app).await["draining"], false);
}

on_both_backends!(an_admin_port_takes_the_admin_routes_away_from_the_public_port);
async fn an_admin_port_takes_the_admin_routes_away_from_the_public_port(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.admin_port = Some(0)).await;
    let response = app.http.get(app.url("/admin/drain")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), "404 page not found");
    let admin_base = admin_url(&app).await;
    assert_eq!(
        admin(&app, &admin_base, "POST", "").await.1["draining"],
        true
    );
    assert_eq!(
        app.claim("c", "w").await,
        None,
        "the drain applies to the public API"
    );
    assert_eq!(
        app.http
            .get(format!("{admin_base}/jobs"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// The admin port of an app started with `admin_port = Some(0)` (a free port).
async fn admin_url(app: &TestApp) -> String {
    format!(
        "http://127.0.0.1:{}",
        app.admin_port.expect("an admin port")
    )
}

// PostgreSQL only: the fleet-wide drain is a flag several replicas share in one database (the
// embedded store serves one process and has no fleet).
postgres_only!(a_fleet_drain_reaches_every_replica);
async fn a_fleet_drain_reaches_every_replica(backend: Backend) {
    // decisions row 16
    // Given two replicas on one database, with work queued
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    b.submit("c").await;
    // When one of them drains the fleet
    let (status, body) = admin(&a, &a.address, "POST", "?scope=fleet").await;
    assert_eq!(
        (
            status,
            body["draining"].as_bool(),
            body["fleet_draining"].as_bool()
        ),
        (200, Some(true), Some(true))
    );
    // Then the other honours it within a second (its re-read of the flag)
    within(
        Duration::from_millis(1_500),
        "the other replica to honour the fleet drain",
        || async { drain_state(&b).await["draining"] == true },
    )
    .await;
    assert_eq!(b.claim("c", "w").await, None);
    // and a plain resume of one replica does not lift it.
    let (_, body) = admin(&b, &b.address, "DELETE", "").await;
    assert_eq!(body["draining"], true);
}

// PostgreSQL only: the fleet-wide drain flag is stored in PostgreSQL.
postgres_only!(a_fleet_drain_survives_a_restart);
async fn a_fleet_drain_survives_a_restart(backend: Backend) {
    // decisions row 16
    // Given a drained fleet, with work queued
    let a = spawn_app(backend).await;
    a.submit("c").await;
    admin(&a, &a.address, "POST", "?scope=fleet").await;
    // When its replica restarts
    let a = a.stop().await.start(|_| {}).await;
    // Then it reads the flag back at start (within the first re-read)
    within(
        Duration::from_millis(1_200),
        "the restarted replica to read the fleet drain back",
        || async { drain_state(&a).await["fleet_draining"] == true },
    )
    .await;
    assert_eq!(drain_state(&a).await["fleet_draining"], true);
    // and lifting it resumes dispatch.
    admin(&a, &a.address, "DELETE", "?scope=fleet").await;
    assert_eq!(drain_state(&a).await["draining"], false);
    assert!(a.claim("c", "w").await.is_some());
}

on_both_backends!(a_replica_drain_is_cleared_by_a_restart);
async fn a_replica_drain_is_cleared_by_a_restart(backend: Backend) {
    // Given a drained replica (not the fleet)
    let a = spawn_app(backend).await;
    admin(&a, &a.address, "POST", "").await;
    // When it restarts
    let a = a.stop().await.start(|_| {}).await;
    // Then it is not draining, and no re-read of the fleet flag (every second) drains it again
    stays_for(
        Duration::from_millis(1_200),
        "the restarted replica stays undrained across a fleet-flag re-read",
        || async { drain_state(&a).await["draining"] == false },
    )
    .await;
    assert_eq!(
        drain_state(&a).await["draining"],
        false,
        "a replica drain is cleared by a restart"
    );
}

/// Runs the binary's CLI without blocking the in-process registry it talks to.
async fn cli(args: Vec<String>) -> Output {
    actix_web::rt::task::spawn_blocking(move || Command::new(BINARY).args(args).output().unwrap())
        .await
        .unwrap()
}

fn args(base: &str, words: &[&str]) -> Vec<String> {
    words
        .iter()
        .map(|w| w.to_string())
        .chain(["--registry-url".to_owned(), base.to_owned()])
        .collect()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

on_both_backends!(the_cli_drains_waits_and_resumes);
async fn the_cli_drains_waits_and_resumes(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.address.clone();
    let id = app.submit("c").await;
    app.claim("c", "worker").await.unwrap();

    let output = cli(args(&base, &["registry", "status"])).await;
    assert!(output.status.success());
    assert_eq!(
        text(&output).0,
        "Registry:    active (normal dispatch)\nLive claims: 1\n"
    );

    // drain --wait blocks while the job runs and returns once it completes.
    let mut waiting = Command::new(BINARY)
        .args(args(
            &base,
            &["registry", "drain", "--wait", "--poll-interval", "1"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It keeps waiting across its polls (one a second) while the job runs.
    stays_for(
        Duration::from_millis(1_500),
        "drain --wait waits while a job runs",
        || {
            let running = waiting.try_wait().unwrap().is_none();
            async move { running }
        },
    )
    .await;
    assert!(waiting.try_wait().unwrap().is_none(), "still waiting");
    app.delta(
        "worker",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    let finished = Instant::now();
    let output = actix_web::rt::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(finished.elapsed() < Duration::from_secs(3));
    let (stdout, _) = text(&output);
    assert!(
        stdout.starts_with("Registry draining — new job claims paused\n  Live claims: 1\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("All jobs drained — safe to upgrade/restart\n"),
        "{stdout}"
    );

    let output = cli(args(&base, &["registry", "status", "--json"])).await;
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["draining"], true);
    let output = cli(args(&base, &["registry", "resume"])).await;
    assert!(output.status.success());
    assert_eq!(
        text(&output).0,
        "Registry resumed — job dispatch active\n  Live claims: 0\n"
    );
    assert_eq!(drain_state(&app).await["draining"], false);
}

on_both_backends!(the_cli_fails_clearly);
async fn the_cli_fails_clearly(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.address.clone();
    app.submit("c").await;
    app.claim("c", "worker").await.unwrap();

    // A wait that times out.
    let output = cli(args(
        &base,
        &[
            "registry",
            "drain",
            "--wait",
            "--wait-timeout",
            "1",
            "--poll-interval",
            "1",
        ],
    ))
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output).1,
        "Error: timed out after 1s with 1 live claim(s) still running\n"
    );

    // A resume during the wait aborts it.
    let mut waiting = Command::new(BINARY)
        .args(args(
            &base,
            &["registry", "drain", "--wait", "--poll-interval", "1"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The registry is still drained from the wait above: only the CLI's own first line says
    // that its drain is in and its wait has begun.
    let stdout = BufReader::new(waiting.stdout.take().unwrap());
    let (line, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for text in stdout.lines().map_while(Result::ok) {
            let _ = line.send(text);
        }
    });
    let said =
        actix_web::rt::task::spawn_blocking(move || lines.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the waiting CLI reports its drain");
    assert!(said.starts_with("Registry draining"), "{said}");
    admin(&app, &base, "DELETE", "").await;
    let output = actix_web::rt::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output)
            .1
            .starts_with("Error: registry is no longer draining"),
        "{:?}",
        text(&output)
    );
    assert_eq!(text(&output).1.lines().count(), 1);

    // Nothing listening.
    let output = cli(args("http://127.0.0.1:1", &["registry", "status"])).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output)
        .1
        .starts_with("Error: failed to connect to registry at http://127.0.0.1:1"));

    // Admin routes elsewhere: the 404 carries the hint.
    let split = spawn_app_with(backend, |config| config.admin_port = Some(0)).await;
    let output = cli(args(&split.address, &["registry", "drain"])).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output)
            .1
            .contains("hint: if the registry runs a separate admin port"),
        "{:?}",
        text(&output)
    );
}

on_both_backends!(the_cli_shows_and_reclaims_jobs);
async fn the_cli_shows_and_reclaims_jobs(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.address.clone();
    let id = app.submit_with("c", json!({"max_retries": 2})).await;
    app.claim("c", "worker").await.unwrap();
    app.delta("worker", json!({"id": id, "claim_epoch": 1, "progress_message": "half", "recv_cursor": {"": 2, "work": 1}})).await;

    let output = cli(args(&base, &["job", "status", &id])).await;
    assert!(output.status.success());
    let (stdout, _) = text(&output);
    for line in [
        format!("Job:          {id}"),
        "Capability:   c".to_owned(),
        "Status:       working".to_owned(),
        "Owner:        worker".to_owned(),
        "Claim epoch:  1".to_owned(),
        "Attempts:     1 / 2 (max_retries)".to_owned(),
        "Progress:     half".to_owned(),
        "Recv cursor:  (all)=2, work=1".to_owned(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
    }
    let output = cli(args(&base, &["job", "reclaim", &id])).await;
    assert!(output.status.success());
    assert_eq!(
        text(&output).0,
        format!("Job {id} reclaimed\n  Evicted owner: worker\n  Status:        working (claimable)\n  Claim epoch:   1 (unchanged; next claim mints the next epoch)\n")
    );
    let missing = uuid::Uuid::new_v4().to_string();
    let output = cli(args(&base, &["job", "status", &missing])).await;
    assert_eq!(
        text(&output).1,
        format!("Error: job not found: {missing}\n")
    );
    app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    let output = cli(args(&base, &["job", "reclaim", &id])).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output).1,
        format!("Error: job {id} is already in a terminal state — nothing to reclaim\n")
    );
}
