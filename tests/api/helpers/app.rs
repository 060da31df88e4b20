//! The registry under test: the real application in-process on port 0, on a test database,
//! with the HTTP helpers the tests share.

use std::sync::Arc;
use std::time::Duration;

use mesh_registry::config::{Config, MetricsSettings};
use mesh_registry::startup::Application;
use mesh_registry::store::Backend;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::database::TestDatabase;
use super::fixture::Fixture;
use super::wait::{parked, Parked};

/// Configuration for a test registry: small pool, one worker, no cancel grace.
pub fn test_config(database_url: String) -> Config {
    Config {
        host: "127.0.0.1".into(),
        port: 0,
        admin_port: None,
        admin_host: "127.0.0.1".into(),
        ui: true,
        database_url,
        db_schema: Default::default(),
        db_pool_size: 4,
        http_workers: 1,
        max_body_bytes: 64 * 1024,
        max_connections: 10_000,
        max_page_bytes: 4 << 20,
        max_long_polls: 1_000,
        max_long_polls_per_client: 250,
        cancel_event_grace: Duration::ZERO,
        job_stale_timeout: None,
        shutdown_timeout: Duration::from_secs(5),
        sweep_interval: Duration::from_secs(300),
        retention: Some(Duration::from_secs(3600)),
        job_row_retention: None,
        startup_grace: Duration::ZERO,
        health_check_interval: Duration::from_secs(10),
        agent_timeout: Duration::from_secs(20),
        proxy_timeout: Duration::from_secs(60),
        propagate_headers: Vec::new(),
        proxy_max_streams: 16,
        metrics: MetricsSettings {
            enabled: true,
            capabilities: 0,
            // Every scrape counts afresh: tests read what they just did.
            refresh: Duration::ZERO,
        },
        tls: Default::default(),
        trace_pipeline: None,
    }
}

pub struct TestApp {
    pub address: String,
    /// The admin port, when the app was started with one.
    pub admin_port: Option<u16>,
    pub http: reqwest::Client,
    /// Direct access to the app's database, for setting up states the API cannot reach (its
    /// methods on `TestApp` are in `fixture`).
    pub(super) fixture: Fixture,
    stop: Option<oneshot::Sender<()>>,
    server: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    // Last field: dropped after the server was told to stop.
    database: Arc<TestDatabase>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A registry that was stopped, and the database it will find when it starts again.
pub struct StoppedApp {
    database: Arc<TestDatabase>,
}

impl StoppedApp {
    pub async fn start(self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        start_app(self.database, tweak).await
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app(Arc::new(TestDatabase::create(backend).await), tweak).await
}

/// The registry on a database the test prepared.
pub async fn start_app(database: Arc<TestDatabase>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    super::init_test_log();
    let mut config = test_config(database.url());
    tweak(&mut config);
    let app = Application::build(&config).await.expect("build the app");
    let scheme = match config.tls.mode {
        mesh_registry::tls::TlsMode::Off => "http",
        _ => "https",
    };
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    let admin_port = app.admin_port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = actix_web::rt::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        admin_port,
        http: reqwest::Client::new(),
        fixture: Fixture::open(&database).await,
        stop: Some(stop),
        server: Some(server),
        database,
    }
}

impl TestApp {
    /// The `DATABASE_URL` of this app's database, as a freshly started registry would take it.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    /// Another replica of the registry on the same database.
    pub async fn replica(&self) -> TestApp {
        start_app(self.database.clone(), |_| {}).await
    }

    /// Stops this registry gracefully (SIGTERM's path); its database stays.
    pub async fn stop(mut self) -> StoppedApp {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        StoppedApp {
            database: self.database.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST /heartbeat` with this registration, which must succeed.
    pub async fn register(&self, body: &Value) {
        let response = self.post("/heartbeat", body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("the registration's answer");
        assert_eq!(answer["status"], "success", "{answer}");
    }

    /// `DELETE /agents/{agent_id}`, which must answer 204.
    pub async fn deregister(&self, agent_id: &str) {
        let response = self
            .http
            .delete(self.url(&format!("/agents/{agent_id}")))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status(), 204);
    }

    /// Submits a pull-mode job with the given extra fields; returns its id.
    pub async fn submit_with(&self, capability: &str, extra: Value) -> String {
        let mut body = json!({
            "capability": capability,
            "submitted_by": "tester",
            "submitted_payload": {"n": 1},
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self.post("/jobs", &body).await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.expect("create response");
        created["id"].as_str().expect("job id").to_owned()
    }

    pub async fn submit(&self, capability: &str) -> String {
        self.submit_with(capability, json!({})).await
    }

    /// `POST /jobs/claim`; returns the claimed job, or `None` for "no work".
    pub async fn claim(&self, capability: &str, instance_id: &str) -> Option<Value> {
        let response = self
            .post(
                "/jobs/claim",
                &json!({"capability": capability, "instance_id": instance_id}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("claim response");
        let claimed = body["claimed"].as_array().expect("claimed array");
        assert!(claimed.len() <= 1, "one job per claim at most: {body}");
        claimed.first().cloned()
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self.get(&format!("/jobs/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("job")
    }

    /// Given a long-poll of a job's events that is parked: `GET /jobs/{id}/events{query}`,
    /// once it has gone unanswered long enough (see `parked`).
    pub async fn parked_events(&self, id: &str, query: &str) -> Parked {
        parked(
            self.http
                .get(self.url(&format!("/jobs/{id}/events{query}"))),
        )
        .await
    }

    /// `POST /jobs/batch` with one delta; returns the whole batch response.
    pub async fn delta(&self, instance_id: &str, delta: Value) -> Value {
        let response = self
            .post(
                "/jobs/batch",
                &json!({"instance_id": instance_id, "deltas": [delta]}),
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("batch response")
    }
}

/// Asserts an error response: status, and the contract's `{"error","timestamp"}` body.
pub async fn assert_error(response: reqwest::Response, status: u16, message: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("error body");
    assert_eq!(body["error"], message, "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
}

/// Unix seconds now, for comparing against wire timestamps.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}
