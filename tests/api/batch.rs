//! Owner deltas through `POST /jobs/batch` (contract §2.5, §3.2, §5.5; §9 cases 6–10, 26–30, 51).

use serde_json::{json, Value};

use crate::helpers::{assert_error, now, on_both_backends, spawn_app, Backend, Set, TestApp};

/// Submits a job and claims it as `owner`; returns its id (claim epoch 1).
async fn claimed(app: &TestApp, owner: &str, extra: Value) -> String {
    let id = app.submit_with("c", extra).await;
    let job = app.claim("c", owner).await.expect("claim");
    assert_eq!(job["id"], id.as_str());
    id
}

fn rejected(response: &Value) -> Vec<(String, String)> {
    response["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

on_both_backends!(mixed_deltas_apply_independently);
async fn mixed_deltas_apply_independently(backend: Backend) {
    // §9 case 6
    let app = spawn_app(backend).await;
    let a = claimed(&app, "producer-a", json!({})).await;
    let b = claimed(&app, "producer-a", json!({})).await;
    let response = app
        .post(
            "/jobs/batch",
            &json!({"instance_id": "producer-a", "deltas": [
                {"id": a, "progress": 0.42, "progress_message": "halfway"},
                {"id": b, "status": "completed", "result": {"itinerary": "ok"}},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "rejected": []})
    );
    let job_a = app.job(&a).await;
    assert_eq!(job_a["progress"], 0.42);
    assert_eq!(job_a["progress_message"], "halfway");
    assert_eq!(job_a["status"], "working");
    assert!(job_a["last_heartbeat_at"].is_i64());
    let job_b = app.job(&b).await;
    assert_eq!(job_b["status"], "completed");
    assert_eq!(job_b["result"], json!({"itinerary": "ok"}));
}

on_both_backends!(a_legacy_delta_from_another_instance_is_not_owner);
async fn a_legacy_delta_from_another_instance_is_not_owner(backend: Backend) {
    // §9 cases 7 and 28
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer-a", json!({})).await;
    let response = app
        .delta("producer-b", json!({"id": id, "progress": 0.1}))
        .await;
    assert_eq!(response["accepted"], 0);
    assert_eq!(rejected(&response), vec![(id.clone(), "not_owner".into())]);
    let response = app
        .delta("producer-a", json!({"id": id, "progress": 0.2}))
        .await;
    assert_eq!(
        response["accepted"], 1,
        "the owner's epoch-less delta takes the legacy path"
    );
    assert_eq!(app.job(&id).await["progress"], 0.2);
}

on_both_backends!(deltas_to_a_terminal_job_are_already_terminal);
async fn deltas_to_a_terminal_job_are_already_terminal(backend: Backend) {
    // §9 case 8
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer-a", json!({})).await;
    app.delta(
        "producer-a",
        json!({"id": id, "claim_epoch": 1, "status": "completed", "result": {"x": 1}}),
    )
    .await;
    for delta in [
        json!({"id": id, "progress": 0.5}),
        json!({"id": id, "claim_epoch": 1, "status": "working"}),
    ] {
        let response = app.delta("producer-a", delta).await;
        assert_eq!(
            rejected(&response),
            vec![(id.clone(), "already_terminal".into())]
        );
    }
    let job = app.job(&id).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"], json!({"x": 1}));
}

on_both_backends!(accepted_live_deltas_renew_the_lease_and_terminal_ones_do_not);
async fn accepted_live_deltas_renew_the_lease_and_terminal_ones_do_not(backend: Backend) {
    // §9 case 9
    let app = spawn_app(backend).await;
    let default_window = claimed(&app, "p", json!({})).await;
    let long_window = claimed(&app, "p", json!({"max_duration": 600})).await;
    for id in [&default_window, &long_window] {
        app.set_job(id, "lease_expires_at", Set::SecondsFromNow(10))
            .await;
    }
    app.delta(
        "p",
        json!({"id": default_window, "claim_epoch": 1, "progress": 0.1}),
    )
    .await;
    app.delta(
        "p",
        json!({"id": long_window, "claim_epoch": 1, "progress": 0.1}),
    )
    .await;
    let lease = app.job(&default_window).await["lease_expires_at"]
        .as_i64()
        .unwrap();
    assert!((now() + 295..=now() + 301).contains(&lease), "{lease}");
    let lease = app.job(&long_window).await["lease_expires_at"]
        .as_i64()
        .unwrap();
    assert!((now() + 595..=now() + 601).contains(&lease), "{lease}");

    // A rejected delta leaves the lease alone.
    app.set_job(&default_window, "lease_expires_at", Set::SecondsFromNow(10))
        .await;
    let before = app.job(&default_window).await["lease_expires_at"].clone();
    app.delta("intruder", json!({"id": default_window, "progress": 0.9}))
        .await;
    assert_eq!(app.job(&default_window).await["lease_expires_at"], before);

    // A terminal delta is accepted and stamps last_heartbeat_at, but leaves the lease.
    let response = app
        .delta(
            "p",
            json!({"id": default_window, "claim_epoch": 1, "status": "completed"}),
        )
        .await;
    assert_eq!(response["accepted"], 1);
    let job = app.job(&default_window).await;
    assert_eq!(job["lease_expires_at"], before);
    assert_eq!(job["status"], "completed");
}

on_both_backends!(batch_validation);
async fn batch_validation(backend: Backend) {
    // §9 case 10
    let app = spawn_app(backend).await;
    assert_error(
        app.post("/jobs/batch", &json!({"deltas": [{"id": "x"}]}))
            .await,
        400,
        "instance_id is required",
    )
    .await;
    assert_error(
        app.post("/jobs/batch", &json!({"instance_id": "a", "deltas": []}))
            .await,
        400,
        "deltas must not be empty",
    )
    .await;
    assert_error(
        app.post("/jobs/batch", &json!({"instance_id": "a"})).await,
        400,
        "deltas must not be empty",
    )
    .await;
    assert_error(
        app.post("/jobs/batch", &json!({"instance_id": "a", "deltas": [{}]}))
            .await,
        400,
        "every delta requires a non-empty id",
    )
    .await;
    assert_error(
        app.post(
            "/jobs/batch",
            &json!({"instance_id": "a", "deltas": [{"id": "x"}, {"id": ""}]}),
        )
        .await,
        400,
        "every delta requires a non-empty id",
    )
    .await;
    assert_eq!(
        app.post_raw("/jobs/batch", "{\"instance_id\": ")
            .await
            .status(),
        400
    );
    // A result that is not an object is a decode error of the whole request.
    let response = app
        .post(
            "/jobs/batch",
            &json!({"instance_id": "a", "deltas": [{"id": "x", "result": [1]}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
}

on_both_backends!(unknown_ids_and_statuses_are_rejected_per_delta_in_order);
async fn unknown_ids_and_statuses_are_rejected_per_delta_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({})).await;
    let missing = uuid::Uuid::new_v4().to_string();
    let response = app
        .post(
            "/jobs/batch",
            &json!({"instance_id": "p", "deltas": [
                {"id": missing},
                {"id": "not-a-uuid"},
                {"id": id, "status": "running"},
                {"id": id, "claim_epoch": 7, "status": "running"},
                {"id": id, "claim_epoch": 1, "progress": 0.3},
            ]}),
        )
        .await;
    let response: Value = response.json().await.unwrap();
    assert_eq!(response["accepted"], 1);
    assert_eq!(
        rejected(&response),
        vec![
            (missing, "not_found".into()),
            ("not-a-uuid".into(), "not_found".into()),
            (id.clone(), "invalid_status".into()),
            // Fencing is checked before the status value.
            (id.clone(), "claim_superseded".into()),
        ]
    );
    assert_eq!(app.job(&id).await["status"], "working");
}

on_both_backends!(stale_epochs_are_fenced);
async fn stale_epochs_are_fenced(backend: Backend) {
    // §9 case 26
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    let response = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 0, "progress": 0.5}),
        )
        .await;
    assert_eq!(
        rejected(&response),
        vec![(id.clone(), "claim_superseded".into())]
    );
    let response = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(response["accepted"], 1);
}

on_both_backends!(a_same_instance_reclaim_fences_the_previous_execution);
async fn a_same_instance_reclaim_fences_the_previous_execution(backend: Backend) {
    // §9 case 27
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({"max_retries": 3})).await;
    assert_eq!(
        app.post(&format!("/jobs/{id}/reclaim"), &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(app.claim("c", "replica-a").await.unwrap()["claim_epoch"], 2);
    let response = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 1, "status": "completed"}),
        )
        .await;
    assert_eq!(
        rejected(&response),
        vec![(id.clone(), "claim_superseded".into())]
    );
    let response = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 2, "status": "completed"}),
        )
        .await;
    assert_eq!(response["accepted"], 1);
}

