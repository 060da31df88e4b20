//! Test harness: the real application, in-process on port 0, against a real PostgreSQL database
//! of its own, cloned from a migrated template so that each test starts in milliseconds and
//! leaves nothing behind.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use mesh_registry::config::Config;
use mesh_registry::startup::Application;
use mesh_registry::store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

/// The PostgreSQL server the tests use (overridable for other machines).
pub fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn database_url(name: &str) -> String {
    format!("{}/{name}?sslmode=disable", server_url())
}

pub async fn connect(database: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(&database_url(database), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL ({database}): {e}"));
    actix_web::rt::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh, migrated database that is dropped (with its connections) when this goes away.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin = connect("postgres").await;
        let template = ensure_template(&admin).await;
        let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create the test database from the template");
        TestDatabase { name }
    }

    /// A database with no schema at all.
    pub async fn create_empty() -> TestDatabase {
        let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
        connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create an empty test database");
        TestDatabase { name }
    }

    pub fn url(&self) -> String {
        database_url(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run outside any runtime (or inside one that is shutting down).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&database_url("postgres"), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Name of the template for the current migrations; built once (under an advisory lock, so
/// concurrent test processes agree) by running the registry's own migrations.
async fn ensure_template(admin: &Client) -> String {
    let mut hasher = DefaultHasher::new();
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations directory")
        .map(|entry| entry.expect("migration entry").path())
        .collect();
    files.sort();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)
            .expect("migration file")
            .hash(&mut hasher);
    }
    let template = format!("mesh_registry_template_{:016x}", hasher.finish());
    if database_exists(admin, &template).await {
        return template;
    }
    const TEMPLATE_LOCK: i64 = 0x6d65_7368_7465_7374;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template lock");
    if !database_exists(admin, &template).await {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .expect("create the template database");
        }
        let store = Store::connect(&database_url(&building), 1)
            .await
            .expect("migrate the template database");
        drop(store);
        // The migration connection may still be closing: cut it, then publish under the
        // template's name in one rename.
        for statement in [
            format!("ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
            ),
            format!("ALTER DATABASE {building} RENAME TO {template}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .expect("publish the template database");
        }
        // Templates of earlier migration sets are of no use any more.
        for row in admin
            .query(
                "SELECT datname::text FROM pg_database \
                 WHERE datname LIKE 'mesh_registry_template_%' AND datname <> $1",
                &[&template],
            )
            .await
            .expect("list old templates")
        {
            let old: String = row.get(0);
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"))
                .await;
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template unlock");
    template
}

async fn database_exists(admin: &Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up a database")
        .is_some()
}

/// Configuration for a test registry: small pool, one worker, no cancel grace.
pub fn test_config(database_url: String) -> Config {
    Config {
        host: "127.0.0.1".into(),
        port: 0,
        admin_port: None,
        database_url,
        db_pool_size: 4,
        http_workers: 1,
        max_body_bytes: 64 * 1024,
        max_long_polls: 1_000,
        cancel_event_grace: Duration::ZERO,
        job_stale_timeout: None,
        shutdown_timeout: Duration::from_secs(5),
        sweep_interval: Duration::from_secs(300),
        retention: Some(Duration::from_secs(3600)),
        job_row_retention: None,
        startup_grace: Duration::ZERO,
        health_check_interval: Duration::from_secs(10),
        agent_timeout: Duration::from_secs(20),
    }
}

pub struct TestApp {
    pub address: String,
    /// The admin port, when the app was started with one.
    pub admin_port: Option<u16>,
    pub http: reqwest::Client,
    /// Direct access for setting up states the API cannot reach (e.g. a lease in the past).
    pub db: Client,
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

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app(Arc::new(TestDatabase::create().await), tweak).await
}

/// The registry on a database the test prepared.
pub async fn start_app(database: Arc<TestDatabase>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(database.url());
    tweak(&mut config);
    let app = Application::build(&config).await.expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_port = app.admin_port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = actix_web::rt::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        admin_port,
        http: reqwest::Client::new(),
        db: connect(&database.name).await,
        stop: Some(stop),
        server: Some(server),
        database,
    }
}

impl TestApp {
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

    /// Runs a statement against the app's database (test setup only).
    pub async fn sql(&self, statement: &str, job_id: &str) {
        let id = uuid::Uuid::parse_str(job_id).expect("uuid");
        self.db
            .execute(statement, &[&id])
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
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
