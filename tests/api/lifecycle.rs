//! Release, cancel and force reclaim (contract §2.8–§2.10; §9 cases 16, 18, 20–23, 39–41, 56;
//! decisions rows 8 and 9).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, on_both_backends, spawn_app, spawn_app_with, Backend, Set, TestApp,
};

async fn claimed(app: &TestApp, owner: &str, extra: Value) -> String {
    let id = app.submit_with("c", extra).await;
    assert_eq!(
        app.claim("c", owner).await.expect("claim")["id"],
        id.as_str()
    );
    id
}

on_both_backends!(release_within_budget_requeues_the_job);
async fn release_within_budget_requeues_the_job(backend: Backend) {
    // §9 case 20
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer-a", json!({"max_retries": 3})).await;
    let response = app
        .post(
            &format!("/jobs/{id}/release"),
            &json!({"instance_id": "producer-a", "reason": "OSError: disk full"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "working", "attempt_count": 1})
    );
    let job = app.job(&id).await;
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert_eq!(job["lease_expires_at"], Value::Null);
    assert_eq!(job["claim_epoch"], 1);
    let again = app.claim("c", "producer-b").await.unwrap();
    assert_eq!(again["claim_epoch"], 2);
    assert_eq!(again["attempt_count"], 2);
}

on_both_backends!(release_past_the_budget_fails_the_job);
async fn release_past_the_budget_fails_the_job(backend: Backend) {
    // §9 case 21
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer-a", json!({"max_retries": 1})).await;
    app.set_job(&id, "attempt_count", Set::Int(2)).await;
    let response = app
        .post(
            &format!("/jobs/{id}/release"),
            &json!({"instance_id": "producer-a", "reason": "  OSError: boom  "}),
        )
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "failed", "attempt_count": 2})
    );
    let job = app.job(&id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "exhausted (release): OSError: boom");

    let blank = claimed(&app, "producer-a", json!({"max_retries": 0})).await;
    app.post(
        &format!("/jobs/{blank}/release"),
        &json!({"instance_id": "producer-a"}),
    )
    .await;
    assert_eq!(
        app.job(&blank).await["error"],
        "exhausted (release): max retries exceeded"
    );
}

on_both_backends!(release_of_an_input_required_job_makes_it_claimable);
async fn release_of_an_input_required_job_makes_it_claimable(backend: Backend) {
    // decisions row 8: the reference strands it (input_required, no owner, no lease).
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({"max_retries": 2})).await;
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "status": "input_required"}),
    )
    .await;
    let response = app
        .post(&format!("/jobs/{id}/release"), &json!({"instance_id": "p"}))
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "working", "attempt_count": 1})
    );
    assert_eq!(app.claim("c", "q").await.unwrap()["id"], id.as_str());
}

on_both_backends!(release_by_someone_else_is_403_and_changes_nothing);
async fn release_by_someone_else_is_403_and_changes_nothing(backend: Backend) {
    // §9 case 22
    let app = spawn_app(backend).await;
    let id = app
        .submit_with("c", json!({"owner_instance_id": "producer-a"}))
        .await;
    assert_error(
        app.post(
            &format!("/jobs/{id}/release"),
            &json!({"instance_id": "producer-b"}),
        )
        .await,
        403,
        "caller is not the current owner of this job",
    )
    .await;
    let job = app.job(&id).await;
    assert_eq!(job["owner_instance_id"], "producer-a");
    assert_eq!(job["attempt_count"], 0);
    // An unowned job has no owner to release it.
    let unowned = app.submit("c").await;
    assert_eq!(
        app.post(
            &format!("/jobs/{unowned}/release"),
            &json!({"instance_id": "x"})
        )
        .await
        .status(),
        403
    );
}

