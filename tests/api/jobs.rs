//! Submit, read and list (contract §2.1–§2.3; §9 cases 1–4, 49, 50).

use serde_json::{json, Value};

use crate::helpers::{assert_error, now, on_both_backends, spawn_app, Backend, Set};

on_both_backends!(push_mode_submit_pins_the_owner);
async fn push_mode_submit_pins_the_owner(backend: Backend) {
    // §9 case 1
    let app = spawn_app(backend).await;
    let response = app
        .post(
            "/jobs",
            &json!({"capability": "plan_trip", "submitted_by": "orch-1",
                    "submitted_payload": {"user_id": "u-123"}, "owner_instance_id": "rep-2"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "working");
    assert_eq!(created["owner_instance_id"], "rep-2");
    let id = created["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);

    let job = app.job(id).await;
    assert_eq!(job["attempt_count"], 0);
    assert_eq!(job["claim_epoch"], 0);
    assert_eq!(job["max_retries"], 1);
    assert_eq!(job["submitted_by"], "orch-1");
    assert_eq!(job["owner_instance_id"], "rep-2");
    assert_eq!(job["submitted_payload"], json!({"user_id": "u-123"}));
    assert_eq!(
        job["lease_expires_at"],
        Value::Null,
        "no lease before the first delta"
    );
    assert!(job["submitted_at"].as_i64().unwrap() >= now() - 5);
    // A pinned job is not claimable by anyone.
    assert_eq!(app.claim("plan_trip", "rep-2").await, None);
}

on_both_backends!(pull_mode_submit_has_no_owner_and_every_field_present);
async fn pull_mode_submit_has_no_owner_and_every_field_present(backend: Backend) {
    // §9 case 2, and the wire rule that nullable fields are present as null.
    let app = spawn_app(backend).await;
    for owner in [json!(null), json!("")] {
        let response = app
            .post(
                "/jobs",
                &json!({"capability": "c", "submitted_by": "s", "submitted_payload": {},
                        "owner_instance_id": owner}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["owner_instance_id"], Value::Null);
        let job = app.job(created["id"].as_str().unwrap()).await;
        let fields = job.as_object().unwrap();
        for field in [
            "id",
            "capability",
            "owner_instance_id",
            "claim_epoch",
            "status",
            "progress",
            "progress_message",
            "result",
            "error",
            "submitted_payload",
            "recv_cursor",
            "attempt_count",
            "max_retries",
            "max_duration",
            "total_deadline",
            "lease_expires_at",
            "last_heartbeat_at",
            "submitted_at",
            "submitted_by",
        ] {
            assert!(fields.contains_key(field), "missing {field}: {job}");
        }
        assert_eq!(fields.len(), 19, "{job}");
        assert_eq!(job["owner_instance_id"], Value::Null);
        assert_eq!(job["recv_cursor"], Value::Null);
    }
}

on_both_backends!(submit_keeps_limits_and_the_absolute_deadline);
async fn submit_keeps_limits_and_the_absolute_deadline(backend: Backend) {
    let app = spawn_app(backend).await;
    let deadline = now() + 3600;
    let id = app
        .submit_with(
            "c",
            json!({"max_retries": 0, "max_duration": 90, "total_deadline": deadline}),
        )
        .await;
    let job = app.job(&id).await;
    assert_eq!(job["max_retries"], 0);
    assert_eq!(job["max_duration"], 90);
    assert_eq!(job["total_deadline"], deadline);
}

on_both_backends!(submit_validation_follows_the_reference_order);
async fn submit_validation_follows_the_reference_order(backend: Backend) {
    // §9 case 3
    let app = spawn_app(backend).await;
    let cases = [
        (
            json!({"submitted_by": "s", "submitted_payload": {}}),
            "capability is required",
        ),
        (
            json!({"capability": "", "submitted_by": "s", "submitted_payload": {}}),
            "capability is required",
        ),
        (
            json!({"capability": "c", "submitted_payload": {}}),
            "submitted_by is required",
        ),
        (
            json!({"capability": "c", "submitted_by": "s"}),
            "submitted_payload is required",
        ),
        (
            json!({"capability": "c", "submitted_by": "s", "submitted_payload": null}),
            "submitted_payload is required",
        ),
        (
            json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}, "max_retries": -1}),
            "max_retries must be non-negative",
        ),
        (
            json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}, "max_duration": 0}),
            "max_duration must be positive",
        ),
        (
            json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}, "max_duration": -3}),
            "max_duration must be positive",
        ),
    ];
    for (body, message) in cases {
        assert_error(app.post("/jobs", &body).await, 400, message).await;
    }
    // A payload that is not an object is a decode error, reported before any field check.
    let response = app
        .post(
            "/jobs",
            &json!({"submitted_payload": [1], "submitted_by": "s"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON payload: "),
        "{body}"
    );
    // Out-of-range numbers are client mistakes, never a database error.
    for extra in [
        json!({"max_duration": 1_i64 << 40}),
        json!({"total_deadline": 1_i64 << 50}),
        json!({"total_deadline": -1}),
    ] {
        let mut body = json!({"capability": "c", "submitted_by": "s", "submitted_payload": {}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(app.post("/jobs", &body).await.status(), 400, "{body}");
    }
}

on_both_backends!(malformed_and_mistyped_bodies_are_400_invalid_json);
async fn malformed_and_mistyped_bodies_are_400_invalid_json(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, expected) in [
        ("{not json", "Invalid JSON payload: "),
        ("", "Invalid JSON payload: EOF"),
        ("   ", "Invalid JSON payload: EOF"),
        (
            r#"{"capability":"c","submitted_by":"s","submitted_payload":{},"max_retries":"x"}"#,
            "Invalid JSON payload: ",
        ),
        (
            r#"{"capability":"c","submitted_by":"s","submitted_payload":{},"max_retries":1.5}"#,
            "Invalid JSON payload: ",
        ),
        (r#"[1,2]"#, "Invalid JSON payload: "),
    ] {
        let response = app.post_raw("/jobs", body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.starts_with(expected), "{body:?} -> {message}");
        if expected.ends_with("EOF") {
            assert_eq!(message, expected);
        }
    }
}

on_both_backends!(unknown_fields_from_a_newer_client_are_ignored);
async fn unknown_fields_from_a_newer_client_are_ignored(backend: Backend) {
    // decisions row 2
    let app = spawn_app(backend).await;
    let response = app
        .post(
            "/jobs",
            &json!({"capability": "c", "submitted_by": "s", "submitted_payload": {},
                    "priority": 7, "labels": {"team": "x"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let claimed = app
        .post(
            "/jobs/claim",
            &json!({"capability": "c", "instance_id": "w", "batch_size": 4}),
        )
        .await;
    assert_eq!(claimed.status(), 200);
    let batch = app
        .post(
            "/jobs/batch",
            &json!({"instance_id": "w", "trace": true,
                    "deltas": [{"id": id, "claim_epoch": 1, "progress": 0.5, "eta_seconds": 3}]}),
        )
        .await;
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["accepted"], 1, "{batch}");
}

on_both_backends!(get_unknown_job_is_404);
async fn get_unknown_job_is_404(backend: Backend) {
    // §9 case 4
    let app = spawn_app(backend).await;
    assert_error(
        app.get("/jobs/does-not-exist").await,
        404,
        "job not found: does-not-exist",
    )
    .await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.get(&format!("/jobs/{missing}")).await,
        404,
        &format!("job not found: {missing}"),
    )
    .await;
    // Ids are compared as minted: an upper-cased id names no job.
    let id = app.submit("c").await;
    let upper = id.to_uppercase();
    assert_error(
        app.get(&format!("/jobs/{upper}")).await,
        404,
        &format!("job not found: {upper}"),
    )
    .await;
}

on_both_backends!(progress_keeps_64_bit_precision);
async fn progress_keeps_64_bit_precision(backend: Backend) {
    // decisions row 20
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    app.claim("c", "w").await.unwrap();
    app.delta(
        "w",
        json!({"id": id, "claim_epoch": 1, "progress": 0.123456789012}),
    )
    .await;
    assert_eq!(app.job(&id).await["progress"], 0.123456789012);
}

async fn list(app: &crate::helpers::TestApp, query: &str) -> Value {
    let response = app.get(&format!("/jobs{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends!(list_of_an_empty_registry);
async fn list_of_an_empty_registry(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        list(&app, "").await,
        json!({"jobs": [], "next_cursor": null})
    );
}

on_both_backends!(list_validation);
async fn list_validation(backend: Backend) {
    // §9 case 49 (validation half)
    let app = spawn_app(backend).await;
    for limit in ["0", "201", "-1"] {
        assert_error(
            app.get(&format!("/jobs?limit={limit}")).await,
            400,
            &format!("limit must be in [1, 200], got {limit}"),
        )
        .await;
    }
    assert_error(
        app.get("/jobs?status=running").await,
        400,
        r#"invalid status "running": must be one of working,input_required,completed,failed,cancelled"#,
    )
    .await;
    let response = app.get("/jobs?cursor=@@@").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("invalid cursor"),
        "{body}"
    );
    // Non-integers are refused by the parameter binder, with its own body shape.
    for (query, name, value) in [
        ("limit=abc", "limit", "abc"),
        ("submitted_since=x", "submitted_since", "x"),
        ("limit=", "limit", ""),
    ] {
        let response = app.get(&format!("/jobs?{query}")).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"msg": format!("Invalid format for parameter {name}: error binding string parameter: strconv.ParseInt: parsing \"{value}\": invalid syntax")})
        );
    }
}

on_both_backends!(list_filters_and_orders_newest_first);
async fn list_filters_and_orders_newest_first(backend: Backend) {
    // §9 case 49 (filter half)
    let app = spawn_app(backend).await;
    let a = app.submit("alpha").await;
    let b = app.submit("beta").await;
    let c = app.submit("alpha").await;
    let d = app.submit("alpha").await;
    // Spread submission times so "newest first" is observable.
    for (id, age) in [(&a, 40), (&b, 30), (&c, 20), (&d, 10)] {
        app.set_job(id, "submitted_at", Set::SecondsFromNow(-age))
            .await;
    }
    app.claim("alpha", "w1").await.unwrap(); // claims a (oldest alpha)
    app.delta(
        "w1",
        json!({"id": a, "claim_epoch": 1, "status": "completed"}),
    )
    .await;
    app.claim("alpha", "w2").await.unwrap(); // claims c
    app.delta(
        "w2",
        json!({"id": c, "claim_epoch": 1, "status": "failed", "error": "boom"}),
    )
    .await;

    assert_eq!(
        ids(&list(&app, "").await),
        vec![d.clone(), c.clone(), b.clone(), a.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?status=completed,failed").await),
        vec![c.clone(), a.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?status=%20completed%20,,").await),
        vec![a.clone()]
    );
    assert_eq!(ids(&list(&app, "?status=").await).len(), 4);
    assert_eq!(ids(&list(&app, "?capability=beta").await), vec![b.clone()]);
    assert_eq!(
        ids(&list(&app, "?owner_instance_id=w2").await),
        vec![c.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?owner_instance_id=%20w2%20").await),
        vec![c.clone()]
    );
    let since = now() - 25;
    assert_eq!(
        ids(&list(&app, &format!("?submitted_since={since}")).await),
        vec![d.clone(), c.clone()]
    );
    assert_eq!(ids(&list(&app, "?submitted_since=0").await).len(), 4);
    for far_future in ["253402300800", "9223372036854775807"] {
        assert!(
            ids(&list(&app, &format!("?submitted_since={far_future}")).await).is_empty(),
            "a moment past year 9999 ({far_future}) is still a filter: nothing was submitted since"
        );
    }
    assert_eq!(
        ids(&list(&app, "?capability=alpha&status=working").await),
        vec![d]
    );
}

on_both_backends!(list_pages_through_every_row_exactly_once);
async fn list_pages_through_every_row_exactly_once(backend: Backend) {
    // §9 case 50: 5 rows, limit 2 -> [5,4], [3,2], [1]; rows sharing submitted_at order by id.
    let app = spawn_app(backend).await;
    let mut submitted = Vec::new();
    for i in 0..5 {
        let id = app.submit("c").await;
        app.set_job(&id, "submitted_at", Set::SecondsFromNow(-(100 - i)))
            .await;
        submitted.push(id);
    }
    submitted.reverse();
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = list(&app, &query).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, submitted);

    // Ties on submitted_at: id DESC, across page boundaries, without gaps.
    let app = spawn_app(backend).await;
    let mut tied = Vec::new();
    for _ in 0..7 {
        let id = app.submit("c").await;
        app.set_job(&id, "submitted_at", Set::At("2026-01-01T00:00:00Z"))
            .await;
        tied.push(id);
    }
    tied.sort();
    tied.reverse();
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page = list(&app, &query).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, tied);
}
