//! Hostile and careless clients (issue 14): each pattern runs *concurrently* with a
//! well-behaved client, which must see no collateral 5xx and bounded latency, on both backends.
//! The hostile client itself gets a 4xx naming what it got wrong, never a 5xx.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{on_both_backends, parked, spawn_app, spawn_app_with, Backend, TestApp};

/// What a well-behaved client saw while the hostile one ran.
#[derive(Debug, Default)]
struct Seen {
    calls: usize,
    server_errors: usize,
    slowest: Duration,
}

/// A well-behaved producer and consumer: submit, claim, complete, read, `rounds` times.
async fn well_behaved(app: &TestApp, name: String, rounds: usize) -> Seen {
    let mut seen = Seen::default();
    let mut note = |status: u16, started: Instant| {
        seen.calls += 1;
        seen.server_errors += usize::from(status >= 500);
        seen.slowest = seen.slowest.max(started.elapsed());
    };
    let capability = format!("good-{name}");
    for _ in 0..rounds {
        let started = Instant::now();
        let submitted = app
            .post(
                "/jobs",
                &json!({"capability": capability, "submitted_by": name, "submitted_payload": {"n": 1}}),
            )
            .await;
        note(submitted.status().as_u16(), started);
        let started = Instant::now();
        let claimed = app
            .post(
                "/jobs/claim",
                &json!({"capability": capability, "instance_id": name}),
            )
            .await;
        note(claimed.status().as_u16(), started);
        let body: Value = claimed.json().await.unwrap_or_default();
        if let Some(job) = body["claimed"].get(0) {
            let started = Instant::now();
            let done = app
                .post(
                    "/jobs/batch",
                    &json!({"instance_id": name, "deltas": [
                        {"id": job["id"], "claim_epoch": job["claim_epoch"], "status": "completed"}]}),
                )
                .await;
            note(done.status().as_u16(), started);
            let started = Instant::now();
            let read = app
                .get(&format!("/jobs/{}", job["id"].as_str().unwrap()))
                .await;
            note(read.status().as_u16(), started);
        }
    }
    seen
}

/// Runs `hostile` `copies` times at once next to four well-behaved clients; asserts that they saw
/// no 5xx and that every hostile answer was a 4xx.
async fn alongside<F, Fut>(app: &TestApp, copies: usize, hostile: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<u16>>,
{
    let good = join_all((0..4).map(|i| well_behaved(app, format!("good-{i}"), 25)));
    let bad = join_all((0..copies).map(hostile));
    let (good, bad) = futures_util::join!(good, bad);
    for seen in &good {
        assert!(seen.calls >= 50, "the well-behaved client ran: {seen:?}");
        assert_eq!(seen.server_errors, 0, "collateral 5xx: {seen:?}");
        assert!(
            seen.slowest < Duration::from_secs(2),
            "bounded latency: {seen:?}"
        );
    }
    for status in bad.into_iter().flatten() {
        assert!(
            (400..500).contains(&status),
            "a hostile call answered {status}"
        );
    }
}

async fn status_of(response: reqwest::Response) -> u16 {
    response.status().as_u16()
}

on_both_backends!(nul_bytes_are_refused_and_fail_nobody_else);
async fn nul_bytes_are_refused_and_fail_nobody_else(backend: Backend) {
    let app = spawn_app(backend).await;
    alongside(&app, 8, |i| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for round in 0..10 {
                let bodies = [
                    ("/jobs/claim", json!({"capability": "c", "instance_id": "evil\u{0}"})),
                    ("/jobs", json!({"capability": "c", "submitted_by": "h\u{0}", "submitted_payload": {}})),
                    ("/jobs", json!({"capability": "c", "submitted_by": "h", "submitted_payload": {"x": ["\u{0}"]}})),
                    ("/jobs/batch", json!({"instance_id": "a", "deltas": [{"id": "x", "recv_cursor": {"k\u{0}": 1}}]})),
                    ("/jobs", json!({"capability": "c".repeat(3000), "submitted_by": "h", "submitted_payload": {}})),
                ];
                let (path, body) = &bodies[(i + round) % bodies.len()];
                statuses.push(status_of(app.post(path, body).await).await);
            }
            statuses
        }
    })
    .await;
}

