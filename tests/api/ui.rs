//! The dashboard at `/ui` in a real browser (headless Chromium, see `helpers::browser`), and its
//! safety rules over plain HTTP: seeded data on both backends, live updates without a reload,
//! cancel, force-reclaim and drain through the pages, payloads shown as text, read-only pages
//! without JavaScript, actions only on the admin listener and only from its own origin.
//! Screenshots of each page land in `target/ui-screenshots/`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{browser, on_both_backends, spawn_app_with, within, Backend, TestApp};

/// A payload that would run if the page did not escape it.
const HOSTILE: &str = "<script>window.injected = 1</script><img src=x onerror=window.injected=2>";

/// The dashboard with its actions: the admin listener's address.
fn admin_base(app: &TestApp) -> String {
    format!(
        "http://127.0.0.1:{}",
        app.admin_port.expect("an admin port")
    )
}

/// A mesh of two agents (one depends on the other), a hostile job, a claimed job with progress,
/// a question and an event, and a waiting job. Returns (hostile job, claimed job).
async fn seed(app: &TestApp) -> (String, String) {
    let agents = [
        json!({"agent_id": "weather-1", "name": "weather-1", "namespace": "prod",
               "http_host": "127.0.0.1", "http_port": 9001,
               "tools": [{"function_name": "get_weather", "capability": "weather",
                          "kwargs": {"task": true}}]}),
        json!({"agent_id": "planner-1", "name": "planner-1", "namespace": "prod",
               "http_host": "127.0.0.1", "http_port": 9002,
               "tools": [{"function_name": "plan_trip", "capability": "planning",
                          "dependencies": [{"capability": "weather"}]}]}),
    ];
    for agent in agents {
        assert_eq!(app.post("/heartbeat", &agent).await.status(), 200);
    }
    let claimed = app.submit("weather").await;
    let hostile = app
        .submit_with("weather", json!({"submitted_payload": {"note": HOSTILE}}))
        .await;
    // Oldest first: `claimed` is taken; the hostile one stays queued.
    let job = app.claim("weather", "w1").await.unwrap();
    assert_eq!(job["id"], claimed.as_str());
    // Half way, the producer asks a question (the input_required round trip).
    let delta = json!({"id": claimed, "claim_epoch": job["claim_epoch"], "progress": 0.5,
                       "status": "input_required", "progress_message": "Which city?"});
    assert_eq!(app.delta("w1", delta).await["accepted"], 1);
    post_event(app, &claimed, "note", json!({"said": "first"})).await;
    app.submit("planning").await;
    (hostile, claimed)
}

async fn post_event(app: &TestApp, job: &str, kind: &str, payload: Value) {
    let body = json!({"type": kind, "payload": payload});
    let response = app.post(&format!("/jobs/{job}/events"), &body).await;
    assert_eq!(response.status(), 200);
}

/// The backend's name in screenshot file names.
fn short(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "postgres",
        Backend::Embedded => "embedded",
    }
}

