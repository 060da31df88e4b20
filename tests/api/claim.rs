//! Claims (contract §2.4, §6; §9 cases 11–15, 25, 38; decisions rows 5–7).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{assert_error, now, on_both_backends, spawn_app, Backend, Set, TestApp};

on_both_backends!(claim_takes_the_oldest_job_and_stamps_the_lease);
async fn claim_takes_the_oldest_job_and_stamps_the_lease(backend: Backend) {
    // §9 case 11
    let app = spawn_app(backend).await;
    let older = app.submit_with("c", json!({"max_duration": 120})).await;
    let younger = app.submit("c").await;
    app.set_job(&older, "submitted_at", Set::SecondsFromNow(-30))
        .await;

    let claimed = app.claim("c", "claimer-1").await.expect("work");
    assert_eq!(claimed["id"], older.as_str());
    assert_eq!(claimed["attempt_count"], 1);
    assert_eq!(claimed["claim_epoch"], 1);
    assert_eq!(claimed["max_duration"], 120);
    assert_eq!(claimed["submitted_payload"], json!({"n": 1}));
    assert_eq!(claimed["recv_cursor"], Value::Null);
    let lease = claimed["lease_expires_at"].as_i64().unwrap();
    assert!(
        (now() + 115..=now() + 121).contains(&lease),
        "lease = max_duration: {lease}"
    );
    assert_eq!(claimed.as_object().unwrap().len(), 7, "{claimed}");

    let row = app.job(&older).await;
    assert_eq!(row["owner_instance_id"], "claimer-1");
    assert_eq!(row["lease_expires_at"], lease);
    assert!(row["last_heartbeat_at"].is_i64());

    // The default lease window is 300 s.
    let next = app.claim("c", "claimer-2").await.expect("work");
    assert_eq!(next["id"], younger.as_str());
    let lease = next["lease_expires_at"].as_i64().unwrap();
    assert!((now() + 295..=now() + 301).contains(&lease), "{lease}");
}

on_both_backends!(claim_with_nothing_queued_is_an_empty_list);
async fn claim_with_nothing_queued_is_an_empty_list(backend: Backend) {
    // §9 case 12; also other capabilities and terminal jobs are not work.
    let app = spawn_app(backend).await;
    let response = app
        .post(
            "/jobs/claim",
            &json!({"capability": "c", "instance_id": "w"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"claimed": []})
    );

    app.submit("other").await;
    let cancelled = app.submit("c").await;
    app.post(&format!("/jobs/{cancelled}/cancel"), &json!({}))
        .await;
    assert_eq!(app.claim("c", "w").await, None);
}

on_both_backends!(an_over_budget_job_is_skipped_not_blocking_the_queue);
async fn an_over_budget_job_is_skipped_not_blocking_the_queue(backend: Backend) {
    // §9 case 13 and decisions row 7: the over-budget head of the queue is not claimable, and
    // younger jobs of the capability are still handed out.
    let app = spawn_app(backend).await;
    let exhausted = app.submit_with("c", json!({"max_retries": 2})).await;
    app.set_job_columns(
        &exhausted,
        &[
            ("attempt_count", Set::Int(3)),
            ("submitted_at", Set::SecondsFromNow(-60)),
        ],
    )
    .await;
    assert_eq!(app.claim("c", "w").await, None);

    let fresh = app.submit("c").await;
    let claimed = app.claim("c", "w").await.expect("the younger job");
    assert_eq!(claimed["id"], fresh.as_str());
    let untouched = app.job(&exhausted).await;
    assert_eq!(untouched["attempt_count"], 3);
    assert_eq!(untouched["owner_instance_id"], Value::Null);
}

on_both_backends!(fifo_ties_break_on_job_id);
async fn fifo_ties_break_on_job_id(backend: Backend) {
    // decisions row 5
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = app.submit("c").await;
        app.set_job(&id, "submitted_at", Set::At("2026-01-01T00:00:00Z"))
            .await;
        ids.push(id);
    }
    ids.sort();
    for expected in ids {
        assert_eq!(app.claim("c", "w").await.unwrap()["id"], expected.as_str());
    }
}