on_both_backends!(a_refusal_names_the_field);
async fn a_refusal_names_the_field(backend: Backend) {
    // Bodies up to 1 MiB, so that the text limit (64 KiB) is what refuses a long message.
    let app = spawn_app_with(backend, |config| config.max_body_bytes = 1 << 20).await;
    let cases = [
        (
            "/jobs/claim",
            json!({"capability": "c", "instance_id": "evil\u{0}"}),
            "instance_id: NUL bytes are not allowed",
        ),
        (
            "/jobs",
            json!({"capability": "c", "submitted_by": "h", "submitted_payload": {"a": {"b": "\u{0}"}}}),
            "submitted_payload.a.b: NUL bytes are not allowed",
        ),
        (
            "/jobs",
            json!({"capability": "x".repeat(256), "submitted_by": "h", "submitted_payload": {}}),
            "capability: longer than 255 bytes (256 bytes)",
        ),
        (
            "/jobs/batch",
            json!({"instance_id": "a", "deltas": [{"id": "x"}, {"id": "y", "progress_message": "m".repeat(70_000)}]}),
            "deltas[1].progress_message: longer than 65536 bytes (70000 bytes)",
        ),
        (
            "/heartbeat",
            json!({"agent_id": "a", "http_host": "127.0.0.1:9000/admin/drain?scope=fleet#", "http_port": 1}),
            "http_host",
        ),
        (
            "/heartbeat",
            json!({"agent_id": "a", "tools": [{"function_name": "f", "capability": "c", "tags": ["t".repeat(300)]}]}),
            "tools[0].tags: longer than 255 bytes",
        ),
    ];
    for (path, body, named) in cases {
        let response = app.post(path, &body).await;
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains(named),
            "{path}: {message:?} names {named:?}"
        );
    }
}

on_both_backends!(nul_bytes_in_paths_and_queries_never_reach_storage);
async fn nul_bytes_in_paths_and_queries_never_reach_storage(backend: Backend) {
    let app = spawn_app(backend).await;
    let head = app
        .http
        .head(app.url("/heartbeat/%00"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 410, "no agent has such an id");
    let delete = app
        .http
        .delete(app.url("/agents/%00"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(app.get("/agents/%00").await.status(), 404);
    for query in [
        "capability=%00",
        "owner_instance_id=a%00",
        "status=working%00",
        "%00=1",
    ] {
        assert_eq!(
            app.get(&format!("/jobs?{query}")).await.status(),
            400,
            "{query}"
        );
    }
    let id = app.submit("c").await;
    let read = app
        .get(&format!("/jobs/{id}/events?instance_id=%00&claim_epoch=1"))
        .await;
    assert_eq!(read.status(), 400);
}

on_both_backends!(deep_or_huge_bodies_are_client_errors);
async fn deep_or_huge_bodies_are_client_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let deep = format!(
        r#"{{"capability":"c","submitted_by":"h","submitted_payload":{}{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let response = app
        .http
        .post(app.url("/jobs"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "10 000 levels deep");
    let huge = json!({"capability": "c", "submitted_by": "h", "submitted_payload": {"x": "y".repeat(2 << 20)}});
    assert_eq!(app.post("/jobs", &huge).await.status(), 413);
}

on_both_backends!(requests_for_unknown_jobs_cannot_starve_the_pool);
async fn requests_for_unknown_jobs_cannot_starve_the_pool(backend: Backend) {
    let app = spawn_app(backend).await;
    alongside(&app, 48, |i| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let id = uuid::Uuid::new_v4();
                let (path, body) = match i % 4 {
                    0 => (format!("/jobs/{id}/events"), json!({"type": "t"})),
                    1 => (format!("/jobs/{id}/cancel"), json!({})),
                    2 => (format!("/jobs/{id}/release"), json!({"instance_id": "a"})),
                    _ => (format!("/jobs/{id}/reclaim"), json!({})),
                };
                statuses.push(status_of(app.post(&path, &body).await).await);
            }
            statuses
        }
    })
    .await;
}

/// A client whose connections come from `127.0.0.<last>` (the whole 127/8 is loopback), so that
/// a test can be several clients at once.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

on_both_backends!(one_client_cannot_park_every_long_poll);
async fn one_client_cannot_park_every_long_poll(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.max_long_polls = 8;
        config.max_long_polls_per_client = 3;
    })
    .await;
    let job = app.submit("parked").await;
    let events = |after: u32| app.url(&format!("/jobs/{job}/events?after={after}&wait=30"));
    let greedy = client_from(2);
    let mut greedy_polls = Vec::new();
    for _ in 0..3 {
        greedy_polls.push(parked(greedy.get(events(0))).await);
    }
    let refused = greedy.get(events(0)).send().await.unwrap();
    assert_eq!(
        refused.status(),
        503,
        "past its share, the greedy client is refused"
    );

    let polite = parked(client_from(3).get(events(0))).await;
    let posted = app
        .post(&format!("/jobs/{job}/events"), &json!({"type": "note"}))
        .await;
    assert_eq!(posted.status(), 200);
    let page = polite.json().await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    for poll in greedy_polls {
        assert_eq!(poll.response().await.status(), 200);
    }
    // Answered long-polls give their slots back.
    let _again = parked(greedy.get(events(1))).await;
}

