//! Leases, reclaim and the safety sweep (issue 4; contract §3–§4, §9 cases 24, 57–62; decisions
//! rows 10, 11, 13, 19): job actors reclaim expired leases within a second, the sweep catches what
//! no actor holds, and a restart gives owners a grace to renew.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    now, on_both_backends, postgres_only, spawn_app, spawn_app_with, stays_for, within, Backend,
    Set, TestApp,
};

async fn owner(app: &TestApp, id: &str) -> Value {
    app.job(id).await["owner_instance_id"].clone()
}

/// Submits with a 1-second lease window and claims as `owner`; returns the id.
async fn claimed_briefly(app: &TestApp, owner: &str, extra: Value) -> String {
    let mut body = json!({"max_duration": 1});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let id = app.submit_with("c", body).await;
    assert_eq!(app.claim("c", owner).await.unwrap()["id"], id.as_str());
    id
}

on_both_backends!(an_expired_lease_is_reclaimed_within_a_second_at_default_settings);
async fn an_expired_lease_is_reclaimed_within_a_second_at_default_settings(backend: Backend) {
    // decisions row 11 and §9 case 24: the default sweep interval (5 min) plays no part.
    let app = spawn_app(backend).await;
    let id = claimed_briefly(&app, "replica-a", json!({"max_retries": 2})).await;
    let lease = app.job(&id).await["lease_expires_at"].as_i64().unwrap();
    within(
        Duration::from_secs(3),
        "the expired lease to be reclaimed",
        || async { owner(&app, &id).await.is_null() },
    )
    .await;
    let job = app.job(&id).await;
    assert!(now() <= lease + 2, "reclaimed about when the lease ended");
    assert_eq!(job["status"], "working");
    assert_eq!(job["claim_epoch"], 1, "a reclaim keeps the epoch");
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(job["lease_expires_at"], Value::Null);
    assert_eq!(job["last_heartbeat_at"], Value::Null);

    let again = app.claim("c", "replica-a").await.unwrap();
    assert_eq!(again["claim_epoch"], 2);
    // The first execution's late delta is fenced.
    let late = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 1, "status": "completed"}),
        )
        .await;
    assert_eq!(late["rejected"][0]["reason"], "claim_superseded");
    let current = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 2, "status": "completed"}),
        )
        .await;
    assert_eq!(current["accepted"], 1);
}

on_both_backends!(an_expired_lease_past_its_budget_fails_the_job);
async fn an_expired_lease_past_its_budget_fails_the_job(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed_briefly(&app, "replica-a", json!({"max_retries": 0})).await;
    within(Duration::from_secs(3), "the job to fail", || async {
        app.job(&id).await["status"] == "failed"
    })
    .await;
    let job = app.job(&id).await;
    assert_eq!(
        job["error"],
        "lease expired: no completion within lease window"
    );
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert!(job["last_heartbeat_at"].is_i64());
}

on_both_backends!(an_input_required_job_is_reclaimed_like_a_working_one);
async fn an_input_required_job_is_reclaimed_like_a_working_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed_briefly(&app, "replica-a", json!({"max_retries": 1})).await;
    app.delta(
        "replica-a",
        json!({"id": id, "claim_epoch": 1, "status": "input_required", "progress_message": "?"}),
    )
    .await;
    within(
        Duration::from_secs(4),
        "the job to be reclaimed",
        || async { owner(&app, &id).await.is_null() },
    )
    .await;
    assert_eq!(
        app.job(&id).await["status"],
        "working",
        "normalised to working"
    );
}

on_both_backends!(renewals_keep_the_claim);
async fn renewals_keep_the_claim(backend: Backend) {
    // Deltas and executor reads both renew; the actor re-arms on each.
    // Given a claim under a 1-second lease
    let app = spawn_app(backend).await;
    let id = claimed_briefly(&app, "replica-a", json!({})).await;
    // When its owner renews it, by deltas and executor reads in turn, for three lease windows
    // Then it keeps the claim all along
    let round = std::cell::Cell::new(0);
    stays_for(
        Duration::from_secs(3),
        "the renewing owner keeps its claim",
        || async {
            if round.get() % 2 == 0 {
                let renewed = app
                    .delta(
                        "replica-a",
                        json!({"id": id, "claim_epoch": 1, "progress": 0.1}),
                    )
                    .await;
                assert_eq!(renewed["accepted"], 1);
            } else {
                let read = app
                    .get(&format!(
                        "/jobs/{id}/events?instance_id=replica-a&claim_epoch=1"
                    ))
                    .await;
                assert_eq!(read.status(), 200);
            }
            round.set(round.get() + 1);
            owner(&app, &id).await == "replica-a"
        },
    )
    .await;
    assert_eq!(owner(&app, &id).await, "replica-a");
    // Once renewals stop, the lease runs out.
    within(Duration::from_secs(3), "the reclaim", || async {
        owner(&app, &id).await.is_null()
    })
    .await;
}

