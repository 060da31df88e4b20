//! Event logs: post, read, filters, long-poll, executor fencing and lease extension
//! (contract §2.6, §2.7, §3.3; §9 cases 31–37, 53–55; decisions rows 14 and 15).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, now, on_both_backends, spawn_app, spawn_app_with, stays_for, Backend, Parked,
    Set, TestApp,
};

async fn claimed(app: &TestApp, owner: &str, extra: Value) -> String {
    let id = app.submit_with("c", extra).await;
    assert_eq!(
        app.claim("c", owner).await.expect("claim")["id"],
        id.as_str()
    );
    id
}

async fn post_event(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/jobs/{id}/events"), &body).await
}

async fn events(app: &TestApp, id: &str, query: &str) -> Value {
    let response = app.get(&format!("/jobs/{id}/events{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// The page a parked long-poll answers with.
async fn answered(poll: Parked) -> Value {
    let response = poll.response().await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn seqs(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

async fn lease(app: &TestApp, id: &str) -> Value {
    app.job(id).await["lease_expires_at"].clone()
}

on_both_backends!(post_and_read_an_event);
async fn post_and_read_an_event(backend: Backend) {
    // §9 case 53
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let response = post_event(
        &app,
        &id,
        json!({"type": " extend_deadline ", "payload": {"by_seconds": 60}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let posted: Value = response.json().await.unwrap();
    assert_eq!(posted["job_id"], id.as_str());
    assert_eq!(posted["seq"], 1);
    assert!(posted["created_at"].as_i64().unwrap() >= now() - 5);
    let page = events(&app, &id, "").await;
    assert_eq!(page["next_after"], 1);
    let event = &page["events"][0];
    assert_eq!(event["type"], "extend_deadline", "stored trimmed");
    assert_eq!(event["payload"], json!({"by_seconds": 60}));
    assert_eq!(event["job_id"], id.as_str());
    for field in ["trace_context", "posted_by"] {
        assert_eq!(event[field], Value::Null);
    }
    assert_eq!(event.as_object().unwrap().len(), 7);
}

on_both_backends!(payloads_of_any_shape_and_trace_contexts_round_trip);
async fn payloads_of_any_shape_and_trace_contexts_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    for payload in [json!([1, 2]), json!("text"), json!(3.5), json!(true)] {
        post_event(&app, &id, json!({"type": "t", "payload": payload})).await;
    }
    post_event(
        &app,
        &id,
        json!({"type": "t", "payload": null, "trace_context": {"traceparent": "00-abc"}}),
    )
    .await;
    post_event(&app, &id, json!({"type": "t"})).await;
    let page = events(&app, &id, "").await;
    let payloads: Vec<Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        vec![
            json!([1, 2]),
            json!("text"),
            json!(3.5),
            json!(true),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(
        page["events"][4]["trace_context"],
        json!({"traceparent": "00-abc"})
    );
}

on_both_backends!(post_event_errors);
async fn post_event_errors(backend: Backend) {
    // §9 case 53 (errors)
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        post_event(&app, &missing.to_string(), json!({"type": "x"})).await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    let id = claimed(&app, "p", json!({})).await;
    assert_error(
        post_event(&app, &id, json!({})).await,
        400,
        "type is required",
    )
    .await;
    assert_error(
        post_event(&app, &id, json!({"type": "   "})).await,
        400,
        "type is required",
    )
    .await;
    assert_eq!(
        post_event(&app, &id, json!({"type": "x", "trace_context": [1]}))
            .await
            .status(),
        400
    );
    app.delta(
        "p",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    assert_error(
        post_event(&app, &id, json!({"type": "answer"})).await,
        409,
        "job is already in a terminal state",
    )
    .await;
}

on_both_backends!(concurrent_posters_get_gap_free_seqs_without_errors);
async fn concurrent_posters_get_gap_free_seqs_without_errors(backend: Backend) {
    // §9 case 54 and decisions row 15: 10 simultaneous posters -> seqs 1..10, no 503.
    let app = spawn_app_with(backend, |config| {
        config.http_workers = 2;
        config.db_pool_size = 10;
    })
    .await;
    let id = app.submit("c").await;
    let responses = join_all((0..10).map(|i| {
        let (app, id) = (&app, &id);
        async move { post_event(app, id, json!({"type": "work", "payload": {"i": i}})).await }
    }))
    .await;
    let mut seqs = BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        seqs.insert(
            response.json::<Value>().await.unwrap()["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(seqs, (1..=10).collect());
    assert_eq!(
        self::seqs(&events(&app, &id, "").await),
        (1..=10).collect::<Vec<_>>()
    );
}

on_both_backends!(filters_after_and_limit);
async fn filters_after_and_limit(backend: Backend) {
    // §9 case 55 (filters)
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    for kind in ["A", "B", "C", "A", "B"] {
        post_event(&app, &id, json!({"type": kind})).await;
    }
    assert_eq!(
        seqs(&events(&app, &id, "?types=A,B").await),
        vec![1, 2, 4, 5]
    );
    assert_eq!(seqs(&events(&app, &id, "?types=%20C%20,,").await), vec![3]);
    assert_eq!(
        seqs(&events(&app, &id, "?types=").await),
        vec![1, 2, 3, 4, 5]
    );
    let page = events(&app, &id, "?after=2").await;
    assert_eq!(seqs(&page), vec![3, 4, 5]);
    assert_eq!(page["next_after"], 5);
    let page = events(&app, &id, "?after=2&limit=2").await;
    assert_eq!(seqs(&page), vec![3, 4]);
    assert_eq!(page["next_after"], 4);
    assert_eq!(
        seqs(&events(&app, &id, "?limit=0").await).len(),
        5,
        "limit <= 0 means 100"
    );
    assert_eq!(
        seqs(&events(&app, &id, "?after=-3").await).len(),
        5,
        "after <= 0 means 0"
    );
    let page = events(&app, &id, "?after=9").await;
    assert_eq!(page, json!({"events": [], "next_after": 9}));
    let page = events(&app, &id, "?types=Z").await;
    assert_eq!(page, json!({"events": [], "next_after": 0}));
}

on_both_backends!(reading_events_of_a_missing_job_is_404);
async fn reading_events_of_a_missing_job_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.get(&format!("/jobs/{missing}/events")).await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    assert_error(
        app.get(&format!("/jobs/{missing}/events?wait=2")).await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
}

on_both_backends!(a_long_poll_with_nothing_to_read_times_out_empty);
async fn a_long_poll_with_nothing_to_read_times_out_empty(backend: Backend) {
    // §9 case 55 (timeout)
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let started = Instant::now();
    let page = events(&app, &id, "?wait=1").await;
    let waited = started.elapsed();
    assert_eq!(page, json!({"events": [], "next_after": 0}));
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

on_both_backends!(a_parked_long_poll_wakes_on_a_post);
async fn a_parked_long_poll_wakes_on_a_post(backend: Backend) {
    // §9 case 55 (wake) and decisions row 14: woken in memory, not by a timer.
    // Given a parked long-poll for `work` events
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let started = Instant::now();
    let poll = app.parked_events(&id, "?wait=5&types=work").await;
    // When an event of another type is posted, it goes on waiting
    post_event(&app, &id, json!({"type": "noise"})).await;
    stays_for(
        Duration::from_millis(100),
        "the long-poll waits on after a post of another type",
        || async { !poll.is_finished() },
    )
    .await;
    // When a `work` event is posted
    post_event(&app, &id, json!({"type": "work", "payload": {"n": 1}})).await;
    // Then it answers with that one, at once
    let page = answered(poll).await;
    let waited = started.elapsed();
    assert_eq!(
        seqs(&page),
        vec![2],
        "a post of another type does not end the wait"
    );
    assert_eq!(page["next_after"], 2);
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
}

on_both_backends!(a_cancel_wakes_a_parked_executor);
async fn a_cancel_wakes_a_parked_executor(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "p", json!({})).await;
    let started = Instant::now();
    let poll = app
        .parked_events(&id, "?wait=10&instance_id=p&claim_epoch=1")
        .await;
    app.post(&format!("/jobs/{id}/cancel"), &json!({"reason": "stop"}))
        .await;
    let page = answered(poll).await;
    assert_eq!(page["events"][0]["type"], "cancelled");
    assert!(started.elapsed() < Duration::from_secs(2));
}

on_both_backends!(too_many_parked_long_polls_get_503_not_memory);
async fn too_many_parked_long_polls_get_503_not_memory(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.max_long_polls = 1).await;
    let id = app.submit("c").await;
    let first = app.parked_events(&id, "?wait=2").await;
    let second = app.get(&format!("/jobs/{id}/events?wait=2")).await;
    let first = answered(first).await;
    assert_eq!(first["events"], json!([]));
    assert_eq!(second.status(), 503);
}

on_both_backends!(an_executor_read_extends_the_lease);
async fn an_executor_read_extends_the_lease(backend: Backend) {
    // §9 case 31
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    app.set_job(&id, "lease_expires_at", Set::SecondsFromNow(5))
        .await;
    let before = lease(&app, &id).await.as_i64().unwrap();
    events(&app, &id, "?instance_id=replica-a&claim_epoch=1").await;
    let after = lease(&app, &id).await.as_i64().unwrap();
    assert!(after > before + 200, "{before} -> {after}");
}

on_both_backends!(an_observer_read_has_no_side_effect);
async fn an_observer_read_has_no_side_effect(backend: Backend) {
    // §9 case 32
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    app.set_job(&id, "lease_expires_at", Set::SecondsFromNow(5))
        .await;
    let before = app.job(&id).await;
    events(&app, &id, "").await;
    events(&app, &id, "?instance_id=").await;
    let after = app.job(&id).await;
    assert_eq!(before["lease_expires_at"], after["lease_expires_at"]);
    assert_eq!(before["last_heartbeat_at"], after["last_heartbeat_at"]);
}

on_both_backends!(a_stale_executor_read_is_claim_superseded);
async fn a_stale_executor_read_is_claim_superseded(backend: Backend) {
    // §9 case 33
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({"max_retries": 2})).await;
    for query in [
        "?instance_id=replica-a&claim_epoch=0",
        "?instance_id=replica-b&claim_epoch=1",
    ] {
        assert_error(
            app.get(&format!("/jobs/{id}/events{query}")).await,
            409,
            "claim_superseded",
        )
        .await;
    }
    // Fenced before any wait, and never renews the lease.
    let before = lease(&app, &id).await;
    let started = Instant::now();
    let response = app
        .get(&format!(
            "/jobs/{id}/events?instance_id=replica-a&claim_epoch=0&wait=5"
        ))
        .await;
    assert_eq!(response.status(), 409);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lease(&app, &id).await, before);
    // An unowned (reclaimed) live job fences every executor.
    app.post(&format!("/jobs/{id}/reclaim"), &json!({})).await;
    assert_eq!(
        app.get(&format!(
            "/jobs/{id}/events?instance_id=replica-a&claim_epoch=1"
        ))
        .await
        .status(),
        409
    );
}

on_both_backends!(an_executor_read_of_a_terminal_job_is_served_without_writing);
async fn an_executor_read_of_a_terminal_job_is_served_without_writing(backend: Backend) {
    // §9 case 34
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    app.delta(
        "replica-a",
        json!({"id": id, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    let before = app.job(&id).await;
    events(&app, &id, "?instance_id=replica-a&claim_epoch=999").await;
    let after = app.job(&id).await;
    assert_eq!(before["lease_expires_at"], after["lease_expires_at"]);
    assert_eq!(before["last_heartbeat_at"], after["last_heartbeat_at"]);
}

on_both_backends!(an_executor_read_is_capped_by_total_deadline);
async fn an_executor_read_is_capped_by_total_deadline(backend: Backend) {
    // §9 case 35
    let app = spawn_app(backend).await;
    let deadline = now() + 10;
    let id = claimed(
        &app,
        "replica-a",
        json!({"max_duration": 300, "total_deadline": deadline}),
    )
    .await;
    app.set_job(&id, "lease_expires_at", Set::SecondsFromNow(2))
        .await;
    events(&app, &id, "?instance_id=replica-a&claim_epoch=1").await;
    let lease = lease(&app, &id).await.as_i64().unwrap();
    assert!(lease <= deadline, "{lease} > {deadline}");
    assert!(
        lease >= now() + 5,
        "still extended up to the deadline: {lease}"
    );
}

on_both_backends!(an_executor_read_is_capped_by_the_stale_ceiling);
async fn an_executor_read_is_capped_by_the_stale_ceiling(backend: Backend) {
    // §3.3: without total_deadline, an opt-in stale timeout S caps at submitted_at + max(S, max_duration).
    let app = spawn_app_with(backend, |config| {
        config.job_stale_timeout = Some(Duration::from_secs(60))
    })
    .await;
    let id = claimed(&app, "replica-a", json!({})).await;
    app.set_job(&id, "lease_expires_at", Set::SecondsFromNow(2))
        .await;
    events(&app, &id, "?instance_id=replica-a&claim_epoch=1").await;
    let job = app.job(&id).await;
    let ceiling = job["submitted_at"].as_i64().unwrap() + 60;
    let lease = job["lease_expires_at"].as_i64().unwrap();
    assert!(
        lease <= ceiling && lease >= ceiling - 5,
        "{lease} vs {ceiling}"
    );
}

on_both_backends!(an_executor_read_never_shortens_a_lease);
async fn an_executor_read_never_shortens_a_lease(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    app.set_job(&id, "lease_expires_at", Set::SecondsFromNow(3600))
        .await;
    let before = lease(&app, &id).await;
    events(&app, &id, "?instance_id=replica-a&claim_epoch=1").await;
    assert_eq!(lease(&app, &id).await, before);
}

on_both_backends!(half_an_identity_is_400);
async fn half_an_identity_is_400(backend: Backend) {
    // §9 case 36
    let app = spawn_app(backend).await;
    let id = claimed(&app, "replica-a", json!({})).await;
    for query in [
        "?instance_id=replica-a",
        "?claim_epoch=1",
        "?instance_id=&claim_epoch=1",
    ] {
        assert_error(
            app.get(&format!("/jobs/{id}/events{query}")).await,
            400,
            "instance_id and claim_epoch must be supplied together (both for an executor read, or neither for an observer read)",
        )
        .await;
    }
    let response = app
        .get(&format!(
            "/jobs/{id}/events?instance_id=replica-a&claim_epoch=x"
        ))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"msg": "Invalid format for parameter claim_epoch: error binding string parameter: strconv.ParseInt: parsing \"x\": invalid syntax"})
    );
}

on_both_backends!(an_executor_read_of_a_missing_job_is_404);
async fn an_executor_read_of_a_missing_job_is_404(backend: Backend) {
    // §9 case 37
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.get(&format!(
            "/jobs/{missing}/events?instance_id=replica-a&claim_epoch=1"
        ))
        .await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
}

on_both_backends!(the_input_required_flow_end_to_end);
async fn the_input_required_flow_end_to_end(backend: Backend) {
    // §5.3, as the real SDK drives it: ask, park on `answer`, get woken by the consumer's post.
    let app = spawn_app(backend).await;
    let id = claimed(&app, "producer", json!({})).await;
    app.delta("producer", json!({"id": id, "claim_epoch": 1, "status": "input_required", "progress_message": "Approve $42?"})).await;
    let poll = app
        .parked_events(
            &id,
            "?after=0&wait=9&limit=100&types=answer&instance_id=producer&claim_epoch=1",
        )
        .await;
    let posted = post_event(
        &app,
        &id,
        json!({"type": "answer", "payload": {"approved": true}}),
    )
    .await;
    let page = answered(poll).await;
    assert_eq!(posted.status(), 200);
    assert_eq!(page["events"][0]["payload"], json!({"approved": true}));
    let response = app
        .delta("producer", json!({"id": id, "claim_epoch": 1, "status": "completed", "result": {"ok": 1}, "recv_cursor": {"answer": 1}}))
        .await;
    assert_eq!(response["accepted"], 1);
    let job = app.job(&id).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["recv_cursor"], json!({"answer": 1}));
}