async fn drain_state(app: &TestApp) -> Value {
    let url = format!("{}/admin/drain", admin_base(app));
    app.http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

on_both_backends!(dashboard_in_a_browser);
async fn dashboard_in_a_browser(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.admin_port = Some(0)).await;
    let (hostile, claimed) = seed(&app).await;
    let base = admin_base(&app);
    let name = |page: &str| format!("{}-{page}", short(backend));
    let browser = browser(true).await;

    // The mesh: agents with health and namespace, and who resolves to whom.
    browser.open(&format!("{base}/ui/mesh")).await;
    let agents = browser.text("#agents").await;
    for expected in ["weather-1", "planner-1", "healthy", "prod", "get_weather"] {
        assert!(agents.contains(expected), "{expected} in {agents}");
    }
    let resolutions = browser.text("#resolutions").await;
    assert!(
        resolutions.contains("planner-1 plan_trip weather weather-1 get_weather"),
        "{resolutions}"
    );
    browser.screenshot(&name("mesh")).await;

    // Jobs: counts by status and capability, the list, and a live update without a reload.
    browser.open(&format!("{base}/ui/jobs")).await;
    let total = |status: &str| format!("#counts tr.total td[data-status={status}]");
    assert_eq!(browser.text(&total("working")).await, "2");
    assert_eq!(browser.text(&total("input_required")).await, "1");
    assert!(browser.text("#jobs").await.contains(&claimed));
    browser.eval("window.stillTheSamePage = true").await;
    let arrived = app.submit("arrived-live").await;
    browser.wait_for_text("#jobs", &arrived).await;
    assert_eq!(browser.eval("return window.stillTheSamePage").await, true);
    browser.screenshot(&name("jobs")).await;

    // Filtering and keyset pagination, as GET /jobs.
    browser
        .open(&format!("{base}/ui/jobs?capability=weather&limit=1"))
        .await;
    let first = browser.text("#jobs tbody").await;
    browser.click("#next-page").await;
    let second = browser.text("#jobs tbody").await;
    assert!(first.contains("weather") && second.contains("weather"));
    assert_ne!(first, second);
    browser.open(&format!("{base}/ui/jobs?limit=5000")).await;
    assert!(browser
        .text(".error")
        .await
        .contains("limit must be in [1, 200]"));

    // A hostile payload is text, and nothing of it ran.
    browser.open(&format!("{base}/ui/jobs/{hostile}")).await;
    let payload = browser.text("#payload").await;
    assert!(payload.contains(HOSTILE), "{payload}");
    assert_eq!(
        browser.eval("return window.injected ?? null").await,
        Value::Null
    );

    // A job: lease, owner, epoch, progress and the timeline, which grows by itself.
    browser.open(&format!("{base}/ui/jobs/{claimed}")).await;
    let fields = browser.text("#job").await;
    for expected in ["w1", "input_required", "0.5", "Claim epoch"] {
        assert!(fields.contains(expected), "{expected} in {fields}");
    }
    assert_eq!(browser.text("#job tr.prompt td").await, "Which city?");
    assert!(browser.text("#timeline").await.contains("first"));
    post_event(&app, &claimed, "answer", json!({"city": "arrived live"})).await;
    browser.wait_for_text("#timeline", "arrived live").await;
    browser.screenshot(&name("job")).await;

    // Force-reclaim, then cancel, each through its confirmation.
    browser.click("#reclaim").await;
    assert!(browser
        .text("main")
        .await
        .contains("Force-reclaim this job?"));
    browser.click("#confirm").await;
    browser.wait_for_text(".notice", "force-reclaimed").await;
    let job = app.job(&claimed).await;
    assert_eq!(
        (job["status"].as_str(), &job["owner_instance_id"]),
        (Some("working"), &Value::Null)
    );
    browser.click("#cancel").await;
    browser
        .client
        .find(fantoccini::Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys("not needed")
        .await
        .unwrap();
    browser.click("#confirm").await;
    browser.wait_for_text(".notice", "cancelled").await;
    assert_eq!(app.job(&claimed).await["status"], "cancelled");
    assert!(browser.text("#timeline").await.contains("cancelled"));
    // The API's rules: a second cancel is the API's 409, shown as its message.
    browser
        .open(&format!("{base}/ui/jobs/{claimed}/cancel"))
        .await;
    browser.click("#confirm").await;
    browser
        .wait_for_text(".error", "job is already in a terminal state")
        .await;

    // Operations: drain and resume this replica; the charts draw what /metrics serves.
    browser.open(&format!("{base}/ui/operations")).await;
    assert_eq!(browser.text("#replica-drain").await, "serving");
    browser.wait_for_text("#charts", "Live claims: ").await;
    let label = browser
        .text(".chart[data-series=mesh_registry_live_claims] .label")
        .await;
    let live: Option<i64> = label
        .strip_prefix("Live claims: ")
        .and_then(|n| n.parse().ok());
    assert!(
        live.is_some(),
        "a live-claims figure from /metrics: {label:?}"
    );
    assert!(
        browser
            .has(".chart[data-series=mesh_registry_job_claims_total] svg polyline")
            .await,
        "the claims chart is drawn"
    );
    browser.click("#drain-replica").await;
    browser.click("#confirm").await;
    browser.wait_for_text("#replica-drain", "draining").await;
    assert_eq!(drain_state(&app).await["draining"], true);
    assert!(
        app.claim("planning", "w2").await.is_none(),
        "drained: no work"
    );
    browser.screenshot(&name("operations")).await;
    browser.click("#resume-replica").await;
    browser.click("#confirm").await;
    browser.wait_for_text("#replica-drain", "serving").await;
    assert_eq!(drain_state(&app).await["draining"], false);

    // The charts' parsing of the Prometheus text: totals over labels, rates between samples.
    let parsed = browser
        .eval(
            "return meshUi.parseMetrics('# HELP x y\\n# TYPE mesh_registry_jobs gauge\\n\
             mesh_registry_jobs{status=\"working\"} 3\\nmesh_registry_jobs{status=\"failed\"} 2\\n\
             mesh_registry_job_claims_total 10\\nbad line\\n')",
        )
        .await;
    assert_eq!(
        parsed,
        json!({"mesh_registry_jobs": 5, "mesh_registry_job_claims_total": 10})
    );
    let rates = browser
        .eval(
            "return meshUi.points([{at: 0, totals: {c: 10}}, {at: 2000, totals: {c: 20}}, \
             {at: 4000, totals: {c: 5}}], {name: 'c', rate: true})",
        )
        .await;
    assert_eq!(
        rates,
        json!([{"at": 2000, "value": 5}]),
        "a counter reset is skipped"
    );
    // Drawn from samples as they would arrive: one small line chart per series.
    let drawn = browser
        .eval(
            "const box = document.getElementById('charts'); \
             const text = n => 'mesh_registry_job_claims_total ' + n + '\\nmesh_registry_live_claims 2\\n'; \
             const samples = [0, 1, 2].map(i => ({at: Date.now() - (2 - i) * 5000, \
                                                  totals: meshUi.parseMetrics(text(i * 10))})); \
             meshUi.draw(box, samples, null); \
             return [box.querySelectorAll('.chart polyline').length, \
                     box.querySelector('[data-series=mesh_registry_job_claims_total]').textContent, \
                     box.querySelector('[data-series=mesh_registry_job_claims_total] polyline') \
                        .getAttribute('points').split(' ').length];",
        )
        .await;
    assert_eq!(drawn, json!([6, "Claims / s: 2.00", 2]));
    browser.screenshot(&name("operations-charts")).await;
    browser.close().await;
}

on_both_backends!(dashboard_without_javascript_and_read_only_on_the_public_port);
async fn dashboard_without_javascript_and_read_only_on_the_public_port(backend: Backend) {
    // No admin port: the dashboard is on the public port, read-only.
    let app = spawn_app_with(backend, |_| {}).await;
    let (hostile, claimed) = seed(&app).await;
    let browser = browser(false).await;
    browser.open(&app.url("/ui")).await;
    assert!(browser.text("#jobs").await.contains(&claimed));
    assert_eq!(browser.text("header .badge").await, "read-only");
    browser
        .click(&format!("a[href='/ui/jobs/{claimed}']"))
        .await;
    assert!(browser.text("#job").await.contains("Which city?"));
    assert!(!browser.has("#cancel").await && !browser.has("#reclaim").await);
    browser.open(&app.url(&format!("/ui/jobs/{hostile}"))).await;
    let payload = browser.text("#payload").await;
    assert!(payload.contains(HOSTILE), "{payload}");
    browser.open(&app.url("/ui/mesh")).await;
    assert!(browser.text("#agents").await.contains("planner-1"));
    browser.open(&app.url("/ui/operations")).await;
    assert_eq!(browser.text("#live-claims").await, "1");
    assert!(!browser.has("#drain-replica").await);
    assert!(browser.text("#charts").await.contains("need JavaScript"));
    browser
        .screenshot(&format!("{}-operations-no-js", short(backend)))
        .await;
    browser.close().await;

    // The action routes do not exist here, whatever the request says.
    for path in [
        format!("/ui/jobs/{claimed}/cancel"),
        format!("/ui/jobs/{claimed}/reclaim"),
        "/ui/drain".to_owned(),
    ] {
        let response = app
            .http
            .post(app.url(&path))
            .header("sec-fetch-site", "same-origin")
            .form(&[("scope", "replica"), ("action", "drain")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(
        app.job(&claimed).await["status"],
        "input_required",
        "unchanged"
    );
}

on_both_backends!(dashboard_actions_refuse_other_origins);
async fn dashboard_actions_refuse_other_origins(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.admin_port = Some(0)).await;
    let job = app.submit("c").await;
    let base = admin_base(&app);
    // With an admin listener, the public port has no dashboard at all.
    assert_eq!(app.get("/ui/jobs").await.status(), 404);
    let host = base.trim_start_matches("http://").to_owned();
    let post = |path: &str, headers: &[(&str, &str)]| {
        let mut request = app.http.post(format!("{base}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.form(&[("scope", "replica"), ("action", "drain"), ("reason", "x")])
    };
    let forged: [&[(&str, &str)]; 4] = [
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "http://evil.example")],
        &[],
    ];
    for headers in forged {
        for path in ["/ui/drain".to_owned(), format!("/ui/jobs/{job}/cancel")] {
            let response = post(&path, headers).send().await.unwrap();
            assert_eq!(response.status(), 403, "{path} {headers:?}");
            let page = response.text().await.unwrap();
            assert!(page.contains("cross-origin request refused"), "{page}");
        }
    }
    assert_eq!(drain_state(&app).await["draining"], false);
    assert_eq!(app.job(&job).await["status"], "working");

    // From its own origin (a browser without Sec-Fetch-Site still sends Origin): it acts.
    let origin = format!("http://{host}");
    let response = post("/ui/drain", &[("origin", origin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "followed the redirect to the page");
    within(Duration::from_secs(5), "the drain", || async {
        drain_state(&app).await["draining"] == true
    })
    .await;
    // Form fields get the API's validation: a bad scope is the API's 400 message.
    let bad_scope = app
        .http
        .post(format!("{base}/ui/drain"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("scope", "galaxy"), ("action", "drain")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_scope.status(), 400);
    assert!(bad_scope
        .text()
        .await
        .unwrap()
        .contains("invalid scope &quot;galaxy&quot;"));
}

on_both_backends!(dashboard_can_be_turned_off);
async fn dashboard_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.ui = false).await;
    assert_eq!(app.get("/ui/jobs").await.status(), 404);
    let app = spawn_app_with(backend, |config| {
        config.ui = false;
        config.admin_port = Some(0);
    })
    .await;
    let admin = app.http.get(format!("{}/ui/jobs", admin_base(&app)));
    assert_eq!(admin.send().await.unwrap().status(), 404);
    assert_eq!(
        drain_state(&app).await["draining"],
        false,
        "the admin port still serves"
    );
}
