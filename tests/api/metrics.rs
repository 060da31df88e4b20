//! `GET /metrics` (docs/configuration.md#metrics): counters, gauges and histograms move as jobs
//! do, on both backends; the endpoint lives on the admin port when there is one, and is gone
//! when metrics are off.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, postgres_only, spawn_app, spawn_app_with, within, Backend, Set, TestApp,
};

/// One line of a Prometheus text page: name, labels (sorted), value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus text page.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                None => (series, ""),
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=\"value\"");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            labels.sort();
            (name.to_owned(), labels, value)
        })
        .collect()
}

/// The value of the one series named `name` with exactly these labels.
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.sort();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == wanted)
        .map(|(_, _, v)| v)
}

async fn scrape_at(app: &TestApp, base: &str) -> String {
    let response = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

pub(crate) async fn scrape(app: &TestApp) -> String {
    scrape_at(app, &app.address).await
}

async fn register_worker(app: &TestApp, agent_id: &str) {
    let response = app
        .post(
            "/heartbeat",
            &json!({"agent_id": agent_id, "tools": [{"function_name": "f", "capability": "c"}]}),
        )
        .await;
    assert!(response.status().is_success());
}

on_both_backends!(metrics_follow_a_scripted_job_sequence);
async fn metrics_follow_a_scripted_job_sequence(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = scrape(&app).await;
    for state in ["queued", "working", "completed", "failed", "cancelled"] {
        assert_eq!(
            value(&before, "mesh_registry_jobs", &[("status", state)]),
            Some(0.0)
        );
    }
    assert_eq!(
        value(&before, "mesh_registry_job_submits_total", &[]),
        Some(0.0)
    );

    register_worker(&app, "worker").await;
    let done = app.submit("c").await;
    let running = app.submit("c").await;
    let queued = app.submit("c").await;
    let cancelled = app.submit("c").await;
    let cancel = app
        .post(
            &format!("/jobs/{cancelled}/cancel"),
            &json!({"reason": "no"}),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    assert_eq!(app.claim("c", "worker").await.unwrap()["id"], done.as_str());
    assert_eq!(
        app.claim("c", "worker").await.unwrap()["id"],
        running.as_str()
    );
    assert!(app.claim("elsewhere", "worker").await.is_none());
    let accepted = app
        .delta(
            "worker",
            json!({"id": done, "claim_epoch": 1, "status": "completed", "result": {"ok": true}}),
        )
        .await;
    assert_eq!(accepted["accepted"], 1);
    let progress = app
        .delta(
            "worker",
            json!({"id": running, "claim_epoch": 1, "progress": 0.5}),
        )
        .await;
    assert_eq!(progress["accepted"], 1);
    let missing = app
        .delta(
            "worker",
            json!({"id": uuid::Uuid::new_v4(), "status": "completed"}),
        )
        .await;
    assert_eq!(missing["rejected"][0]["reason"], "not_found");
    let stranger = app
        .delta("stranger", json!({"id": running, "progress": 0.9}))
        .await;
    assert_eq!(stranger["rejected"][0]["reason"], "not_owner");
    assert_eq!(app.job(&queued).await["status"], "working");

    let text = scrape(&app).await;
    let at = |name, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(at("mesh_registry_job_submits_total", &[]), Some(4.0));
    assert_eq!(at("mesh_registry_job_claims_total", &[]), Some(2.0));
    assert_eq!(at("mesh_registry_job_empty_claims_total", &[]), Some(1.0));
    assert_eq!(at("mesh_registry_job_deltas_total", &[]), Some(2.0));
    assert_eq!(at("mesh_registry_job_cancels_total", &[]), Some(1.0));
    for (reason, count) in [
        ("not_found", 1.0),
        ("not_owner", 1.0),
        ("claim_superseded", 0.0),
    ] {
        let labels = [("reason", reason)];
        assert_eq!(
            at("mesh_registry_job_rejections_total", &labels),
            Some(count),
            "{reason}"
        );
    }
    for (state, count) in [
        ("queued", 1.0),
        ("working", 1.0),
        ("completed", 1.0),
        ("cancelled", 1.0),
        ("failed", 0.0),
        ("input_required", 0.0),
    ] {
        assert_eq!(
            at("mesh_registry_jobs", &[("status", state)]),
            Some(count),
            "{state}"
        );
    }
    assert_eq!(at("mesh_registry_live_claims", &[]), Some(1.0));
    assert_eq!(
        at("mesh_registry_agents", &[("health", "healthy")]),
        Some(1.0)
    );
    assert_eq!(
        at("mesh_registry_agents", &[("health", "unhealthy")]),
        Some(0.0)
    );
    for scope in ["replica", "fleet"] {
        assert_eq!(at("mesh_registry_draining", &[("scope", scope)]), Some(0.0));
    }
    // Routes are patterns, never raw paths: no job id shows up as a label.
    let requests = |route, method, status| {
        let labels = [("route", route), ("method", method), ("status", status)];
        at("mesh_registry_http_requests_total", &labels)
    };
    assert_eq!(requests("/jobs/claim", "POST", "200"), Some(3.0));
    assert_eq!(requests("/jobs", "POST", "201"), Some(4.0));
    assert_eq!(requests("/jobs/{job_id}", "GET", "200"), Some(1.0));
    assert_eq!(requests("/jobs/{job_id}/cancel", "POST", "200"), Some(1.0));
    assert_eq!(requests("/jobs/batch", "POST", "200"), Some(4.0));
    let latency = [
        ("route", "/jobs/claim"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(
        at(
            "mesh_registry_http_request_duration_seconds_count",
            &latency
        ),
        Some(3.0)
    );
    for id in [&done, &running, &queued, &cancelled] {
        assert!(!text.contains(id.as_str()), "a raw path became a label");
    }
    app.get("/no/such/route").await;
    for method in ["BREW", "PROPFIND", "X-ANYTHING"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        app.http
            .request(method, app.url("/jobs"))
            .send()
            .await
            .unwrap();
    }
    let text = scrape(&app).await;
    // Methods a client makes up share one label value: no client grows the series.
    let made_up = [("route", "/jobs"), ("method", "other"), ("status", "404")];
    assert_eq!(
        value(&text, "mesh_registry_http_requests_total", &made_up),
        Some(3.0)
    );
    assert!(!text.contains("BREW"));
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(
        value(&text, "mesh_registry_http_requests_total", &unmatched),
        Some(1.0)
    );
    assert!(!text.contains("/no/such/route"));

    // A drain shows at once; the live claim finishing empties the gauge.
    let drain = app.post("/admin/drain", &json!({})).await;
    assert!(drain.status().is_success());
    within(Duration::from_secs(3), "the drain gauge", || async {
        let text = scrape(&app).await;
        value(&text, "mesh_registry_draining", &[("scope", "replica")]) == Some(1.0)
    })
    .await;
    app.delta(
        "worker",
        json!({"id": running, "claim_epoch": 1, "status": "failed", "error": "boom"}),
    )
    .await;
    let text = scrape(&app).await;
    assert_eq!(value(&text, "mesh_registry_live_claims", &[]), Some(0.0));
    assert_eq!(
        value(&text, "mesh_registry_jobs", &[("status", "failed")]),
        Some(1.0)
    );
}

/// A histogram's `_count`, `_sum` and the cumulative count of each bucket `le` asked for.
fn histogram(text: &str, name: &str, labels: &[(&str, &str)], les: &[&str]) -> Vec<f64> {
    let at = |suffix: &str, extra: Option<(&str, &str)>| {
        let mut labels = labels.to_vec();
        labels.extend(extra);
        value(text, &format!("{name}{suffix}"), &labels)
            .unwrap_or_else(|| panic!("{name}{suffix} {labels:?} in\n{text}"))
    };
    let mut read = vec![at("_count", None), at("_sum", None)];
    read.extend(les.iter().map(|le| at("_bucket", Some(("le", le)))));
    read
}

/// Claims `id` (the only claimable job of capability `c`) for `worker`.
async fn claim_only(app: &TestApp, id: &str, worker: &str) {
    let claimed = app.claim("c", worker).await.expect("a job to claim");
    assert_eq!(claimed["id"], id);
}

async fn release(app: &TestApp, id: &str, worker: &str) {
    let released = app
        .post(
            &format!("/jobs/{id}/release"),
            &json!({"instance_id": worker}),
        )
        .await;
    assert_eq!(released.status(), 200);
}

async fn finish(app: &TestApp, id: &str, status: &str) {
    let batch = app
        .delta("worker", json!({"id": id, "status": status}))
        .await;
    assert_eq!(batch["accepted"], 1, "{batch}");
}

async fn cancel(app: &TestApp, id: &str) {
    let cancelled = app
        .post(&format!("/jobs/{id}/cancel"), &json!({"reason": "no"}))
        .await;
    assert_eq!(cancelled.status(), 200);
}

// Claim wait: since submission, or since the job last went back to the queue. Run time: from
// the claim to the end. Each is scripted by dating the row (no sleeping); rows without the
// times (written before the columns existed) are counted but not measured.
on_both_backends!(claim_wait_and_run_time_follow_a_scripted_job_sequence);
async fn claim_wait_and_run_time_follow_a_scripted_job_sequence(backend: Backend) {
    let app = spawn_app(backend).await;
    register_worker(&app, "worker").await;
    let retried = json!({"max_retries": 3});

    // Submitted 45 s ago; claimed now, run for 200 s, completed.
    let completed = app.submit("c").await;
    let ago = |seconds: i64| Set::SecondsFromNow(-seconds);
    app.set_job_columns(&completed, &[("submitted_at", ago(45))])
        .await;
    claim_only(&app, &completed, "worker").await;
    app.set_job_columns(&completed, &[("claimed_at", ago(200))])
        .await;
    finish(&app, &completed, "completed").await;
    // Claimed at once, run for 2000 s, failed.
    let failed = app.submit("c").await;
    claim_only(&app, &failed, "worker").await;
    app.set_job_columns(&failed, &[("claimed_at", ago(2000))])
        .await;
    finish(&app, &failed, "failed").await;
    // Claimed at once, released; back in the queue 20 s (submitted long before), claimed
    // again, cancelled 7 s into that claim.
    let cancelled = app.submit_with("c", retried.clone()).await;
    claim_only(&app, &cancelled, "worker").await;
    release(&app, &cancelled, "worker").await;
    let requeued = [("submitted_at", ago(5000)), ("requeued_at", ago(20))];
    app.set_job_columns(&cancelled, &requeued).await;
    claim_only(&app, &cancelled, "worker").await;
    app.set_job_columns(&cancelled, &[("claimed_at", ago(7))])
        .await;
    cancel(&app, &cancelled).await;

    // Not measured: a job requeued and claimed before requeue times were kept, a claim made
    // before claim times were, a pinned job (never claimed), a job cancelled in the queue.
    let old = app.submit_with("c", retried.clone()).await;
    claim_only(&app, &old, "worker").await;
    release(&app, &old, "worker").await;
    app.set_job_columns(&old, &[("requeued_at", Set::Null)])
        .await;
    claim_only(&app, &old, "worker").await;
    app.set_job_columns(&old, &[("claimed_at", Set::Null)])
        .await;
    finish(&app, &old, "completed").await;
    let pinned = app
        .submit_with("elsewhere", json!({"owner_instance_id": "worker"}))
        .await;
    finish(&app, &pinned, "completed").await;
    let queued = app.submit_with("c", retried).await;
    claim_only(&app, &queued, "worker").await;
    release(&app, &queued, "worker").await;
    cancel(&app, &queued).await;

    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "mesh_registry_job_claims_total", &[]),
        Some(7.0)
    );
    // Six measured waits: 45 s, 20 s and four of about nothing.
    let wait = histogram(
        &text,
        "mesh_registry_job_claim_wait_seconds",
        &[],
        &["10", "30", "60", "+Inf"],
    );
    assert_eq!(wait[0], 6.0, "count");
    assert!((65.0..75.0).contains(&wait[1]), "sum {}", wait[1]);
    assert_eq!(wait[2..], [4.0, 5.0, 6.0, 6.0], "buckets 10, 30, 60, +Inf");
    let run = "mesh_registry_job_run_duration_seconds";
    for (outcome, ran, below, within) in [
        ("completed", 200.0, "120", "300"),
        ("failed", 2000.0, "1800", "3600"),
        ("cancelled", 7.0, "5", "10"),
    ] {
        let read = histogram(&text, run, &[("outcome", outcome)], &[below, within]);
        assert_eq!(read[0], 1.0, "{outcome}: count");
        assert!(
            (ran..ran + 10.0).contains(&read[1]),
            "{outcome}: sum {}",
            read[1]
        );
        assert_eq!(
            read[2..],
            [0.0, 1.0],
            "{outcome}: buckets {below}, {within}"
        );
    }
}

on_both_backends!(a_parked_long_poll_is_counted_while_it_waits);
async fn a_parked_long_poll_is_counted_while_it_waits(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    let parked = app.parked_events(&id, "?wait=10").await;
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "mesh_registry_long_polls_parked", &[]),
        Some(1.0)
    );
    let posted = app
        .post(
            &format!("/jobs/{id}/events"),
            &json!({"type": "progress", "payload": {}}),
        )
        .await;
    assert!(posted.status().is_success(), "{}", posted.status());
    assert_eq!(parked.response().await.status(), 200);
    within(Duration::from_secs(3), "the long-poll to leave", || async {
        let text = scrape(&app).await;
        value(&text, "mesh_registry_long_polls_parked", &[]) == Some(0.0)
    })
    .await;
}