on_both_backends!(last_heartbeat_at_is_the_latest_sign_of_life);
async fn last_heartbeat_at_is_the_latest_sign_of_life(backend: Backend) {
    // Every write by or for the owner stamps it (contract.md, the job's fields); a job put back
    // in the queue has none.
    let app = spawn_app(backend).await;
    let id = app.submit_with("c", json!({"max_retries": 3})).await;
    assert!(app.job(&id).await["last_heartbeat_at"].is_null(), "queued");
    assert_eq!(
        app.claim("c", "replica-a").await.unwrap()["id"],
        id.as_str()
    );
    let recent = |job: Value| {
        let at = job["last_heartbeat_at"].as_i64().expect("a heartbeat time");
        assert!((now() - at).abs() <= 5, "{at} is not now ({})", now());
    };
    recent(app.job(&id).await);
    // Given a claim whose last state change was an hour ago
    app.set_job(&id, "last_heartbeat_at", Set::SecondsFromNow(-3600))
        .await;
    // When its owner reports progress, then it shows the renewal
    let renewed = app
        .delta(
            "replica-a",
            json!({"id": id, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(renewed["accepted"], 1);
    recent(app.job(&id).await);
    // and so does an executor read after that was pushed back an hour too
    app.set_job_columns(
        &id,
        &[
            ("last_heartbeat_at", Set::SecondsFromNow(-3600)),
            ("lease_expires_at", Set::SecondsFromNow(1)),
        ],
    )
    .await;
    let read = app
        .get(&format!(
            "/jobs/{id}/events?instance_id=replica-a&claim_epoch=1"
        ))
        .await;
    assert_eq!(read.status(), 200);
    recent(app.job(&id).await);
    // When an operator puts it back in the queue, then it has no heartbeat at all
    let reclaimed = app.post(&format!("/jobs/{id}/reclaim"), &json!({})).await;
    assert_eq!(reclaimed.status(), 200);
    let queued = app.job(&id).await;
    assert_eq!(queued["status"], "working");
    assert!(queued["owner_instance_id"].is_null());
    assert!(queued["last_heartbeat_at"].is_null(), "{queued}");
    // and its next owner's completion is its last sign of life
    assert_eq!(
        app.claim("c", "replica-b").await.unwrap()["id"],
        id.as_str()
    );
    let done = app
        .delta(
            "replica-b",
            json!({"id": id, "claim_epoch": 2, "status": "completed"}),
        )
        .await;
    assert_eq!(done["accepted"], 1);
    recent(app.job(&id).await);
}

// PostgreSQL only: several replicas on one database.
postgres_only!(a_renewal_through_another_replica_keeps_the_claim);
async fn a_renewal_through_another_replica_keeps_the_claim(backend: Backend) {
    // The replica that watches the claim finds the lease renewed elsewhere and re-arms.
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    let id = claimed_briefly(&a, "owner", json!({})).await;
    stays_for(
        Duration::from_secs(3),
        "the owner renewing through the other replica keeps its claim",
        || async {
            let renewed = b
                .delta(
                    "owner",
                    json!({"id": id, "claim_epoch": 1, "progress": 0.2}),
                )
                .await;
            assert_eq!(renewed["accepted"], 1);
            owner(&a, &id).await == "owner"
        },
    )
    .await;
    assert_eq!(owner(&a, &id).await, "owner");
    within(
        Duration::from_secs(3),
        "the reclaim once renewals stop",
        || async { owner(&a, &id).await.is_null() },
    )
    .await;
}

on_both_backends!(finished_claims_are_left_alone);
async fn finished_claims_are_left_alone(backend: Backend) {
    // Given a claim under a 1-second lease that was completed, and one that was released
    let app = spawn_app(backend).await;
    let completed = claimed_briefly(&app, "a", json!({})).await;
    app.delta(
        "a",
        json!({"id": completed, "claim_epoch": 1, "status": "completed", "result": {"ok": 1}}),
    )
    .await;
    let released = claimed_briefly(&app, "b", json!({"max_retries": 3})).await;
    app.post(
        &format!("/jobs/{released}/release"),
        &json!({"instance_id": "b"}),
    )
    .await;
    // When their leases would have run out, Then neither is reclaimed
    stays_for(
        Duration::from_secs(2),
        "finished claims are left alone past their lease",
        || async {
            let (completed, released) = (app.job(&completed).await, app.job(&released).await);
            (completed["status"] == "completed" && completed["owner_instance_id"] == "a")
                && (released["status"] == "working" && released["attempt_count"] == 1)
        },
    )
    .await;
    let job = app.job(&completed).await;
    assert_eq!(
        (job["status"].as_str(), job["owner_instance_id"].as_str()),
        (Some("completed"), Some("a"))
    );
    let job = app.job(&released).await;
    assert_eq!(
        (job["status"].as_str(), job["attempt_count"].as_i64()),
        (Some("working"), Some(1))
    );
}

async fn sweeping_app(
    backend: Backend,
    tweak: impl FnOnce(&mut mesh_registry::config::Config),
) -> TestApp {
    spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(500);
        tweak(config);
    })
    .await
}

on_both_backends!(the_sweep_leaves_healthy_owners_alone_and_catches_leases_no_actor_holds);
async fn the_sweep_leaves_healthy_owners_alone_and_catches_leases_no_actor_holds(backend: Backend) {
    // §9 case 59: a lease that expired while no actor watched it (say, set straight in the DB).
    let app = sweeping_app(backend, |_| {}).await;
    app.post(
        "/heartbeat",
        &json!({"agent_id": "worker", "tools": [{"function_name": "f", "capability": "c"}]}),
    )
    .await;
    let healthy = app.submit("c").await;
    app.claim("c", "worker").await.unwrap();
    let expired = app.submit("c").await;
    app.claim("c", "worker").await.unwrap();
    app.set_job_columns(
        &expired,
        &[
            ("lease_expires_at", Set::SecondsFromNow(-300)),
            ("claim_epoch", Set::Add(10)),
        ],
    )
    .await;
    within(Duration::from_secs(3), "the lease sweep", || async {
        owner(&app, &expired).await.is_null()
    })
    .await;
    assert_eq!(owner(&app, &healthy).await, "worker");
}

on_both_backends!(deadlines_fail_live_jobs_but_never_overwrite_a_finished_one);
async fn deadlines_fail_live_jobs_but_never_overwrite_a_finished_one(backend: Backend) {
    // §9 case 60 and decisions row 10
    let app = sweeping_app(backend, |_| {}).await;
    app.post(
        "/heartbeat",
        &json!({"agent_id": "worker", "tools": [{"function_name": "f", "capability": "c"}]}),
    )
    .await;
    let late = app
        .submit_with("c", json!({"total_deadline": now() + 1}))
        .await;
    app.claim("c", "worker").await.unwrap();
    let future = app
        .submit_with("unclaimed", json!({"total_deadline": now() + 3600}))
        .await;
    let finished = app.submit("c").await;
    assert_eq!(
        app.claim("c", "worker").await.unwrap()["id"],
        finished.as_str()
    );
    let completed = app
        .delta("worker", json!({"id": finished, "claim_epoch": 1, "status": "completed", "result": {"kept": true}}))
        .await;
    assert_eq!(completed["accepted"], 1);
    app.set_job(&finished, "total_deadline", Set::SecondsFromNow(-300))
        .await;

    within(Duration::from_secs(4), "the deadline sweep", || async {
        app.job(&late).await["status"] == "failed"
    })
    .await;
    let job = app.job(&late).await;
    assert_eq!(job["error"], "deadline_exceeded");
    assert_eq!(job["owner_instance_id"], Value::Null);
    assert_eq!(job["lease_expires_at"], Value::Null);
    stays_for(
        Duration::from_millis(1_200),
        "later sweeps (every 500 ms) leave the future deadline and the finished job alone",
        || async {
            app.job(&future).await["status"] == "working"
                && app.job(&finished).await["status"] == "completed"
        },
    )
    .await;
    assert_eq!(app.job(&future).await["status"], "working");
    let job = app.job(&finished).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"], json!({"kept": true}));
}

async fn age(app: &TestApp, id: &str, hours: i64) {
    app.set_job(id, "submitted_at", Set::SecondsFromNow(-hours * 3600))
        .await;
}

async fn events_of(app: &TestApp, id: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/jobs/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().clone()
}

on_both_backends!(the_stale_reaper_fails_old_jobs_with_exactly_one_event);
async fn the_stale_reaper_fails_old_jobs_with_exactly_one_event(backend: Backend) {
    // §9 case 61
    let app = sweeping_app(backend, |config| {
        config.job_stale_timeout = Some(Duration::from_secs(3600))
    })
    .await;
    let old = app.submit("c").await;
    age(&app, &old, 2).await;
    let long_running = app
        .submit_with("c", json!({"max_duration": 3 * 3600}))
        .await;
    age(&app, &long_running, 2).await;
    let past_its_duration = app
        .submit_with("c", json!({"max_duration": 3 * 3600}))
        .await;
    age(&app, &past_its_duration, 4).await;
    let short = app.submit_with("c", json!({"max_duration": 600})).await;
    age(&app, &short, 2).await;
    let with_deadline = app
        .submit_with("c", json!({"total_deadline": now() + 3600}))
        .await;
    age(&app, &with_deadline, 2).await;
    let waiting = app.submit_with("c", json!({"max_retries": 3})).await;
    app.claim("c", "w").await.unwrap();
    app.delta("w", json!({"id": waiting, "status": "input_required"}))
        .await;
    age(&app, &waiting, 2).await;
    let young = app.submit("c").await;

    // The jobs were aged one after the other: a sweep may catch them in different ticks.
    within(Duration::from_secs(4), "the stale sweep", || async {
        for id in [&old, &short, &waiting, &past_its_duration] {
            if app.job(id).await["status"] != "failed" {
                return false;
            }
        }
        true
    })
    .await;
    // A second tick (every 500 ms) adds no second event and fails nothing more.
    stays_for(
        Duration::from_millis(1_200),
        "the stale jobs have one event each and the others run on, across sweeps",
        || async {
            for id in [&old, &short, &waiting, &past_its_duration] {
                if events_of(&app, id).await.len() != 1 {
                    return false;
                }
            }
            for id in [&long_running, &with_deadline, &young] {
                if app.job(id).await["status"] != "working" {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let ceiling =
        "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (1h0m0s)";
    for (id, error) in [
        (&old, ceiling),
        (&short, ceiling),
        (&waiting, ceiling),
        (
            &past_its_duration,
            "stale: no total_deadline set and exceeded max_duration (3h0m0s)",
        ),
    ] {
        let job = app.job(id).await;
        assert_eq!(job["status"], "failed", "{id}");
        assert_eq!(job["error"], error);
        let events = events_of(&app, id).await;
        assert_eq!(events.len(), 1, "exactly one stale event: {events:?}");
        assert_eq!(events[0]["type"], "stale");
        assert_eq!(
            events[0]["payload"],
            json!({"reason": "stale", "detail": error})
        );
    }
    for id in [&long_running, &with_deadline, &young] {
        assert_eq!(app.job(id).await["status"], "working", "{id}");
    }
}

on_both_backends!(retention_purges_events_of_old_finished_jobs_and_old_unhealthy_agents);
async fn retention_purges_events_of_old_finished_jobs_and_old_unhealthy_agents(backend: Backend) {
    // §9 case 57
    let app = sweeping_app(backend, |_| {}).await;
    let finished = app.submit("c").await;
    let active = app.submit("c").await;
    for id in [&finished, &active] {
        for _ in 0..2 {
            app.post(&format!("/jobs/{id}/events"), &json!({"type": "t"}))
                .await;
        }
    }
    app.post(&format!("/jobs/{finished}/cancel"), &json!({}))
        .await;
    app.set_job(&finished, "last_heartbeat_at", Set::SecondsFromNow(-7200))
        .await;
    app.set_events(&active, "created_at", Set::SecondsFromNow(-7200))
        .await;
    app.post("/heartbeat", &json!({"agent_id": "gone"})).await;
    app.post("/heartbeat", &json!({"agent_id": "resting"}))
        .await;
    app.http
        .delete(app.url("/agents/gone"))
        .send()
        .await
        .unwrap();
    app.http
        .delete(app.url("/agents/resting"))
        .send()
        .await
        .unwrap();
    app.set_agent("gone", "updated_at", Set::SecondsFromNow(-7200))
        .await;

    // The agent was aged last: its purge may come a tick after the events'.
    within(
        Duration::from_secs(4),
        "the event purge and the agent purge",
        || async {
            let agents: Value = app.get("/agents").await.json().await.unwrap();
            let gone_listed = agents["agents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|agent| agent["id"] == "gone");
            events_of(&app, &finished).await.is_empty() && !gone_listed
        },
    )
    .await;
    assert_eq!(
        app.job(&finished).await["status"],
        "cancelled",
        "job rows are kept by default"
    );
    assert_eq!(
        events_of(&app, &active).await.len(),
        2,
        "live jobs keep their events"
    );
    let agents: Value = app.get("/agents").await.json().await.unwrap();
    let ids: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["resting"]);
}

on_both_backends!(job_row_retention_is_opt_in);
async fn job_row_retention_is_opt_in(backend: Backend) {
    // decisions row 19
    let app = sweeping_app(backend, |config| {
        config.job_row_retention = Some(Duration::from_secs(3600))
    })
    .await;
    let old = app.submit("c").await;
    let recent = app.submit("c").await;
    let live = app.submit("c").await;
    for id in [&old, &recent] {
        app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    }
    app.set_job(&old, "last_heartbeat_at", Set::SecondsFromNow(-7200))
        .await;
    within(Duration::from_secs(4), "the job row purge", || async {
        app.get(&format!("/jobs/{old}")).await.status() == 404
    })
    .await;
    assert_eq!(app.get(&format!("/jobs/{recent}")).await.status(), 200);
    assert_eq!(app.get(&format!("/jobs/{live}")).await.status(), 200);
    assert_eq!(app.event_count(&old).await, 0, "its events go with it");
}

on_both_backends!(after_a_restart_owners_get_the_grace_to_renew);
async fn after_a_restart_owners_get_the_grace_to_renew(backend: Backend) {
    // decisions row 13: leases that ran out while the registry was down.
    // Given three claims under 2-second leases
    let app = spawn_app(backend).await;
    let renewed = app
        .submit_with("c", json!({"max_duration": 2, "max_retries": 3}))
        .await;
    app.claim("c", "owner").await.unwrap();
    // An owner on an SDK older than claim epochs renews the same way, without an epoch.
    let renewed_legacy = app
        .submit_with("c", json!({"max_duration": 2, "max_retries": 3}))
        .await;
    app.claim("c", "legacy-owner").await.unwrap();
    let abandoned = app
        .submit_with("c", json!({"max_duration": 2, "max_retries": 3}))
        .await;
    app.claim("c", "owner").await.unwrap();

    let mut last_lease = 0;
    for id in [&renewed, &renewed_legacy, &abandoned] {
        last_lease = last_lease.max(app.job(id).await["lease_expires_at"].as_i64().unwrap());
    }
    // When the registry is down until they have run out, and starts with a 3-second grace
    let stopped = app.stop().await;
    // Wire timestamps are whole seconds: past the next one, every lease has run out.
    within(
        Duration::from_secs(5),
        "the leases to run out while the registry is down",
        || async { now() > last_lease },
    )
    .await;
    // The grace counts from the start of the new registry, a little before it answers.
    let restarted = Instant::now();
    let app = stopped
        .start(|config| config.startup_grace = Duration::from_secs(3))
        .await;

    // Then inside the grace the owner's renewal is accepted: it keeps the job and is not fenced.
    let renewal = app
        .delta(
            "owner",
            json!({"id": renewed, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(renewal["accepted"], 1);
    let legacy_renewal = app
        .delta(
            "legacy-owner",
            json!({"id": renewed_legacy, "progress": 0.5}),
        )
        .await;
    assert_eq!(legacy_renewal["accepted"], 1);
    stays_for(
        Duration::from_secs(1),
        "the abandoned job keeps its owner inside the grace",
        || async { owner(&app, &abandoned).await == "owner" },
    )
    .await;
    assert_eq!(
        owner(&app, &abandoned).await,
        "owner",
        "nothing reclaimed inside the grace"
    );

    // Without a renewal the other job is reclaimed once the grace is over (the owner keeps
    // renewing the first one meanwhile).
    within(
        Duration::from_secs(6),
        "the reclaim after the grace",
        || async {
            app.delta(
                "owner",
                json!({"id": renewed, "claim_epoch": 1, "progress": 0.6}),
            )
            .await;
            app.delta(
                "legacy-owner",
                json!({"id": renewed_legacy, "progress": 0.6}),
            )
            .await;
            owner(&app, &abandoned).await.is_null()
        },
    )
    .await;
    assert!(
        restarted.elapsed() >= Duration::from_secs(3),
        "{:?}",
        restarted.elapsed()
    );
    let job = app.job(&renewed).await;
    assert_eq!(job["owner_instance_id"], "owner");
    assert_eq!(job["claim_epoch"], 1);
    assert_eq!(owner(&app, &renewed_legacy).await, "legacy-owner");
}
