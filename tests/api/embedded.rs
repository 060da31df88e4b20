//! The embedded default store as a user meets it (issue 9): the real binary, started with no
//! database configured, in a directory of its own; killed with SIGKILL and started again.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::RegistryProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

/// The binary in `directory` with no database configured; the log names the default file.
fn start_in(directory: &std::path::Path) -> RegistryProcess {
    let registry = RegistryProcess::start(directory, &[]);
    let storage = registry.startup_log.iter().find(|l| l.contains("storage:"));
    assert!(
        storage.is_some_and(|l| l.contains("embedded SQLite file mesh_registry.db")),
        "the log names the backend: {:#?}",
        registry.startup_log
    );
    registry
}

#[actix_web::test]
async fn with_no_database_configured_it_serves_from_a_file_and_survives_a_kill() {
    let directory = std::env::temp_dir().join(format!(
        "mesh-registry-embedded-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&directory).expect("a working directory");
    let registry = start_in(&directory);
    assert!(directory.join("mesh_registry.db").exists());

    // A full cycle: submit, claim, progress, complete.
    let submit = |capability: &str| json!({"capability": capability, "submitted_by": "me", "submitted_payload": {"n": 1}});
    let (status, created) = registry.send("POST", "/jobs", Some(submit("c"))).await;
    assert_eq!(status, 201, "{created}");
    let done = created["id"].as_str().expect("id").to_owned();
    let (_, claimed) = registry
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "c", "instance_id": "w1"})),
        )
        .await;
    assert_eq!(claimed["claimed"][0]["id"], done.as_str());
    for delta in [
        json!({"id": done, "progress": 0.5, "claim_epoch": 1}),
        json!({"id": done, "status": "completed", "result": {"ok": true}, "claim_epoch": 1}),
    ] {
        let (_, batch) = registry
            .send(
                "POST",
                "/jobs/batch",
                Some(json!({"instance_id": "w1", "deltas": [delta]})),
            )
            .await;
        assert_eq!(batch["accepted"], 1, "{batch}");
    }
    // One job left claimed and one queued, to find them as they were after the kill.
    let (_, created) = registry.send("POST", "/jobs", Some(submit("d"))).await;
    let running = created["id"].as_str().expect("id").to_owned();
    registry
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "d", "instance_id": "w2"})),
        )
        .await;
    let (_, created) = registry.send("POST", "/jobs", Some(submit("e"))).await;
    let queued = created["id"].as_str().expect("id").to_owned();

    // A second registry on the same file refuses to start, with one clear line.
    let second = Command::new(BINARY)
        .current_dir(&directory)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run a second registry");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another registry process"),
        "{stderr}"
    );

    // Fleet-wide drain is a PostgreSQL feature: refused, not faked; the replica drain works.
    let (status, body) = registry
        .send("POST", "/admin/drain?scope=fleet", None)
        .await;
    assert_eq!(status, 501, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("PostgreSQL"));
    let (status, body) = registry.send("GET", "/ready", None).await;
    assert_eq!((status, &body["backend"]), (200, &json!("embedded SQLite")));

    let before: Vec<Value> = {
        let mut jobs = Vec::new();
        for id in [&done, &running, &queued] {
            jobs.push(registry.send("GET", &format!("/jobs/{id}"), None).await.1);
        }
        jobs
    };
    registry.kill();

    let registry = start_in(&directory);
    for (id, was) in [&done, &running, &queued].into_iter().zip(&before) {
        let (status, now) = registry.send("GET", &format!("/jobs/{id}"), None).await;
        assert_eq!(status, 200, "{id} is still there");
        assert_eq!(&now, was, "{id} is exactly as it was before the kill");
    }
    assert_eq!(before[0]["status"], "completed");
    assert_eq!(before[0]["result"], json!({"ok": true}));
    assert_eq!(before[1]["owner_instance_id"], "w2");
    assert_eq!(before[2]["status"], "working");
    // The queue still works after the restart.
    let (_, claimed) = registry
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "e", "instance_id": "w3"})),
        )
        .await;
    assert_eq!(claimed["claimed"][0]["id"], queued.as_str());
    drop(registry);
    let _ = std::fs::remove_dir_all(&directory);
}