on_both_backends!(lease_expiries_and_sweep_phases_are_counted);
async fn lease_expiries_and_sweep_phases_are_counted(backend: Backend) {
    // The lease timer: the default sweep (every 5 minutes) plays no part.
    let app = spawn_app(backend).await;
    let id = app
        .submit_with("c", json!({"max_duration": 1, "max_retries": 2}))
        .await;
    app.claim("c", "gone").await.unwrap();
    let expiries = |text: &str, outcome| {
        value(
            text,
            "mesh_registry_lease_expiries_total",
            &[("outcome", outcome)],
        )
    };
    within(
        Duration::from_secs(5),
        "the lease expiry to be counted",
        || async { expiries(&scrape(&app).await, "requeued") == Some(1.0) },
    )
    .await;
    assert_eq!(app.job(&id).await["owner_instance_id"], Value::Null);
    assert_eq!(expiries(&scrape(&app).await, "swept"), Some(0.0));
    drop(app);

    // The sweep: a lease that expired while no timer watched it (its epoch moved on).
    let app = spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(300);
    })
    .await;
    let id = app.submit("c").await;
    app.claim("c", "gone").await.unwrap();
    app.set_job_columns(
        &id,
        &[
            ("lease_expires_at", Set::SecondsFromNow(-300)),
            ("claim_epoch", Set::Add(10)),
        ],
    )
    .await;
    within(
        Duration::from_secs(5),
        "the sweep's reclaim to be counted",
        || async {
            let text = scrape(&app).await;
            let phase = [("phase", "reclaim_expired_leases")];
            expiries(&text, "swept") == Some(1.0)
                && value(&text, "mesh_registry_sweep_rows_total", &phase) == Some(1.0)
                && value(
                    &text,
                    "mesh_registry_sweep_phase_duration_seconds_count",
                    &phase,
                )
                .is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    assert_eq!(expiries(&scrape(&app).await, "requeued"), Some(0.0));
}

on_both_backends!(the_capability_label_is_opt_in_and_capped);
async fn the_capability_label_is_opt_in_and_capped(backend: Backend) {
    let app = spawn_app(backend).await;
    app.submit("small").await;
    let text = scrape(&app).await;
    assert!(
        !text.contains("mesh_registry_jobs_by_capability{"),
        "off by default"
    );
    drop(app);

    let app = spawn_app_with(backend, |config| config.metrics.capabilities = 1).await;
    for capability in ["big", "big", "small", "tiny"] {
        app.submit(capability).await;
    }
    let text = scrape(&app).await;
    let jobs = |capability| {
        let labels = [("capability", capability), ("status", "queued")];
        value(&text, "mesh_registry_jobs_by_capability", &labels)
    };
    assert_eq!(jobs("big"), Some(2.0));
    assert_eq!(jobs("other"), Some(2.0));
    assert_eq!(jobs("small"), None);
}

on_both_backends!(metrics_move_to_the_admin_port_and_can_be_turned_off);
async fn metrics_move_to_the_admin_port_and_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.admin_port = Some(0)).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    app.submit("c").await;
    let admin = format!("http://127.0.0.1:{}", app.admin_port.unwrap());
    let text = scrape_at(&app, &admin).await;
    assert_eq!(
        value(&text, "mesh_registry_job_submits_total", &[]),
        Some(1.0)
    );
    drop(app);

    let app = spawn_app_with(backend, |config| config.metrics.enabled = false).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
}

