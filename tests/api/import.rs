//! `mesh-registry migrate import-reference` (issue 15): the Go registry's jobs and events, in
//! the tables its real binary creates in `public`, copied into ours; refused while it still
//! holds live claims unless forced; idempotent; its tables never written.

use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::{
    connect, embedded_only, postgres_only, start_app, Backend, RegistryProcess, TestDatabase,
};
use crate::namespace::{dump_public, run_the_reference, working_directory, GoRegistry};

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

const COMPLETED: &str = "0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c01";
const LIVE: &str = "0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c02";

fn import(url: &str, force: bool) -> Output {
    let mut command = Command::new(BINARY);
    command.args(["migrate", "import-reference", "--database-url", url]);
    if force {
        command.arg("--force");
    }
    command.output().expect("run migrate import-reference")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Rows as the Go registry writes them: a job that completed after two events, and one that
/// an owner is working on under a lease that runs for another hour.
const REFERENCE_ROWS: &str = "
INSERT INTO public.jobs (job_id, capability, owner_instance_id, claim_epoch, status, progress,
    progress_message, result, error, submitted_payload, attempt_count, max_retries,
    max_duration, lease_expires_at, last_heartbeat_at, submitted_at, submitted_by)
VALUES
  ('0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c01', 'render', 'w-old', 2, 'completed', 1.0, 'done',
   '{\"pages\": 3}', NULL, '{\"doc\": \"a\"}', 2, 3, 60, NULL, now() - interval '1 minute',
   now() - interval '10 minutes', 'alice'),
  ('0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c02', 'render', 'w-live', 1, 'working', 0.5, 'half',
   NULL, NULL, '{\"doc\": \"b\"}', 1, 1, NULL, now() + interval '1 hour', now(),
   now() - interval '5 minutes', 'bob');
INSERT INTO public.job_events (seq, job_id, type, payload, trace_context, posted_by, created_at)
VALUES
  (1, '0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c01', 'note', '{\"k\": 1}', NULL, 'alice', now() - interval '9 minutes'),
  (2, '0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c01', 'note', '[2]', '{\"traceparent\": \"00-x\"}', NULL, now() - interval '8 minutes'),
  (1, '0b7c3a52-7f7e-4d4c-9a4f-2f3e6f0b1c02', 'note', 'null', NULL, NULL, now() - interval '4 minutes');
";

postgres_only!(the_go_registrys_jobs_are_imported_once_and_its_tables_stay_as_they_were);
async fn the_go_registrys_jobs_are_imported_once_and_its_tables_stay_as_they_were(
    backend: Backend,
) {
    let database = Arc::new(TestDatabase::create_empty(backend).await);
    let url = database.url();
    let directory = working_directory();
    // The real Go registry creates its tables and queues one job ("go") through its API.
    run_the_reference(&directory, Some(&url)).await;
    let db = connect(database.pg_name()).await;
    db.batch_execute(REFERENCE_ROWS)
        .await
        .expect("reference rows");
    let before = dump_public(&url);

    // A live claim: refused, nothing imported, and the message names the claim.
    let refused = import(&url, false);
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("1 live claim") && stderr.contains(LIVE) && stderr.contains("w-live"),
        "{stderr}"
    );
    assert!(stderr.contains("meshctl registry drain --wait"), "{stderr}");
    let ours: i64 = db
        .query_one("SELECT count(*) FROM mesh_registry.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ours, 0);

    // Forced: every job and event comes over.
    let forced = import(&url, true);
    let stdout = text(&forced.stdout);
    assert!(forced.status.success(), "{forced:?}");
    assert!(
        stdout.contains("jobs:   3 (1 completed, 2 working)"),
        "{stdout}"
    );
    assert!(stdout.contains("events: 3"), "{stdout}");
    assert!(
        stdout.contains(&format!("carried over (--force): {LIVE} owned by w-live")),
        "{stdout}"
    );

    // A second run imports nothing twice.
    let again = import(&url, true);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{again:?}");
    assert!(stdout.contains("jobs:   0\n"), "{stdout}");
    assert!(stdout.contains("events: 0"), "{stdout}");
    assert!(stdout.contains("skipped: 3 job(s)"), "{stdout}");
    assert_eq!(
        dump_public(&url),
        before,
        "the Go registry's tables changed"
    );

    // Our registry serves the imported history and carries on from it.
    let app = start_app(database.clone(), |_| {}).await;
    let completed = app.job(COMPLETED).await;
    for (field, expected) in [
        ("status", json!("completed")),
        ("capability", json!("render")),
        ("result", json!({"pages": 3})),
        ("attempt_count", json!(2)),
        ("max_retries", json!(3)),
        ("progress", json!(1.0)),
        ("progress_message", json!("done")),
        ("submitted_by", json!("alice")),
    ] {
        assert_eq!(completed[field], expected, "{field}: {completed}");
    }
    let events: Value = app
        .get(&format!("/jobs/{COMPLETED}/events"))
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<(Value, Value, Value)> = events["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{events}"))
        .iter()
        .map(|e| (e["seq"].clone(), e["type"].clone(), e["payload"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (json!(1), json!("note"), json!({"k": 1})),
            (json!(2), json!("note"), json!([2])),
        ]
    );
    // The next event of the carried-over job follows the imported one.
    let posted = app
        .post(
            &format!("/jobs/{LIVE}/events"),
            &json!({"type": "note", "payload": {"after": "switch"}}),
        )
        .await;
    assert_eq!(posted.status(), 200);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["seq"], 2, "{posted}");
    // The job the Go registry left queued is claimable here.
    let claimed = app.claim("go", "worker").await.expect("the queued job");
    assert_eq!(claimed["claim_epoch"], 1, "{claimed}");
    assert_eq!(
        dump_public(&url),
        before,
        "the Go registry's tables changed"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

postgres_only!(without_the_go_registrys_tables_there_is_nothing_to_import);
async fn without_the_go_registrys_tables_there_is_nothing_to_import(backend: Backend) {
    let database = TestDatabase::create_empty(backend).await;
    let output = import(&database.url(), false);
    assert!(!output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "no tables of the Go registry to import: looked for its tables (jobs, job_events in \
             schema public)"
        ),
        "{stderr}"
    );
}

embedded_only!(the_go_registrys_sqlite_file_is_imported_once_and_left_as_it_was);
async fn the_go_registrys_sqlite_file_is_imported_once_and_left_as_it_was(_backend: Backend) {
    let directory = working_directory();
    // The real Go registry, on its default file in `directory`: one job completed with events,
    // one held by a live owner, one queued.
    let go = GoRegistry::start(&directory, None).await;
    let submit = |capability: &'static str, by: &'static str| {
        let go = &go;
        async move {
            let body = json!({"capability": capability, "submitted_by": by,
                              "submitted_payload": {"by": by}, "max_retries": 3});
            let (status, job) = go.send("POST", "/jobs", Some(body)).await;
            assert_eq!(status, 201, "{job}");
            job["id"].as_str().unwrap().to_owned()
        }
    };
    let claim = |capability: &'static str, owner: &'static str| {
        let go = &go;
        async move {
            let body = json!({"capability": capability, "instance_id": owner});
            let (status, claimed) = go.send("POST", "/jobs/claim", Some(body)).await;
            assert_eq!(status, 200, "{claimed}");
            claimed["claimed"][0]["id"].as_str().unwrap().to_owned()
        }
    };
    let completed = submit("render", "alice").await;
    assert_eq!(claim("render", "w-old").await, completed);
    for body in [
        json!({"type": "note", "payload": {"k": 1}}),
        json!({"type": "note", "payload": [2], "trace_context": {"traceparent": "00-x"}}),
    ] {
        let (status, posted) = go
            .send("POST", &format!("/jobs/{completed}/events"), Some(body))
            .await;
        assert_eq!(status, 200, "{posted}");
    }
    for delta in [
        json!({"id": completed, "claim_epoch": 1, "progress": 0.5, "progress_message": "half",
               "recv_cursor": {"c": 1}}),
        json!({"id": completed, "claim_epoch": 1, "status": "completed", "progress": 1.0,
               "result": {"pages": 3}}),
    ] {
        let body = json!({"instance_id": "w-old", "deltas": [delta]});
        let (status, answer) = go.send("POST", "/jobs/batch", Some(body)).await;
        assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
    }
    let live = submit("draw", "bob").await;
    assert_eq!(claim("draw", "w-live").await, live);
    let queued = submit("queued", "carol").await;
    let mut answered = Vec::new();
    for id in [&completed, &live, &queued] {
        answered.push(go.send("GET", &format!("/jobs/{id}"), None).await.1);
    }
    let events = go
        .send("GET", &format!("/jobs/{completed}/events"), None)
        .await
        .1;
    go.stop();
    let files = || -> Vec<(String, Vec<u8>)> {
        ["mcp_mesh_registry.db", "mcp_mesh_registry.db-wal"]
            .iter()
            .filter_map(|name| Some((name.to_string(), std::fs::read(directory.join(name)).ok()?)))
            .collect()
    };
    let before = files();
    assert!(!before.is_empty(), "the Go registry's file");

    let import = |force: bool| {
        let mut command = Command::new(BINARY);
        command
            .current_dir(&directory)
            .env_remove("DATABASE_URL")
            .args(["migrate", "import-reference"]);
        if force {
            command.arg("--force");
        }
        command.output().expect("run migrate import-reference")
    };
    let refused = import(false);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr.contains("1 live claim") && stderr.contains(&live) && stderr.contains("w-live"),
        "{stderr}"
    );
    let forced = import(true);
    let stdout = text(&forced.stdout);
    assert!(forced.status.success(), "{forced:?}");
    assert!(
        stdout.contains("jobs:   3 (1 completed, 2 working)"),
        "{stdout}"
    );
    assert!(stdout.contains("events: 2"), "{stdout}");
    let again = import(true);
    let stdout = text(&again.stdout);
    assert!(
        stdout.contains("jobs:   0\n") && stdout.contains("skipped: 3 job(s)"),
        "{stdout}"
    );
    assert!(files() == before, "the Go registry's file changed");

    // Our registry, on its own default file there, answers as the Go registry did.
    let ours = RegistryProcess::start(&directory, &[]);
    for go_job in &answered {
        let id = go_job["id"].as_str().unwrap();
        let (status, our_job) = ours.send("GET", &format!("/jobs/{id}"), None).await;
        assert_eq!(status, 200, "{our_job}");
        for (field, value) in go_job.as_object().unwrap() {
            // Go prints a whole float as an integer (`1` for 1.0); the number is the same.
            let same = match (value.as_f64(), our_job[field].as_f64()) {
                (Some(go), Some(ours)) => go == ours,
                _ => &our_job[field] == value,
            };
            assert!(same, "{field} of {id}: ours {our_job}, Go {go_job}");
        }
    }
    let (_, our_events) = ours
        .send("GET", &format!("/jobs/{completed}/events"), None)
        .await;
    assert_eq!(our_events["events"], events["events"], "the event log");
    let body = json!({"capability": "queued", "instance_id": "worker"});
    let (status, claimed) = ours.send("POST", "/jobs/claim", Some(body)).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["claimed"][0]["id"], queued.as_str(), "{claimed}");
    drop(ours);
    assert!(files() == before, "the Go registry's file changed");
    let _ = std::fs::remove_dir_all(&directory);
}
