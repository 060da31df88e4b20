//! Several replicas on one database (issue 7): wake-ups cross replicas through PostgreSQL
//! LISTEN/NOTIFY, immediately rather than at the next re-check.
//!
//! PostgreSQL only, all of it: the embedded file is served by one process, so there are no
//! other replicas to wake.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    postgres_only, spawn_app, within, Backend, RegistryProcess, TestApp, TestDatabase,
};

/// Waits until replica `b` is listening: a ping posted through `a` wakes a long-poll parked on
/// `b` (one notification round trip).
async fn listening(a: &TestApp, b: &TestApp) {
    let probe = a.submit("probe").await;
    let pings = std::cell::Cell::new(0);
    within(
        Duration::from_secs(30),
        "replica b to hear a notification",
        || async {
            // Only pings newer than the last one: an unheard ping must not count next round.
            let query = format!("?wait=1&types=ping&after={}", pings.get());
            let poll = b.parked_events(&probe, &query).await;
            a.post(&format!("/jobs/{probe}/events"), &json!({"type": "ping"}))
                .await;
            pings.set(pings.get() + 1);
            !poll.json().await["events"].as_array().unwrap().is_empty()
        },
    )
    .await;
}

/// Whether this replica is draining, as `GET /admin/drain` says.
async fn draining(app: &TestApp) -> bool {
    let state: Value = app.get("/admin/drain").await.json().await.unwrap();
    state["draining"] == true
}

postgres_only!(a_post_through_one_replica_wakes_a_long_poll_on_another);
async fn a_post_through_one_replica_wakes_a_long_poll_on_another(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    listening(&a, &b).await;
    let id = a.submit("c").await;
    let started = Instant::now();
    let poll = b.parked_events(&id, "?wait=10&types=work").await;
    a.post(&format!("/jobs/{id}/events"), &json!({"type": "work"}))
        .await;
    let page = poll.json().await;
    assert_eq!(page["events"][0]["type"], "work");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1_000),
        "woken by the notification, not a re-check: {waited:?}"
    );
}

postgres_only!(a_cancel_through_one_replica_wakes_the_executor_on_another);
async fn a_cancel_through_one_replica_wakes_the_executor_on_another(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    listening(&a, &b).await;
    let id = a.submit("c").await;
    b.claim("c", "worker").await.unwrap();
    let started = Instant::now();
    let poll = b
        .parked_events(&id, "?wait=10&instance_id=worker&claim_epoch=1")
        .await;
    a.post(&format!("/jobs/{id}/cancel"), &json!({"reason": "stop"}))
        .await;
    let page = poll.json().await;
    assert_eq!(page["events"][0]["type"], "cancelled");
    assert!(started.elapsed() < Duration::from_millis(1_000));
}

postgres_only!(a_fleet_drain_is_heard_at_once);
async fn a_fleet_drain_is_heard_at_once(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    listening(&a, &b).await;
    b.submit("c").await;
    a.http
        .post(a.url("/admin/drain?scope=fleet"))
        .send()
        .await
        .unwrap();
    // Well inside the one-second re-read: the notification got there first.
    within(
        Duration::from_millis(500),
        "replica b to hear the fleet drain before its re-read",
        || draining(&b),
    )
    .await;
    assert_eq!(b.claim("c", "w").await, None);
    a.http
        .delete(a.url("/admin/drain?scope=fleet"))
        .send()
        .await
        .unwrap();
    within(
        Duration::from_millis(500),
        "replica b to hear the resume before its re-read",
        || async { !draining(&b).await },
    )
    .await;
    assert!(b.claim("c", "w").await.is_some());
}

postgres_only!(a_claim_whose_replica_died_is_reclaimed_by_another_at_expiry);
async fn a_claim_whose_replica_died_is_reclaimed_by_another_at_expiry(backend: Backend) {
    // Two replica processes; the claim is made through `a`, which is then killed (SIGKILL) while
    // the lease still runs. `b` never saw the claim itself, only `a`'s announcement of it.
    let database = TestDatabase::create(backend).await;
    let url = database.url();
    let directory = std::env::temp_dir();
    let env = [("DATABASE_URL", url.as_str())];
    let a = RegistryProcess::start(&directory, &env);
    let b = RegistryProcess::start(&directory, &env);
    let (status, submitted) = b
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "c", "submitted_by": "t", "submitted_payload": {}, "max_duration": 3})),
        )
        .await;
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_owned();
    let (_, claimed) = a
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "c", "instance_id": "w"})),
        )
        .await;
    assert_eq!(claimed["claimed"][0]["id"], id.as_str(), "{claimed}");
    let lease = claimed["claimed"][0]["lease_expires_at"].as_i64().unwrap();
    // Half the lease: `a` announces every 100 ms, so `b` has heard of the claim by then.
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    a.kill();

    let reclaimed = within(
        Duration::from_secs(10),
        "b to reclaim the lease",
        || async {
            let (_, job) = b.send("GET", &format!("/jobs/{id}"), None).await;
            job["owner_instance_id"].is_null()
        },
    )
    .await;
    let job = b.send("GET", &format!("/jobs/{id}"), None).await.1;
    assert_eq!(
        (&job["status"], &job["claim_epoch"]),
        (&json!("working"), &json!(1))
    );
    assert!(
        crate::helpers::now() <= lease + 3,
        "reclaimed about a second after the lease ended (after {reclaimed:?}), not at the sweep"
    );
}
