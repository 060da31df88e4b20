//! When a job is taken from its owner (issue 23; docs/ownership.md). An older SDK (before claim
//! epochs) keeps running a job after it deregisters and its deltas carry no epoch, so the registry
//! never takes a job from an owner whose lease is still live: not on `DELETE /agents/{id}`, not
//! when the owner turns unhealthy, not in the sweep. The lease decides; a force reclaim is the
//! operator's explicit override.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, spawn_app, spawn_app_with, stays_for, within, Backend, Set, TestApp,
};

async fn register(app: &TestApp, agent_id: &str) {
    let body = json!({
        "agent_id": agent_id, "name": agent_id, "http_host": "127.0.0.1", "http_port": 9000,
        "tools": [{"function_name": "run", "capability": "c"}],
    });
    assert_eq!(app.post("/heartbeat", &body).await.status(), 200);
}

async fn deregister(app: &TestApp, agent_id: &str) {
    let response = app
        .http
        .delete(app.url(&format!("/agents/{agent_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn owner(app: &TestApp, job_id: &str) -> Value {
    app.job(job_id).await["owner_instance_id"].clone()
}

/// A legacy (epoch-less) delta from `instance_id`: its rejection reason, or `None` if accepted.
async fn legacy_delta(app: &TestApp, instance_id: &str, delta: Value) -> Option<String> {
    let answer = app.delta(instance_id, delta).await;
    answer["rejected"][0]["reason"].as_str().map(str::to_owned)
}

on_both_backends!(a_deregistered_legacy_owner_keeps_its_job_and_finishes_it);
async fn a_deregistered_legacy_owner_keeps_its_job_and_finishes_it(backend: Backend) {
    // Given a legacy owner holding a claim, and another producer polling for work
    let app = spawn_app(backend).await;
    register(&app, "legacy").await;
    register(&app, "modern").await;
    let job = app.submit("c").await;
    assert_eq!(app.claim("c", "legacy").await.unwrap()["id"], job.as_str());

    // When it deregisters and keeps working, as SDK 2.0.0 does after SIGTERM
    deregister(&app, "legacy").await;

    // Then nobody else can claim the job, and its epoch-less deltas are accepted to the end
    assert_eq!(app.claim("c", "modern").await, None);
    for progress in [0.5, 0.9] {
        let delta = json!({"id": job, "progress": progress});
        assert_eq!(legacy_delta(&app, "legacy", delta).await, None);
    }
    let done = json!({"id": job, "status": "completed", "result": {"sections": 6}});
    assert_eq!(legacy_delta(&app, "legacy", done).await, None);
    let row = app.job(&job).await;
    assert_eq!(row["status"], "completed");
    assert_eq!(row["owner_instance_id"], "legacy");
    assert_eq!(row["attempt_count"], 1, "one execution");
    assert_eq!(row["claim_epoch"], 1);
}

on_both_backends!(a_deregistered_owner_loses_its_job_when_its_lease_lapses);
async fn a_deregistered_owner_loses_its_job_when_its_lease_lapses(backend: Backend) {
    // Given an owner whose claim has a 1-second lease
    let app = spawn_app(backend).await;
    register(&app, "departing").await;
    let job = app
        .submit_with("c", json!({"max_duration": 1, "max_retries": 2}))
        .await;
    app.claim("c", "departing").await.unwrap();

    // When it deregisters and stops renewing (SDK 2.7.0 and later stop their handlers)
    deregister(&app, "departing").await;
    assert_eq!(owner(&app, &job).await, "departing", "kept at first");

    // Then the lease timer reclaims the job, and its late deltas are refused on either path
    within(Duration::from_secs(3), "the lapsed lease", || async {
        owner(&app, &job).await.is_null()
    })
    .await;
    assert_eq!(app.job(&job).await["status"], "working");
    assert_eq!(app.claim("c", "next").await.unwrap()["claim_epoch"], 2);
    let late = json!({"id": job, "status": "completed"});
    assert_eq!(
        legacy_delta(&app, "departing", late).await.as_deref(),
        Some("not_owner")
    );
    let fenced = app
        .delta(
            "departing",
            json!({"id": job, "claim_epoch": 1, "status": "completed"}),
        )
        .await;
    assert_eq!(fenced["rejected"][0]["reason"], "claim_superseded");
}

on_both_backends!(a_silent_owner_that_keeps_renewing_keeps_its_job);
async fn a_silent_owner_that_keeps_renewing_keeps_its_job(backend: Backend) {
    // Given an owner that stops heartbeating but keeps renewing its 2-second lease
    let app = spawn_app_with(backend, |config| {
        config.health_check_interval = Duration::from_secs(1);
        config.agent_timeout = Duration::from_secs(1);
    })
    .await;
    register(&app, "silent").await;
    let job = app
        .submit_with("c", json!({"max_duration": 2, "max_retries": 2}))
        .await;
    app.claim("c", "silent").await.unwrap();

    // When the health monitor marks it unhealthy
    within(
        Duration::from_secs(6),
        "the owner to turn unhealthy",
        || async {
            let renew = json!({"id": job, "progress": 0.1});
            assert_eq!(legacy_delta(&app, "silent", renew).await, None);
            let agents: Value = app.get("/agents").await.json().await.unwrap();
            agents["agents"][0]["status"] == "unhealthy"
        },
    )
    .await;

    // Then it keeps the job for as long as it renews (here, one lease window)
    stays_for(
        Duration::from_secs(2),
        "the renewing owner keeps its job",
        || async {
            let renew = json!({"id": job, "progress": 0.2});
            assert_eq!(legacy_delta(&app, "silent", renew).await, None);
            owner(&app, &job).await == "silent"
        },
    )
    .await;
    assert_eq!(owner(&app, &job).await, "silent");
    // and loses it once it stops
    within(Duration::from_secs(4), "the lapsed lease", || async {
        owner(&app, &job).await.is_null()
    })
    .await;
}

on_both_backends!(the_sweep_reroutes_only_pinned_jobs_their_owner_never_took_up);
async fn the_sweep_reroutes_only_pinned_jobs_their_owner_never_took_up(backend: Backend) {
    // Given a sweep every 500 ms, and jobs held by owners that are not healthy agents
    let app = spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(500);
    })
    .await;
    register(&app, "healthy").await;
    let claimed = app.submit("c").await; // default 300 s lease
    app.claim("c", "never-registered").await.unwrap();
    let untouched = app
        .submit_with(
            "c",
            json!({"owner_instance_id": "ghost", "max_duration": 1}),
        )
        .await;
    let taken_up = app
        .submit_with(
            "c",
            json!({"owner_instance_id": "ghost", "max_duration": 1}),
        )
        .await;
    let taken_up_delta = json!({"id": taken_up, "progress": 0.1});
    assert_eq!(legacy_delta(&app, "ghost", taken_up_delta).await, None);
    app.set_job(&taken_up, "lease_expires_at", Set::SecondsFromNow(300))
        .await;
    let healthy_pinned = app
        .submit_with(
            "c",
            json!({"owner_instance_id": "healthy", "max_duration": 1}),
        )
        .await;
    let exhausted = app
        .submit_with(
            "c",
            json!({"owner_instance_id": "ghost", "max_duration": 1, "max_retries": 0}),
        )
        .await;
    app.set_job(&exhausted, "attempt_count", Set::Int(1)).await;

    // When a lease window passes since they were submitted
    // (each job's window counts from its own submission: wait for both of them)
    within(Duration::from_secs(5), "the orphan sweep", || async {
        owner(&app, &untouched).await.is_null() && owner(&app, &exhausted).await.is_null()
    })
    .await;

    // Then only the untouched pinned job of the gone owner was rerouted (or failed when spent)
    assert_eq!(app.job(&untouched).await["status"], "working");
    let row = app.job(&exhausted).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error"], "orphaned: max retries exceeded");
    assert_eq!(owner(&app, &claimed).await, "never-registered");
    assert_eq!(owner(&app, &healthy_pinned).await, "healthy");
    // A pinned job its owner took up has a lease: the lease decides, not the owner's health.
    assert_eq!(owner(&app, &taken_up).await, "ghost");
}

on_both_backends!(a_force_reclaim_takes_the_job_even_from_a_running_legacy_owner);
async fn a_force_reclaim_takes_the_job_even_from_a_running_legacy_owner(backend: Backend) {
    // Given a legacy owner running a job
    let app = spawn_app(backend).await;
    let job = app.submit_with("c", json!({"max_retries": 2})).await;
    app.claim("c", "legacy").await.unwrap();

    // When an operator force-reclaims it (the operator's word that the owner is gone)
    let response = app.post(&format!("/jobs/{job}/reclaim"), &json!({})).await;
    assert_eq!(response.status(), 200);

    // Then the job is claimable at once and the old owner's epoch-less deltas are refused:
    // nothing can fence a legacy owner that is in fact still running, hence the documented rule
    // to force-reclaim only jobs whose owner is known to have stopped.
    assert_eq!(app.claim("c", "next").await.unwrap()["claim_epoch"], 2);
    let late = json!({"id": job, "progress": 0.7});
    assert_eq!(
        legacy_delta(&app, "legacy", late).await.as_deref(),
        Some("not_owner")
    );
}
