//! Schema reconciliation and version skew (issue 6; decisions row 17): migrations are additive,
//! a database ahead of the binary is served without dropping anything, `migrate prune --yes` is
//! the only destructive path, and replicas starting together migrate once.
//!
//! The reconciliation tests are PostgreSQL only: they shape the schema with PostgreSQL DDL and
//! catalogs, and start several replicas on one database. The additive-only scan covers both
//! backends' migrations, and newer SDK bodies are a wire matter, tested on both backends.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mesh_registry::store::Store;
use serde_json::{json, Value};

use crate::helpers::{
    connect, on_both_backends, postgres_only, spawn_app, start_app, within, Backend, KilledOnDrop,
    TestApp, TestDatabase,
};

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

#[test]
fn migrations_are_additive_only() {
    // Anywhere in a statement, and at the start of one.
    let forbidden_anywhere = ["DROP ", "RENAME", "SET NOT NULL", "TRUNCATE"];
    let forbidden_verbs = ["DELETE", "UPDATE"];
    let mut checked = 0;
    let backends = ["postgres", "embedded"];
    let directories = backends
        .iter()
        .map(|backend| format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR")));
    for path in directories.flat_map(|d| std::fs::read_dir(d).unwrap()) {
        let path = path.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        checked += 1;
        let sql = std::fs::read_to_string(&path).unwrap();
        // Comments say why; only statements count.
        let statements: String = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase();
        for statement in statements.split(';').map(str::trim) {
            for word in forbidden_anywhere {
                assert!(
                    !statement.contains(word),
                    "{}: {word:?} in {statement:?}",
                    path.display()
                );
            }
            for verb in forbidden_verbs {
                assert!(
                    !statement.starts_with(verb),
                    "{}: {statement:?}",
                    path.display()
                );
            }
            if statement.contains("ALTER TABLE")
                && statement.contains("ADD COLUMN")
                && statement.contains("NOT NULL")
            {
                assert!(
                    statement.contains("DEFAULT"),
                    "{}: an added NOT NULL column needs a default",
                    path.display()
                );
            }
        }
    }
    assert!(checked >= 4, "found the migrations");
}

fn store(database: &TestDatabase) -> Store {
    Store::open(&database.url(), &Default::default()).unwrap()
}

postgres_only!(data_written_at_the_first_version_survives_the_upgrade);
async fn data_written_at_the_first_version_survives_the_upgrade(backend: Backend) {
    let database = Arc::new(TestDatabase::create_empty(backend).await);
    let applied = store(&database).migrate_up(Some(1)).await.unwrap();
    assert_eq!(applied, vec!["V1__jobs_and_events".to_owned()]);
    let db = connect(database.pg_name()).await;
    let id = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO jobs (job_id, capability, submitted_by, submitted_payload, status, owner_instance_id, \
         claim_epoch, attempt_count, lease_expires_at, event_seq) \
         VALUES ($1, 'old', 'v1', '{\"kept\": true}', 'working', 'worker', 1, 1, now() + interval '1 hour', 1)",
        &[&id],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO job_events (job_id, seq, type, payload) VALUES ($1, 1, 'note', '\"hi\"')",
        &[&id],
    )
    .await
    .unwrap();

    let app = start_app(database, |_| {}).await;
    let job = app.job(&id.to_string()).await;
    assert_eq!(job["submitted_payload"], json!({"kept": true}));
    assert_eq!(job["owner_instance_id"], "worker");
    let events: Value = app
        .get(&format!("/jobs/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][0]["payload"], "hi");
    let done = app
        .delta(
            "worker",
            json!({"id": id, "claim_epoch": 1, "status": "completed"}),
        )
        .await;
    assert_eq!(done["accepted"], 1);
    assert_eq!(
        app.post(&format!("/jobs/{id}/events"), &json!({"type": "late"}))
            .await
            .status(),
        409
    );
}

/// What a newer registry would have added: a column with data, an index, a table, and the
/// history row of a migration this binary does not know.
async fn apply_future_migration(app: &TestApp) {
    app.pg()
        .batch_execute(
            "ALTER TABLE jobs ADD COLUMN future_note text DEFAULT 'from the future'; \
             CREATE INDEX jobs_future_idx ON jobs (future_note); \
             CREATE TABLE future_things (id integer PRIMARY KEY); \
             INSERT INTO future_things VALUES (7); \
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
               VALUES (99, 'future_note', now()::text, '42')",
        )
        .await
        .unwrap();
}

async fn full_cycle(app: &TestApp) -> String {
    let id = app.submit("skew").await;
    let claimed = app.claim("skew", "worker").await.unwrap();
    assert_eq!(claimed["id"], id.as_str());
    app.delta(
        "worker",
        json!({"id": id, "claim_epoch": claimed["claim_epoch"], "progress": 0.5}),
    )
    .await;
    let done = app
        .delta("worker", json!({"id": id, "claim_epoch": claimed["claim_epoch"], "status": "completed", "result": {"ok": 1}}))
        .await;
    assert_eq!(done["accepted"], 1);
    id
}

async fn future_notes(app: &TestApp) -> Vec<Option<String>> {
    app.pg()
        .query("SELECT future_note FROM jobs ORDER BY submitted_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

postgres_only!(a_database_ahead_of_the_binary_is_served_and_kept);
async fn a_database_ahead_of_the_binary_is_served_and_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = full_cycle(&app).await;
    apply_future_migration(&app).await;
    app.pg()
        .execute(
            "UPDATE jobs SET future_note = 'set by the newer binary'",
            &[],
        )
        .await
        .unwrap();

    // The current binary starts on it, serves a full job cycle, and drops nothing.
    let app = app.stop().await.start(|_| {}).await;
    let after = full_cycle(&app).await;
    assert_eq!(app.job(&after).await["status"], "completed");
    assert_eq!(
        future_notes(&app).await,
        vec![
            Some("set by the newer binary".into()),
            Some("from the future".into())
        ]
    );
    let output = Command::new(BINARY)
        .args([
            "migrate",
            "status",
            "--database-url",
            &database_url_of(&app).await,
        ])
        .output()
        .unwrap();
    let status = String::from_utf8(output.stdout).unwrap();
    assert!(
        status.contains("Unknown to this binary: V99__future_note"),
        "{status}"
    );
    assert!(status.contains("ahead of this binary"), "{status}");
    assert!(
        status.contains("not used by this binary: column jobs.future_note (text)"),
        "{status}"
    );

    // Restarted again (the re-upgrade): still intact.
    let app = app.stop().await.start(|_| {}).await;
    assert_eq!(future_notes(&app).await.len(), 2);
    let kept: i64 = app
        .pg()
        .query_one("SELECT count(*) FROM future_things", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    assert_eq!(app.job(&before).await["status"], "completed");
}

async fn database_url_of(app: &TestApp) -> String {
    let name: String = app
        .pg()
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    crate::helpers::database_url(&name)
}

postgres_only!(prune_drops_only_with_yes);
async fn prune_drops_only_with_yes(backend: Backend) {
    let app = spawn_app(backend).await;
    apply_future_migration(&app).await;
    let url = database_url_of(&app).await;
    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(["migrate"])
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = run(&["prune"]);
    for piece in [
        "index jobs_future_idx on jobs",
        "column jobs.future_note (text)",
        "table future_things",
        "migration history row V99__future_note",
    ] {
        assert!(listed.contains(piece), "{listed}");
    }
    assert!(listed.contains("Nothing was dropped"));
    assert_eq!(
        future_notes(&app).await.len(),
        0,
        "(no jobs yet, but the column is still there)"
    );

    let dropped = run(&["prune", "--yes"]);
    assert!(
        dropped.contains("Dropped column jobs.future_note (text)"),
        "{dropped}"
    );
    let remaining: i64 = app
        .pg()
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'future_note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(remaining, 0);
    let history: i64 = app
        .pg()
        .query_one(
            "SELECT count(*) FROM refinery_schema_history WHERE version = 99",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 0, "forgotten, so a re-upgrade applies it again");
    assert!(run(&["status"]).contains("up to date"));
    // The registry keeps working after the prune.
    full_cycle(&app).await;
}

postgres_only!(a_missing_piece_stops_the_start_with_its_name);
async fn a_missing_piece_stops_the_start_with_its_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = database_url_of(&app).await;
    app.pg()
        .batch_execute("DROP INDEX jobs_claimable_idx; ALTER TABLE jobs DROP COLUMN event_seq")
        .await
        .unwrap();
    let output = Command::new(BINARY)
        .args(["--port", "0", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("column jobs.event_seq (bigint)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("index jobs_claimable_idx on jobs"),
        "{stderr}"
    );
    assert!(stderr.contains("mesh-registry migrate up"), "{stderr}");
}

postgres_only!(replicas_starting_together_migrate_once);
async fn replicas_starting_together_migrate_once(backend: Backend) {
    let database = TestDatabase::create_empty(backend).await;
    let mut replicas = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ports.push(port);
    }
    for port in &ports {
        replicas.push(KilledOnDrop(
            Command::new(BINARY)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--database-url",
                    &database.url(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    let http = reqwest::Client::new();
    within(
        Duration::from_secs(30),
        "every replica to come up",
        || async {
            for port in &ports {
                let Ok(response) = http
                    .get(format!("http://127.0.0.1:{port}/health"))
                    .send()
                    .await
                else {
                    return false;
                };
                assert_eq!(response.status(), 200);
            }
            true
        },
    )
    .await;
    for KilledOnDrop(replica) in &mut replicas {
        assert!(
            replica.try_wait().unwrap().is_none(),
            "every replica is still running"
        );
    }
    let db = connect(database.pg_name()).await;
    let rows: Vec<(i32, i64)> = db
        .query("SELECT version, count(*) FROM refinery_schema_history GROUP BY version ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut shipped: Vec<(i32, i64)> = std::fs::read_dir(format!(
        "{}/migrations/postgres",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .map(|entry| entry.unwrap().file_name().into_string().unwrap())
    .filter_map(|name| Some((name.strip_prefix('V')?.split_once("__")?.0.parse().ok()?, 1)))
    .collect();
    shipped.sort();
    assert_eq!(rows, shipped, "each shipped migration applied once");
}

on_both_backends!(bodies_from_a_newer_sdk_are_accepted_on_every_endpoint);
async fn bodies_from_a_newer_sdk_are_accepted_on_every_endpoint(backend: Backend) {
    // Version skew: unknown fields are ignored everywhere.
    let app = spawn_app(backend).await;
    let extra = json!({"from_the_future": {"nested": [1, 2]}, "priority": 3});
    let with = |body: Value| {
        let mut body = body;
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let heartbeat = app
        .post("/heartbeat", &with(json!({"agent_id": "newer", "tools": [with(json!({"function_name": "f", "capability": "c", "dependencies": [with(json!({"capability": "c"}))]}))]})))
        .await;
    assert_eq!(heartbeat.status(), 200);
    let created: Value = app
        .post(
            "/jobs",
            &with(json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}})),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let claimed: Value = app
        .post(
            "/jobs/claim",
            &with(json!({"capability": "c", "instance_id": "newer"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claimed["claimed"][0]["id"], id.as_str());
    let batch: Value = app
        .post("/jobs/batch", &with(json!({"instance_id": "newer", "deltas": [with(json!({"id": id, "claim_epoch": 1, "progress": 0.1}))]})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["accepted"], 1);
    assert_eq!(
        app.post(&format!("/jobs/{id}/events"), &with(json!({"type": "t"})))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            &format!("/jobs/{id}/release"),
            &with(json!({"instance_id": "newer"}))
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post(&format!("/jobs/{id}/cancel"), &with(json!({"reason": "r"})))
            .await
            .status(),
        200
    );
    // Epoch-less deltas from an older SDK take the owner-only path; identity-less reads are anonymous.
    let old = app.submit("c").await;
    app.claim("c", "older").await.unwrap();
    assert_eq!(
        app.delta("older", json!({"id": old, "progress": 0.2}))
            .await["accepted"],
        1
    );
    assert_eq!(app.get(&format!("/jobs/{old}/events")).await.status(), 200);
}