// PostgreSQL only: the embedded file has one connection and no pool.
postgres_only!(the_connection_pool_is_reported);
async fn the_connection_pool_is_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    app.submit("c").await;
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "mesh_registry_db_pool_max_connections", &[]),
        Some(4.0)
    );
    let open: f64 = ["in_use", "idle"]
        .iter()
        .filter_map(|state| {
            value(
                &text,
                "mesh_registry_db_pool_connections",
                &[("state", state)],
            )
        })
        .sum();
    assert!((1.0..=4.0).contains(&open), "{open}");
    assert_eq!(
        value(&text, "mesh_registry_db_pool_waiting", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "mesh_registry_db_pool_timeouts_total", &[]),
        Some(0.0)
    );
    let writes = [("kind", "write")];
    assert_eq!(
        value(&text, "mesh_registry_db_batch_size_count", &writes),
        Some(1.0),
        "one submit, one group of writes"
    );
    assert_eq!(
        value(&text, "mesh_registry_db_batch_size_sum", &writes),
        Some(1.0)
    );
}

// PostgreSQL only: the dashboard charts the pool too, which the embedded file has not.
postgres_only!(the_grafana_dashboard_charts_only_metrics_that_exist);
async fn the_grafana_dashboard_charts_only_metrics_that_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    app.submit("c").await;
    let names: std::collections::HashSet<String> = samples(&scrape(&app).await)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/mesh-registry/dashboards/mesh-registry.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("mesh_registry_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    names.contains(&name),
                    "{:?} charts {name}, which /metrics lacks",
                    panel["title"]
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 20, "{charted}");
}