on_both_backends!(release_errors);
async fn release_errors(backend: Backend) {
    // §9 case 23, plus body validation
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.post(
            &format!("/jobs/{missing}/release"),
            &json!({"instance_id": "a"}),
        )
        .await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    let id = claimed(&app, "a", json!({})).await;
    app.delta(
        "a",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    assert_error(
        app.post(&format!("/jobs/{id}/release"), &json!({"instance_id": "a"}))
            .await,
        409,
        "job is already in a terminal state",
    )
    .await;
    assert_error(
        app.post(
            &format!("/jobs/{id}/release"),
            &json!({"instance_id": "   "}),
        )
        .await,
        400,
        "instance_id is required",
    )
    .await;
    assert_error(
        app.post_raw(&format!("/jobs/{id}/release"), "").await,
        400,
        "Invalid JSON payload: EOF",
    )
    .await;
}

on_both_backends!(cancel_of_an_unowned_job);
async fn cancel_of_an_unowned_job(backend: Backend) {
    // §9 case 16 and 56: one synthetic `cancelled` event carrying the reason.
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let response = app
        .post(
            &format!("/jobs/{id}/cancel"),
            &json!({"reason": "user requested"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "cancelled", "forwarded_to_instance_id": null})
    );
    let job = app.job(&id).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["error"], "cancelled: user requested");
    let events: Value = app
        .get(&format!("/jobs/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "cancelled");
    assert_eq!(events[0]["payload"], json!({"reason": "user requested"}));
    assert_eq!(events[0]["seq"], 1);
}

on_both_backends!(cancel_of_an_owned_job_reports_the_owner_and_keeps_it_on_the_row);
async fn cancel_of_an_owned_job_reports_the_owner_and_keeps_it_on_the_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer-a", json!({})).await;
    let response = app
        .http
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "cancelled", "forwarded_to_instance_id": "producer-a"})
    );
    let job = app.job(&id).await;
    assert_eq!(job["owner_instance_id"], "producer-a");
    assert_eq!(job["error"], Value::Null, "no reason, no error text");
    // The owner's next delta learns of it.
    let response = app
        .delta(
            "producer-a",
            json!({"id": id, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(response["rejected"][0]["reason"], "already_terminal");
}

on_both_backends!(cancel_errors);
async fn cancel_errors(backend: Backend) {
    // §9 case 18
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.post(&format!("/jobs/{missing}/cancel"), &json!({}))
            .await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    let id = claimed(&app, "a", json!({})).await;
    app.delta(
        "a",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    assert_error(
        app.post(&format!("/jobs/{id}/cancel"), &json!({})).await,
        409,
        "job is already in a terminal state",
    )
    .await;
    assert_eq!(app.job(&id).await["status"], "completed");
    assert_eq!(
        app.post_raw(&format!("/jobs/{id}/cancel"), "{bad")
            .await
            .status(),
        400
    );
}

on_both_backends!(cancel_waits_the_configured_grace);
async fn cancel_waits_the_configured_grace(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.cancel_event_grace = Duration::from_millis(300)
    })
    .await;
    let id = app.submit("c").await;
    let started = Instant::now();
    assert_eq!(
        app.post(&format!("/jobs/{id}/cancel"), &json!({}))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

on_both_backends!(force_reclaim_requeues_and_the_next_claim_bumps_the_epoch);
async fn force_reclaim_requeues_and_the_next_claim_bumps_the_epoch(backend: Backend) {
    // §9 case 39
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({"max_retries": 3})).await;
    let response = app
        .http
        .post(app.url(&format!("/jobs/{id}/reclaim")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "working", "previous_owner_instance_id": "replica-a", "claim_epoch": 1})
    );
    let job = app.job(&id).await;
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert_eq!(job["lease_expires_at"], Value::Null);
    assert_eq!(job["last_heartbeat_at"], Value::Null);
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(app.claim("c", "replica-b").await.unwrap()["claim_epoch"], 2);
}

on_both_backends!(force_reclaim_errors_and_unowned_jobs);
async fn force_reclaim_errors_and_unowned_jobs(backend: Backend) {
    // §9 case 40
    let app = spawn_app(backend).await;
    let cancelled = app.submit("c").await;
    app.post(&format!("/jobs/{cancelled}/cancel"), &json!({}))
        .await;
    assert_error(
        app.post(&format!("/jobs/{cancelled}/reclaim"), &json!({}))
            .await,
        409,
        "job is already in a terminal state",
    )
    .await;
    assert_eq!(app.job(&cancelled).await["status"], "cancelled");
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.post(&format!("/jobs/{missing}/reclaim"), &json!({}))
            .await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    let unowned = app.submit("c").await;
    let response = app
        .post(&format!("/jobs/{unowned}/reclaim"), &json!({}))
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "working", "previous_owner_instance_id": null, "claim_epoch": 0})
    );
}

on_both_backends!(force_reclaim_of_an_exhausted_job_fails_it);
async fn force_reclaim_of_an_exhausted_job_fails_it(backend: Backend) {
    // decisions row 9: the reference would leave an unclaimable row at the head of the queue.
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({"max_retries": 0})).await;
    let response = app.post(&format!("/jobs/{id}/reclaim"), &json!({})).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "failed", "previous_owner_instance_id": "replica-a", "claim_epoch": 1})
    );
    let job = app.job(&id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "reclaimed: max retries exceeded");
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert!(job["last_heartbeat_at"].is_i64());
}

on_both_backends!(reclaim_racing_completion_never_resurrects_the_job);
async fn reclaim_racing_completion_never_resurrects_the_job(backend: Backend) {
    // §9 case 41, repeated to exercise both orders.
    let app = spawn_app(backend).await;
    for _ in 0..20 {
        let id = claimed(&app, "replica-a", json!({"max_retries": 5})).await;
        let (reclaim_path, empty) = (format!("/jobs/{id}/reclaim"), json!({}));
        let (complete, reclaim) = futures_util::join!(
            app.delta(
                "replica-a",
                json!({"id": id, "claim_epoch": 1, "status": "completed", "result": {"ok": true}})
            ),
            app.post(&reclaim_path, &empty),
        );
        let job = app.job(&id).await;
        if complete["accepted"] == 1 {
            assert_eq!(job["status"], "completed");
            assert_eq!(reclaim.status(), 409);
        } else {
            assert_eq!(reclaim.status(), 200);
            assert_eq!(complete["rejected"][0]["reason"], "claim_superseded");
            assert_eq!(job["status"], "working");
            assert_eq!(job["owner_instance_id"], Value::Null);
            // Leave the queue empty for the next round.
            app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
        }
    }
}