on_both_backends!(a_registration_cannot_point_the_cancel_forward_elsewhere);
async fn a_registration_cannot_point_the_cancel_forward_elsewhere(backend: Backend) {
    // The attack of issue 14: an agent whose http_host smuggles a path to the admin drain.
    let app = spawn_app(backend).await;
    for host in [
        "127.0.0.1:1/admin/drain?scope=fleet#",
        "http://x",
        "x@y",
        "a/b",
    ] {
        let body = json!({"agent_id": "evil", "http_host": host, "http_port": 1});
        assert_eq!(app.post("/heartbeat", &body).await.status(), 400, "{host}");
    }
    let drain: Value = app.get("/admin/drain").await.json().await.unwrap();
    assert_eq!(drain["draining"], false);
}

/// A local server that counts the requests it gets and answers each with `answer`.
async fn counting_server(
    answer: impl Fn() -> actix_web::HttpResponse + Clone + Send + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = actix_web::HttpServer::new(move || {
        let (counted, answer) = (counted.clone(), answer.clone());
        actix_web::App::new().default_service(actix_web::web::to(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let response = answer();
            async move { response }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (port, hits)
}

on_both_backends!(a_cancel_forward_never_follows_a_redirect);
async fn a_cancel_forward_never_follows_a_redirect(backend: Backend) {
    use std::sync::atomic::Ordering;
    // Given an owner whose endpoint redirects elsewhere
    let app = spawn_app(backend).await;
    let (elsewhere, reached) = counting_server(|| actix_web::HttpResponse::Ok().finish()).await;
    let (owner_port, forwarded) = counting_server(move || {
        actix_web::HttpResponse::TemporaryRedirect()
            .insert_header((
                "Location",
                format!("http://127.0.0.1:{elsewhere}/admin/drain"),
            ))
            .finish()
    })
    .await;
    let body = json!({"agent_id": "owner", "http_host": "127.0.0.1", "http_port": owner_port});
    assert_eq!(app.post("/heartbeat", &body).await.status(), 200);
    let job = app.submit("c").await;
    app.claim("c", "owner").await.unwrap();

    // When the job is cancelled
    let cancel = app.post(&format!("/jobs/{job}/cancel"), &json!({})).await;
    assert_eq!(cancel.status(), 200);

    // Then the forward reaches the owner, and the redirect is not followed
    crate::helpers::within(Duration::from_secs(5), "the forward", || async {
        forwarded.load(Ordering::SeqCst) == 1
    })
    .await;
    // (a followed redirect would have been sent at once, on the same task)
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

on_both_backends!(slow_clients_are_cut_off_and_others_are_served);
async fn slow_clients_are_cut_off_and_others_are_served(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(backend).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // Clients that open a connection and trickle half a request line, then stall.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"POST /jobs HTT").await.unwrap();
        stalled.push(stream);
    }
    // Others are served meanwhile.
    let seen = well_behaved(&app, "patient".into(), 10).await;
    assert_eq!(seen.server_errors, 0, "{seen:?}");
    assert!(seen.slowest < Duration::from_secs(2), "{seen:?}");
    // And the stalled ones are closed (header timeout) instead of holding their connection.
    let mut closed = 0;
    for mut stream in stalled {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf));
        if read.await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "every stalled connection was cut off");
}

on_both_backends!(pages_of_big_jobs_and_events_stop_at_the_byte_budget);
async fn pages_of_big_jobs_and_events_stop_at_the_byte_budget(backend: Backend) {
    // Given a 100 KB page budget and five jobs of 40 KB, one of them with five 40 KB events
    let app = spawn_app_with(backend, |config| config.max_page_bytes = 100_000).await;
    let big = "x".repeat(40_000);
    let mut submitted = Vec::new();
    for _ in 0..5 {
        submitted.push(
            app.submit_with("c", json!({"submitted_payload": {"big": big}}))
                .await,
        );
    }
    for _ in 0..5 {
        let event = json!({"type": "progress", "payload": {"big": big}});
        let posted = app
            .post(&format!("/jobs/{}/events", submitted[0]), &event)
            .await;
        assert_eq!(posted.status(), 200);
    }

    // When every page is read
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page: Value = app
            .get(&format!("/jobs?limit=200{query}"))
            .await
            .json()
            .await
            .unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(
            !jobs.is_empty() && jobs.len() <= 3,
            "a page holds at most ~100 KB: {}",
            jobs.len()
        );
        listed.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/jobs/{}/events?after={after}", submitted[0]);
        let page: Value = app.get(&path).await.json().await.unwrap();
        let seqs: Vec<i64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        if seqs.is_empty() {
            break;
        }
        assert!(seqs.len() <= 3, "{seqs:?}");
        events.extend(seqs);
        after = page["next_after"].as_i64().unwrap();
    }

    // Then every job and every event came exactly once, over several pages
    assert!(pages >= 2, "the budget split the list");
    listed.sort();
    submitted.sort();
    assert_eq!(listed, submitted);
    assert_eq!(events, vec![1, 2, 3, 4, 5]);
}

/// Random JSON for the endpoints: request-shaped objects whose fields hold anything (strings with
/// NULs and odd characters, numbers at the edges, nested values).
fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    let choice = if depth > 3 {
        rng.u8(0..5)
    } else {
        rng.u8(0..7)
    };
    match choice {
        0 => Value::Null,
        1 => Value::from(rng.bool()),
        2 => Value::from([i64::MIN, -1, 0, 1, i64::MAX, rng.i64(..)][rng.usize(0..6)]),
        3 => Value::from([f64::MIN, -0.5, 1e308, rng.f64()][rng.usize(0..4)]),
        4 => {
            let pieces = [
                "", "a", "\u{0}", "é", "💥", "../", "%00", " ", "\\", "\"", "x",
            ];
            let text: String = (0..rng.usize(0..6))
                .map(|_| pieces[rng.usize(0..pieces.len())])
                .collect();
            Value::from(text)
        }
        5 => Value::from(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect::<Vec<_>>(),
        ),
        _ => random_request(rng, depth + 1),
    }
}