on_both_backends!(four_concurrent_claims_on_one_job_have_one_winner);
async fn four_concurrent_claims_on_one_job_have_one_winner(backend: Backend) {
    // §9 case 14
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let results = join_all((0..4).map(|i| {
        let app = &app;
        async move { app.claim("c", &format!("w{i}")).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0]["id"], id.as_str());
    assert_eq!(app.job(&id).await["attempt_count"], 1);
}

on_both_backends!(eight_claimers_take_200_jobs_exactly_once_and_never_see_false_no_work);
async fn eight_claimers_take_200_jobs_exactly_once_and_never_see_false_no_work(backend: Backend) {
    // decisions row 6: with SKIP LOCKED a claim returns work whenever claimable work exists.
    // A "no work" answer is only legitimate when every remaining row is locked by one of the
    // other 7 claims in flight, so fewer than 8 rows may still be unowned when it is given.
    // (The embedded store runs one call at a time, which meets the same bound.)
    const JOBS: usize = 200;
    const WORKERS: usize = 8;
    let app = spawn_app_many_workers(backend).await;
    let mut submitted = HashSet::new();
    for _ in 0..JOBS {
        submitted.insert(app.submit("bulk").await);
    }
    let claimed_total = AtomicUsize::new(0);
    let workers = (0..WORKERS).map(|w| {
        let (app, claimed_total) = (&app, &claimed_total);
        async move {
            let mut mine = Vec::new();
            let mut unowned_at_no_work = Vec::new();
            while claimed_total.load(Ordering::SeqCst) < JOBS {
                match app.claim("bulk", &format!("worker-{w}")).await {
                    Some(job) => {
                        claimed_total.fetch_add(1, Ordering::SeqCst);
                        mine.push(job["id"].as_str().unwrap().to_owned());
                    }
                    None => unowned_at_no_work.push(unowned(app).await),
                }
            }
            (mine, unowned_at_no_work)
        }
    });
    let results = join_all(workers).await;
    let mut claimed = Vec::new();
    for (mine, unowned_at_no_work) in &results {
        for &unowned in unowned_at_no_work {
            assert!(
                unowned < WORKERS as i64,
                "'no work' answered while {unowned} jobs were still queued"
            );
        }
        claimed.extend(mine.iter().cloned());
    }
    let unique: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), JOBS, "every job claimed exactly once");
    assert_eq!(unique, submitted, "no job lost, none claimed twice");
    assert_eq!(unowned(&app).await, 0);
    let claimed_more_than_once = app
        .job_rows()
        .await
        .iter()
        .filter(|job| job.attempt_count != 1 || job.claim_epoch != 1)
        .count();
    assert_eq!(claimed_more_than_once, 0);
}

/// Jobs without an owner, counted in one read.
async fn unowned(app: &TestApp) -> i64 {
    let rows = app.job_rows().await;
    rows.iter()
        .filter(|job| job.owner_instance_id.is_none())
        .count() as i64
}

async fn spawn_app_many_workers(backend: Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, |config| {
        config.http_workers = 2;
        config.db_pool_size = 8;
    })
    .await
}

on_both_backends!(claim_validation);
async fn claim_validation(backend: Backend) {
    // §9 case 15
    let app = spawn_app(backend).await;
    assert_error(
        app.post("/jobs/claim", &json!({"instance_id": "w"})).await,
        400,
        "capability is required",
    )
    .await;
    assert_error(
        app.post(
            "/jobs/claim",
            &json!({"capability": "", "instance_id": "w"}),
        )
        .await,
        400,
        "capability is required",
    )
    .await;
    assert_error(
        app.post("/jobs/claim", &json!({"capability": "c"})).await,
        400,
        "instance_id is required",
    )
    .await;
    assert_error(
        app.post("/jobs/claim", &json!({})).await,
        400,
        "capability is required",
    )
    .await;
    let response = app.post_raw("/jobs/claim", "{oops").await;
    assert_eq!(response.status(), 400);
}

on_both_backends!(claim_from_an_unregistered_instance_is_served);
async fn claim_from_an_unregistered_instance_is_served(backend: Backend) {
    // real-clients §8.1: the SDK claims before its first heartbeat completes.
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let claimed = app.claim("c", "never-registered-1234").await.unwrap();
    assert_eq!(claimed["id"], id.as_str());
}

on_both_backends!(get_exposes_the_fencing_fields_after_a_claim);
async fn get_exposes_the_fencing_fields_after_a_claim(backend: Backend) {
    // §9 cases 25 and 38
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    assert_eq!(app.claim("c", "replica-a").await.unwrap()["claim_epoch"], 1);
    let job = app.job(&id).await;
    assert_eq!(job["claim_epoch"], 1);
    assert_eq!(job["owner_instance_id"], "replica-a");
    assert_eq!(job["attempt_count"], 1);
    assert!(job["lease_expires_at"].as_i64().unwrap() > now());
}
