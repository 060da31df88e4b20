//! Test harness: the real application, in-process on port 0, on a database of its own, on either
//! backend. A PostgreSQL database is cloned from a migrated template so that each test starts in
//! milliseconds and leaves nothing behind; an embedded one is a fresh SQLite file in a fresh
//! temporary directory, migrated by the registry at start and removed with the directory.
//!
//! Behaviour tests run on both backends through `on_both_backends!`; tests of what only
//! PostgreSQL has (several replicas, the fleet drain, schema reconciliation) use
//! `postgres_only!`. States the API cannot reach (a lease in the past, an exhausted retry budget)
//! are set up through the backend-neutral fixture methods of `TestApp` (`set_job`, `set_events`,
//! `set_agent`, `job_rows`, …), never through SQL in the tests.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_registry::config::Config;
use mesh_registry::startup::Application;
pub use mesh_registry::store::Backend;
use mesh_registry::store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

/// Runs each named test once per backend, as `<name>::postgres` and `<name>::embedded`:
///
/// ```ignore
/// on_both_backends!(claim_takes_the_oldest_job);
/// async fn claim_takes_the_oldest_job(backend: Backend) {
///     let app = spawn_app(backend).await;
///     …
/// }
/// ```
///
/// The test is an ordinary `async fn` taking the backend (so rustfmt and the IDE see it as
/// code, and it is compiled once); attributes for the generated tests (`#[ignore]`, …) go before
/// the name: `on_both_backends!(#[ignore] name)`. A test fn nobody registers is dead code, which
/// clippy refuses.
macro_rules! on_both_backends {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([postgres => Postgres, embedded => Embedded] $($tests)*);
    };
}

/// Like `on_both_backends!`, for tests of what only PostgreSQL has (say why next to the test):
/// the test is `<name>::postgres`, so `cargo test postgres` / `cargo test embedded` still split
/// the suite by backend.
macro_rules! postgres_only {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([postgres => Postgres] $($tests)*);
    };
}

/// Like `on_both_backends!`, for tests of what only the embedded file has (`<name>::embedded`).
macro_rules! embedded_only {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([embedded => Embedded] $($tests)*);
    };
}