on_both_backends!(an_epoch_bearing_delta_from_another_instance_is_superseded);
async fn an_epoch_bearing_delta_from_another_instance_is_superseded(backend: Backend) {
    // §9 case 29
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    let response = app
        .delta(
            "replica-b",
            json!({"id": id, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(rejected(&response), vec![(id, "claim_superseded".into())]);
}

on_both_backends!(the_old_owner_of_a_reclaimed_job_is_superseded);
async fn the_old_owner_of_a_reclaimed_job_is_superseded(backend: Backend) {
    // §9 case 30
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({"max_retries": 3})).await;
    app.post(&format!("/jobs/{id}/reclaim"), &json!({})).await;
    let response = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(
        rejected(&response),
        vec![(id.clone(), "claim_superseded".into())]
    );
    let job = app.job(&id).await;
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert_eq!(job["progress"], Value::Null);
}

on_both_backends!(result_and_error_are_only_stored_with_their_terminal_status);
async fn result_and_error_are_only_stored_with_their_terminal_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({})).await;
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "result": {"early": true}, "error": "early"}),
    )
    .await;
    let job = app.job(&id).await;
    assert_eq!(job["result"], Value::Null);
    assert_eq!(job["error"], Value::Null);

    let failing = claimed(&app, "p", json!({})).await;
    app.delta("p", json!({"id": failing, "claim_epoch": 1, "status": "failed", "error": "boom", "result": {"x": 1}})).await;
    let job = app.job(&failing).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "boom");
    assert_eq!(job["result"], Value::Null);
}

