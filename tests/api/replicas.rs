//! Several replicas on one database (issue 7): wake-ups cross replicas through PostgreSQL
//! LISTEN/NOTIFY, immediately rather than at the next re-check.
//!
//! PostgreSQL only, all of it: the embedded file is served by one process, so there are no
//! other replicas to wake.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{postgres_only, spawn_app, Backend, TestApp};

async fn events(app: &TestApp, id: &str, query: &str) -> Value {
    app.get(&format!("/jobs/{id}/events{query}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until replica `b` is listening (its first notification round trip).
async fn listening(a: &TestApp, b: &TestApp) {
    let probe = a.submit("probe").await;
    let started = Instant::now();
    loop {
        let (page, _) = futures_util::join!(events(b, &probe, "?wait=1&types=ping"), async {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            a.post(&format!("/jobs/{probe}/events"), &json!({"type": "ping"}))
                .await
        });
        if !page["events"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replica never heard a notification"
        );
    }
}

postgres_only!(a_post_through_one_replica_wakes_a_long_poll_on_another);
async fn a_post_through_one_replica_wakes_a_long_poll_on_another(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    listening(&a, &b).await;
    let id = a.submit("c").await;
    let started = Instant::now();
    let (page, _) = futures_util::join!(events(&b, &id, "?wait=10&types=work"), async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        a.post(&format!("/jobs/{id}/events"), &json!({"type": "work"}))
            .await
    });
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
    let (page, _) = futures_util::join!(
        events(&b, &id, "?wait=10&instance_id=worker&claim_epoch=1"),
        async {
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            a.post(&format!("/jobs/{id}/cancel"), &json!({"reason": "stop"}))
                .await
        }
    );
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
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(b.claim("c", "w").await, None);
    a.http
        .delete(a.url("/admin/drain?scope=fleet"))
        .send()
        .await
        .unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    assert!(b.claim("c", "w").await.is_some());
}