/// The expansion behind the three above: a module per test, one `#[actix_web::test]` per
/// backend in it, calling the test fn of the same name with that backend.
macro_rules! on_backends {
    (@test [$($variant:ident => $kind:ident),+] $attrs:tt $name:ident) => {
        mod $name {
            $($crate::helpers::on_backends!(@variant $variant $kind $attrs $name);)+
        }
    };
    (@variant $variant:ident $kind:ident [$(#[$attr:meta])*] $name:ident) => {
        #[actix_web::test]
        $(#[$attr])*
        async fn $variant() {
            super::$name($crate::helpers::Backend::$kind).await
        }
    };
    ($variants:tt $($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $($crate::helpers::on_backends!(@test $variants [$(#[$attr])*] $name);)+
    };
}

pub(crate) use {embedded_only, on_backends, on_both_backends, postgres_only};

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

/// A fresh database of one backend that is removed when this goes away: a PostgreSQL database
/// (dropped with its connections), or an embedded file in a directory of its own (deleted).
pub enum TestDatabase {
    Postgres { name: String },
    Embedded { directory: PathBuf },
}

impl TestDatabase {
    /// A migrated PostgreSQL database, or the path of an embedded file that does not exist yet
    /// (the registry creates and migrates it at start).
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => {
                let admin = connect("postgres").await;
                let template = ensure_template(&admin).await;
                let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                    .await
                    .expect("create the test database from the template");
                TestDatabase::Postgres { name }
            }
            Backend::Embedded => TestDatabase::embedded(),
        }
    }

    /// A database with no schema at all.
    pub async fn create_empty(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => {
                let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
                connect("postgres")
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create an empty test database");
                TestDatabase::Postgres { name }
            }
            Backend::Embedded => TestDatabase::embedded(),
        }
    }

    fn embedded() -> TestDatabase {
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory)
            .unwrap_or_else(|e| panic!("create {}: {e}", directory.display()));
        TestDatabase::Embedded { directory }
    }

    /// The `DATABASE_URL`: a `postgres://` URL, or the embedded file's plain path.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Postgres { name } => database_url(name),
            TestDatabase::Embedded { .. } => self.file().display().to_string(),
        }
    }

    /// The embedded file as a `sqlite:///abs/path.db` URL (the other spelling the registry takes).
    pub fn sqlite_url(&self) -> String {
        let file = self.file();
        assert!(file.is_absolute(), "{}", file.display());
        format!("sqlite://{}", file.display())
    }

    /// The embedded database file.
    pub fn file(&self) -> PathBuf {
        match self {
            TestDatabase::Embedded { directory } => directory.join("registry.db"),
            TestDatabase::Postgres { .. } => panic!("a PostgreSQL test database has no file"),
        }
    }

    /// The PostgreSQL database's name.
    pub fn pg_name(&self) -> &str {
        match self {
            TestDatabase::Postgres { name } => name,
            TestDatabase::Embedded { .. } => panic!("an embedded test database has no name"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = match self {
            TestDatabase::Embedded { directory } => {
                let _ = std::fs::remove_dir_all(directory);
                return;
            }
            TestDatabase::Postgres { name } => name.clone(),
        };
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
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
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
        admin_host: "127.0.0.1".into(),
        database_url,
        db_pool_size: 4,
        http_workers: 1,
        max_body_bytes: 64 * 1024,
        max_connections: 10_000,
        max_page_bytes: 4 << 20,
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
    /// Direct access to the app's database, for setting up states the API cannot reach.
    fixture: Fixture,
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

    /// The PostgreSQL connection of a PostgreSQL-only test (schema and version skew).
    pub fn pg(&self) -> &Client {
        match &self.fixture {
            Fixture::Postgres(client) => client,
            Fixture::Embedded(_) => panic!("pg() in a test that runs on the embedded backend"),
        }
    }

    /// Sets one column of a job (test setup only): `set_job(&id, "attempt_count", Set::Int(3))`.
    pub async fn set_job(&self, job_id: &str, column: &str, value: Set) {
        self.set_job_columns(job_id, &[(column, value)]).await;
    }

    /// Sets several columns of a job in one statement, so that no sweep or lease check can see
    /// the row half-changed.
    pub async fn set_job_columns(&self, job_id: &str, columns: &[(&str, Set)]) {
        self.fixture
            .update("jobs", "job_id", Key::Uuid(job_id), columns)
            .await;
    }

    /// Sets one column of every event of a job.
    pub async fn set_events(&self, job_id: &str, column: &str, value: Set) {
        self.fixture
            .update(
                "job_events",
                "job_id",
                Key::Uuid(job_id),
                &[(column, value)],
            )
            .await;
    }

    /// Sets one column of an agent.
    pub async fn set_agent(&self, agent_id: &str, column: &str, value: Set) {
        self.fixture
            .update(
                "agents",
                "agent_id",
                Key::Text(agent_id),
                &[(column, value)],
            )
            .await;
    }

    /// Every job row, read in one statement (one consistent snapshot).
    pub async fn job_rows(&self) -> Vec<JobRow> {
        self.fixture.job_rows().await
    }

    /// How many events of this job are stored.
    pub async fn event_count(&self, job_id: &str) -> i64 {
        self.fixture.event_count(job_id).await
    }

    /// `ALTER TABLE <from> RENAME TO <to>`, to make the registry's statements fail.
    pub async fn rename_table(&self, from: &str, to: &str) {
        self.fixture.rename_table(from, to).await;
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

/// A value the fixture writes into a column.
#[derive(Debug, Clone, Copy)]
pub enum Set {
    /// An integer column to this value.
    Int(i64),
    /// An integer column to its current value plus this.
    Add(i64),
    /// A timestamp column to now plus this many seconds (negative: in the past).
    SecondsFromNow(i64),
    /// A timestamp column to this instant, UTC to the second: `"2026-01-01T00:00:00Z"`.
    At(&'static str),
}

/// What the rows to change are identified by.
enum Key<'a> {
    /// A job id as the API shows it.
    Uuid(&'a str),
    Text(&'a str),
}

/// A job row as stored, for counting rows in a given state.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job_id: String,
    pub owner_instance_id: Option<String>,
    pub attempt_count: i64,
    pub claim_epoch: i64,
}

/// The test's own connection to the app's database. Both backends store the same tables and
/// columns; the embedded file keeps uuids as lowercase hyphenated TEXT, timestamps as INTEGER
/// microseconds since the Unix epoch (UTC), JSON as TEXT and booleans as INTEGER 0/1.
enum Fixture {
    Postgres(Client),
    /// Calls block (on SQLite's busy timeout at worst), so they run on the blocking pool.
    Embedded(Arc<Mutex<rusqlite::Connection>>),
}

/// Table and column names are formatted into the statements: only test-code constants that look
/// like identifiers get there. Values are always parameters.
fn identifier(name: &str) -> &str {
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "not an identifier the fixture accepts: {name:?}"
    );
    name
}

fn uuid_of(job_id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(job_id).unwrap_or_else(|e| panic!("job id {job_id:?}: {e}"))
}

impl Fixture {
    async fn open(database: &TestDatabase) -> Fixture {
        match database {
            TestDatabase::Postgres { name } => Fixture::Postgres(connect(name).await),
            TestDatabase::Embedded { .. } => {
                let file = database.file();
                // Read-write but never create: the registry must have made this very file.
                let connection = rusqlite::Connection::open_with_flags(
                    &file,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .unwrap_or_else(|e| panic!("open the embedded database {}: {e}", file.display()));
                connection
                    .busy_timeout(Duration::from_secs(5))
                    .expect("busy timeout");
                Fixture::Embedded(Arc::new(Mutex::new(connection)))
            }
        }
    }

    /// Runs `call` on the embedded connection, off the test's runtime thread.
    async fn sqlite<T: Send + 'static>(
        connection: &Arc<Mutex<rusqlite::Connection>>,
        call: impl FnOnce(&rusqlite::Connection) -> T + Send + 'static,
    ) -> T {
        let connection = connection.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            call(&connection)
        })
        .await
        .expect("the fixture's SQLite call")
    }

    async fn update(&self, table: &str, key_column: &str, key: Key<'_>, columns: &[(&str, Set)]) {
        let (table, key_column) = (identifier(table), identifier(key_column));
        assert!(!columns.is_empty(), "nothing to set");
        let updated = match self {
            Fixture::Postgres(client) => {
                type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;
                let mut params: Vec<Param> = vec![match key {
                    Key::Uuid(id) => Box::new(uuid_of(id)),
                    Key::Text(text) => Box::new(text.to_owned()),
                }];
                let mut sets = Vec::new();
                for &(column, value) in columns {
                    let (column, n) = (identifier(column), params.len() + 1);
                    let (set, param): (String, Param) = match value {
                        Set::Int(v) => (format!("{column} = ${n}"), Box::new(v)),
                        Set::Add(v) => (format!("{column} = {column} + ${n}"), Box::new(v)),
                        Set::SecondsFromNow(s) => (
                            format!("{column} = now() + make_interval(secs => ${n}::float8)"),
                            Box::new(s as f64),
                        ),
                        Set::At(at) => (
                            format!("{column} = ${n}::text::timestamptz"),
                            Box::new(at.to_owned()),
                        ),
                    };
                    sets.push(set);
                    params.push(param);
                }
                let statement = format!(
                    "UPDATE {table} SET {} WHERE {key_column} = $1",
                    sets.join(", ")
                );
                let params: Vec<_> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client
                    .execute(&statement, &params)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"))
            }
            Fixture::Embedded(connection) => {
                use rusqlite::types::Value as Sql;
                let mut params = vec![match key {
                    Key::Uuid(id) => Sql::Text(uuid_of(id).hyphenated().to_string()),
                    Key::Text(text) => Sql::Text(text.to_owned()),
                }];
                let mut sets = Vec::new();
                for &(column, value) in columns {
                    let (column, n) = (identifier(column), params.len() + 1);
                    let (set, param) = match value {
                        Set::Int(v) => (format!("{column} = ?{n}"), v),
                        Set::Add(v) => (format!("{column} = {column} + ?{n}"), v),
                        Set::SecondsFromNow(s) => {
                            (format!("{column} = ?{n}"), now_micros() + s * 1_000_000)
                        }
                        Set::At(at) => (format!("{column} = ?{n}"), unix_micros_of(at)),
                    };
                    sets.push(set);
                    params.push(Sql::Integer(param));
                }
                let statement = format!(
                    "UPDATE {table} SET {} WHERE {key_column} = ?1",
                    sets.join(", ")
                );
                Fixture::sqlite(connection, move |db| {
                    db.execute(&statement, rusqlite::params_from_iter(params))
                        .unwrap_or_else(|e| panic!("{statement}: {e}")) as u64
                })
                .await
            }
        };
        assert!(updated > 0, "no {table} row has {key_column} = {key}");
    }

    async fn job_rows(&self) -> Vec<JobRow> {
        match self {
            Fixture::Postgres(client) => client
                .query(
                    "SELECT job_id::text, owner_instance_id, attempt_count, claim_epoch FROM jobs",
                    &[],
                )
                .await
                .expect("read the job rows")
                .iter()
                .map(|row| JobRow {
                    job_id: row.get(0),
                    owner_instance_id: row.get(1),
                    attempt_count: row.get(2),
                    claim_epoch: row.get(3),
                })
                .collect(),
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, |db| {
                    let mut statement = db
                    .prepare(
                        "SELECT job_id, owner_instance_id, attempt_count, claim_epoch FROM jobs",
                    )
                    .expect("read the job rows");
                    let rows = statement
                        .query_map([], |row| {
                            Ok(JobRow {
                                job_id: row.get(0)?,
                                owner_instance_id: row.get(1)?,
                                attempt_count: row.get(2)?,
                                claim_epoch: row.get(3)?,
                            })
                        })
                        .expect("read the job rows");
                    rows.collect::<Result<Vec<_>, _>>()
                        .expect("read the job rows")
                })
                .await
            }
        }
    }

    async fn event_count(&self, job_id: &str) -> i64 {
        let id = uuid_of(job_id);
        match self {
            Fixture::Postgres(client) => client
                .query_one("SELECT count(*) FROM job_events WHERE job_id = $1", &[&id])
                .await
                .expect("count the events")
                .get(0),
            Fixture::Embedded(connection) => {
                let id = id.hyphenated().to_string();
                Fixture::sqlite(connection, move |db| {
                    db.query_row(
                        "SELECT count(*) FROM job_events WHERE job_id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .expect("count the events")
                })
                .await
            }
        }
    }

    async fn rename_table(&self, from: &str, to: &str) {
        let statement = format!(
            "ALTER TABLE {} RENAME TO {}",
            identifier(from),
            identifier(to)
        );
        match self {
            Fixture::Postgres(client) => client
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}")),
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, move |db| {
                    db.execute_batch(&statement)
                        .unwrap_or_else(|e| panic!("{statement}: {e}"))
                })
                .await
            }
        }
    }
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Uuid(text) | Key::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// Microseconds since the Unix epoch now: the embedded backend's clock and timestamp unit.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

/// `"2026-01-01T00:00:00Z"` as microseconds since the Unix epoch (only this exact shape).
fn unix_micros_of(at: &str) -> i64 {
    let b = at.as_bytes();
    let shape_ok = b.len() == 20
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    assert!(shape_ok, "expected YYYY-MM-DDTHH:MM:SSZ, got {at:?}");
    let field = |from: usize, to: usize| -> i64 {
        at[from..to]
            .parse()
            .unwrap_or_else(|_| panic!("expected YYYY-MM-DDTHH:MM:SSZ, got {at:?}"))
    };
    let (year, month, day) = (field(0, 4), field(5, 7), field(8, 10));
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{at:?}"
    );
    // Days from the civil date (H. Hinnant's algorithm), in the proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + field(11, 13) * 3_600 + field(14, 16) * 60 + field(17, 19);
    seconds * 1_000_000
}

#[test]
fn fixture_instants_are_unix_microseconds() {
    assert_eq!(unix_micros_of("1970-01-01T00:00:00Z"), 0);
    assert_eq!(
        unix_micros_of("2026-01-01T00:00:00Z"),
        1_767_225_600_000_000
    );
    assert_eq!(
        unix_micros_of("2024-02-29T12:34:56Z"),
        1_709_210_096_000_000
    );
    assert_eq!(unix_micros_of("1969-12-31T23:59:59Z"), -1_000_000);
}

#[test]
fn the_fixture_takes_only_identifiers() {
    assert_eq!(identifier("lease_expires_at"), "lease_expires_at");
    for bad in ["", "jobs; DROP TABLE jobs", "Jobs", "a1", "x y"] {
        assert!(
            std::panic::catch_unwind(|| identifier(bad)).is_err(),
            "{bad:?}"
        );
    }
}

on_both_backends!(the_fixture_writes_what_the_api_reads);
async fn the_fixture_writes_what_the_api_reads(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    app.set_job_columns(
        &id,
        &[
            ("submitted_at", Set::At("2026-01-01T00:00:00Z")),
            ("attempt_count", Set::Int(3)),
            ("claim_epoch", Set::Add(2)),
            ("lease_expires_at", Set::SecondsFromNow(-300)),
        ],
    )
    .await;
    let job = app.job(&id).await;
    assert_eq!(job["submitted_at"], 1_767_225_600);
    assert_eq!(job["attempt_count"], 3);
    assert_eq!(job["claim_epoch"], 2);
    let lease = job["lease_expires_at"].as_i64().unwrap();
    assert!((now() - 302..=now() - 298).contains(&lease), "{lease}");
    let rows = app.job_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].job_id, id);
    assert_eq!((rows[0].attempt_count, rows[0].claim_epoch), (3, 2));
    app.post(&format!("/jobs/{id}/events"), &json!({"type": "t"}))
        .await;
    assert_eq!(app.event_count(&id).await, 1);
}

/// Polls `check` every 20 ms until it holds; fails after `limit`. Returns the time it took.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}