on_both_backends!(input_required_round_trip_keeps_the_claim);
async fn input_required_round_trip_keeps_the_claim(backend: Backend) {
    // §5.3: working -> input_required (prompt in progress_message) -> working -> completed.
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({})).await;
    let response = app
        .delta("p", json!({"id": id, "claim_epoch": 1, "status": "input_required", "progress_message": "Approve $42?"}))
        .await;
    assert_eq!(response["accepted"], 1);
    let job = app.job(&id).await;
    assert_eq!(job["status"], "input_required");
    assert_eq!(job["progress_message"], "Approve $42?");
    assert_eq!(job["owner_instance_id"], "p");
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "status": "working"}),
    )
    .await;
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "status": "completed", "result": {"approved": true}}),
    )
    .await;
    assert_eq!(app.job(&id).await["status"], "completed");
}

on_both_backends!(recv_cursor_merges_per_key_and_never_regresses);
async fn recv_cursor_merges_per_key_and_never_regresses(backend: Backend) {
    // §9 case 51 and 52 (exposure)
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({"max_retries": 3})).await;

    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "recv_cursor": {"": 3, "A": 5}}),
    )
    .await;
    assert_eq!(cursor(&app, &id).await, json!({"": 3, "A": 5}));
    app.delta("p", json!({"id": id, "claim_epoch": 1, "progress": 0.1}))
        .await;
    assert_eq!(
        cursor(&app, &id).await,
        json!({"": 3, "A": 5}),
        "no cursor leaves it alone"
    );
    let response = app
        .delta(
            "p",
            json!({"id": id, "claim_epoch": 0, "recv_cursor": {"": 99}}),
        )
        .await;
    assert_eq!(
        rejected(&response),
        vec![(id.clone(), "claim_superseded".into())]
    );
    assert_eq!(
        cursor(&app, &id).await,
        json!({"": 3, "A": 5}),
        "a fenced delta never advances it"
    );
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "recv_cursor": {"": 10}}),
    )
    .await;
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "recv_cursor": {"": 4}}),
    )
    .await;
    assert_eq!(cursor(&app, &id).await, json!({"": 10, "A": 5}));
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "recv_cursor": {"": 5, "A": 10, "B": 2}}),
    )
    .await;
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "recv_cursor": {"": 3, "A": 12, "C": 7}}),
    )
    .await;
    assert_eq!(
        cursor(&app, &id).await,
        json!({"": 10, "A": 12, "B": 2, "C": 7})
    );

    // Force reclaim keeps it, and the next claim hands it back.
    app.post(&format!("/jobs/{id}/reclaim"), &json!({})).await;
    assert_eq!(
        cursor(&app, &id).await,
        json!({"": 10, "A": 12, "B": 2, "C": 7})
    );
    let reclaimed = app.claim("c", "p2").await.unwrap();
    assert_eq!(
        reclaimed["recv_cursor"],
        json!({"": 10, "A": 12, "B": 2, "C": 7})
    );

    // Applied on terminal deltas too.
    app.delta(
        "p2",
        json!({"id": id, "claim_epoch": 2, "status": "completed", "recv_cursor": {"Z": 1}}),
    )
    .await;
    assert_eq!(cursor(&app, &id).await["Z"], 1);
}

async fn cursor(app: &TestApp, id: &str) -> Value {
    app.job(id).await["recv_cursor"].clone()
}

on_both_backends!(an_empty_cursor_reads_as_null);
async fn an_empty_cursor_reads_as_null(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({})).await;
    app.delta("p", json!({"id": id, "claim_epoch": 1, "recv_cursor": {}}))
        .await;
    assert_eq!(app.job(&id).await["recv_cursor"], Value::Null);
}