fn random_request(rng: &mut fastrand::Rng, depth: u32) -> Value {
    let fields = [
        "capability",
        "submitted_by",
        "submitted_payload",
        "max_retries",
        "max_duration",
        "total_deadline",
        "owner_instance_id",
        "instance_id",
        "deltas",
        "id",
        "claim_epoch",
        "status",
        "progress",
        "result",
        "error",
        "recv_cursor",
        "reason",
        "type",
        "payload",
        "agent_id",
        "name",
        "tools",
        "function_name",
        "http_host",
        "http_port",
        "tags",
        "dependencies",
        "llm_filter",
        "llm_provider",
        "inputSchema",
    ];
    let mut object = serde_json::Map::new();
    for _ in 0..rng.usize(0..8) {
        let field = fields[rng.usize(0..fields.len())];
        object.insert(field.to_owned(), random_value(rng, depth));
    }
    Value::Object(object)
}

on_both_backends!(random_requests_never_make_a_server_error);
async fn random_requests_never_make_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let job = app.submit("c").await;
    let paths = [
        "/jobs".to_owned(),
        "/jobs/claim".to_owned(),
        "/jobs/batch".to_owned(),
        "/heartbeat".to_owned(),
        format!("/jobs/{job}/events"),
        format!("/jobs/{job}/release"),
        format!("/jobs/{job}/cancel"),
    ];
    let mut rng = fastrand::Rng::with_seed(14);
    for round in 0..400 {
        let path = &paths[round % paths.len()];
        let body = random_request(&mut rng, 0);
        let status = app.post(path, &body).await.status();
        assert!(status.as_u16() < 500, "{path} answered {status} to {body}");
    }
    // And the registry still serves.
    let seen = well_behaved(&app, "after".into(), 3).await;
    assert_eq!(seen.server_errors, 0);
}
