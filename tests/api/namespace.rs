//! Our own namespace in a database shared with other tools (issue 15): on PostgreSQL every
//! object of ours is in schema `mesh_registry` (or the one configured), an earlier
//! mesh-registry's tables in `public` move there once, and the Go registry's tables are named in
//! the log and never touched; the embedded store has a file name of its own and never writes
//! into the Go registry's file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_registry::store::DbSchema;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

use crate::helpers::{
    connect, postgres_only, start_app, Backend, KilledOnDrop, RegistryProcess, TestApp,
    TestDatabase,
};

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

/// The migrations an earlier mesh-registry applied, where it applied them: in `public`.
mod earlier_release {
    refinery::embed_migrations!("migrations/postgres");
}

/// Every relation and function outside PostgreSQL's own schemas, as `schema.name (kind)`.
async fn objects(db: &Client) -> Vec<String> {
    db.query(
        "SELECT n.nspname || '.' || c.relname || ' (' || c.relkind::text || ')' \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' \
         UNION ALL \
         SELECT n.nspname || '.' || p.proname || '()' \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1",
        &[],
    )
    .await
    .expect("list the objects")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

fn all_in(objects: &[String], schema: &str) -> bool {
    objects.iter().all(|o| o.starts_with(&format!("{schema}.")))
}

/// Submit, claim, complete: the registry serves.
async fn full_cycle(app: &TestApp, capability: &str) {
    let id = app.submit(capability).await;
    let claimed = app.claim(capability, "worker").await.expect("claimed");
    assert_eq!(claimed["id"], id.as_str());
    let done = app
        .delta(
            "worker",
            json!({"id": id, "claim_epoch": claimed["claim_epoch"], "status": "completed"}),
        )
        .await;
    assert_eq!(done["accepted"], 1);
}

postgres_only!(a_fresh_database_keeps_every_object_in_the_registry_schema);
async fn a_fresh_database_keeps_every_object_in_the_registry_schema(backend: Backend) {
    let database = Arc::new(TestDatabase::create_empty(backend).await);
    let app = start_app(database, |_| {}).await;
    full_cycle(&app, "fresh").await;
    let objects = objects(app.pg()).await;
    assert!(all_in(&objects, "mesh_registry"), "{objects:#?}");
    for expected in [
        "mesh_registry.jobs (r)",
        "mesh_registry.job_events (r)",
        "mesh_registry.agents (r)",
        "mesh_registry.fleet_state (r)",
        "mesh_registry.refinery_schema_history (r)",
        "mesh_registry.jobs_claimable_idx (i)",
        "mesh_registry.job_lease_window()",
        "mesh_registry.merged_recv_cursor()",
    ] {
        assert!(
            objects.contains(&expected.to_owned()),
            "{expected}: {objects:#?}"
        );
    }
}

postgres_only!(registries_in_two_schemas_of_one_database_do_not_see_each_other);
async fn registries_in_two_schemas_of_one_database_do_not_see_each_other(backend: Backend) {
    let database = Arc::new(TestDatabase::create_empty(backend).await);
    let in_schema = |name: &'static str| {
        move |config: &mut mesh_registry::config::Config| {
            config.db_schema = DbSchema::parse(name).unwrap()
        }
    };
    let a = start_app(database.clone(), in_schema("team_a")).await;
    let b = start_app(database.clone(), in_schema("team_b")).await;
    let id = a.submit("shared").await;
    assert_eq!(b.get(&format!("/jobs/{id}")).await.status(), 404);
    assert!(b.claim("shared", "b-worker").await.is_none());

    // A fleet drain of one registry is not the other's (nor are its event wake-ups).
    let drained = a
        .http
        .post(a.url("/admin/drain?scope=fleet"))
        .send()
        .await
        .unwrap();
    assert_eq!(drained.status(), 200);
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert!(
        a.claim("shared", "a-worker").await.is_none(),
        "a is drained"
    );
    full_cycle(&b, "b-only").await;

    let objects = objects(a.pg()).await;
    let (in_a, rest): (Vec<String>, Vec<String>) =
        objects.into_iter().partition(|o| o.starts_with("team_a."));
    assert!(in_a.contains(&"team_a.jobs (r)".to_owned()), "{in_a:#?}");
    assert!(all_in(&rest, "team_b"), "{rest:#?}");
    assert_eq!(in_a.len(), rest.len(), "{in_a:#?} {rest:#?}");
}

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused_at_start() {
    for (name, reason) in [
        ("Team-A", "lowercase letters, digits and underscores"),
        ("public", "shared with the Go registry"),
    ] {
        let output = Command::new(BINARY)
            .args(["--port", "0", "--db-schema", name])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("--db-schema"), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}

/// A database as an earlier mesh-registry left it: its migrations up to `version` in
/// `public`, a job claimed by `worker` with an event, and a queued job. Returns their ids.
async fn earlier_layout(database: &TestDatabase, version: u32) -> (uuid::Uuid, uuid::Uuid) {
    let (mut db, connection) = tokio_postgres::connect(&database.url(), NoTls)
        .await
        .unwrap();
    actix_web::rt::spawn(connection);
    earlier_release::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(&mut db)
        .await
        .unwrap();
    let (running, queued) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    db.execute(
        "INSERT INTO public.jobs (job_id, capability, submitted_by, submitted_payload, status, \
         owner_instance_id, claim_epoch, attempt_count, lease_expires_at, event_seq, submitted_at) \
         VALUES ($1, 'old', 'v0', '{\"kept\": true}', 'working', 'worker', 1, 1, \
                 now() + interval '1 hour', 1, now() - interval '1 minute'), \
                ($2, 'old', 'v0', '{\"queued\": true}', 'working', NULL, 0, 0, NULL, 0, now())",
        &[&running, &queued],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO public.job_events (job_id, seq, type, payload) \
         VALUES ($1, 1, 'note', '\"before the move\"')",
        &[&running],
    )
    .await
    .unwrap();
    (running, queued)
}

/// `(version, name, checksum)` of every applied migration in `schema`.
async fn history(db: &Client, schema: &str) -> Vec<(i32, String, String)> {
    db.query(
        &format!("SELECT version, name, checksum FROM {schema}.refinery_schema_history ORDER BY 1"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

pub(crate) fn working_directory() -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "mesh-registry-namespace-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

postgres_only!(an_earlier_layout_in_public_moves_once_with_its_data);
async fn an_earlier_layout_in_public_moves_once_with_its_data(backend: Backend) {
    // An earlier release that had V3 (tables only), and one that had V5 (the rule functions).
    for version in [3, 5] {
        let database = TestDatabase::create_empty(backend).await;
        let (running, queued) = earlier_layout(&database, version).await;
        let db = connect(database.pg_name()).await;
        let earlier_history = history(&db, "public").await;
        let directory = working_directory();
        let url = database.url();
        let env = [("DATABASE_URL", url.as_str())];

        // `migrate status` says what the next start will do, and does nothing itself.
        let status = Command::new(BINARY)
            .args(["migrate", "status", "--database-url", &url])
            .output()
            .expect("run migrate status");
        let printed = String::from_utf8_lossy(&status.stdout);
        assert!(
            printed.contains("Note: schema public holds the tables of an earlier mesh-registry")
                && printed.contains("the next start moves them into schema mesh_registry"),
            "{printed}"
        );
        assert_eq!(history(&db, "public").await, earlier_history);

        let registry = RegistryProcess::start(&directory, &env);
        let moved = registry.logged("moved the tables of an earlier mesh-registry");
        assert_eq!(moved.len(), 1, "{:#?}", registry.startup_log);
        assert!(moved[0].contains("from schema public into schema mesh_registry"));
        let objects = objects(&db).await;
        assert!(
            all_in(&objects, "mesh_registry"),
            "V{version}: {objects:#?}"
        );
        assert!(objects.contains(&"mesh_registry.merged_recv_cursor()".to_owned()));
        let history_now = history(&db, "mesh_registry").await;
        assert_eq!(history_now[..version as usize], earlier_history[..]);
        assert_eq!(history_now.len(), postgres_migrations());

        let (status, job) = registry
            .send("GET", &format!("/jobs/{running}"), None)
            .await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(
            (&job["owner_instance_id"], &job["submitted_payload"]),
            (&json!("worker"), &json!({"kept": true}))
        );
        let (_, events) = registry
            .send("GET", &format!("/jobs/{running}/events"), None)
            .await;
        assert_eq!(events["events"][0]["payload"], "before the move");
        let (_, claimed) = registry
            .send(
                "POST",
                "/jobs/claim",
                Some(json!({"capability": "old", "instance_id": "new-worker"})),
            )
            .await;
        assert_eq!(claimed["claimed"][0]["id"], queued.to_string());
        let (_, done) = registry
            .send(
                "POST",
                "/jobs/batch",
                Some(json!({"instance_id": "worker", "deltas": [
                    {"id": running, "claim_epoch": 1, "status": "completed"}]})),
            )
            .await;
        assert_eq!(done["accepted"], 1, "{done}");
        registry.kill();

        // Once: a restart finds everything in place and moves nothing.
        let registry = RegistryProcess::start(&directory, &env);
        assert!(
            registry.logged("moved the tables").is_empty(),
            "{:#?}",
            registry.startup_log
        );
        assert_eq!(history(&db, "mesh_registry").await, history_now);
        let (_, job) = registry
            .send("GET", &format!("/jobs/{running}"), None)
            .await;
        assert_eq!(job["status"], "completed");
        drop(registry);
        let _ = std::fs::remove_dir_all(&directory);
    }
}

postgres_only!(an_earlier_layout_another_tool_changed_is_left_where_it_is);
async fn an_earlier_layout_another_tool_changed_is_left_where_it_is(backend: Backend) {
    let database = TestDatabase::create_empty(backend).await;
    let (running, _) = earlier_layout(&database, 5).await;
    let db = connect(database.pg_name()).await;
    // What meshui's auto-migration did to an earlier mesh-registry's tables.
    db.batch_execute("ALTER TABLE public.jobs DROP COLUMN event_seq")
        .await
        .unwrap();
    let directory = working_directory();
    let url = database.url();
    let registry = RegistryProcess::start(&directory, &[("DATABASE_URL", url.as_str())]);
    let warned = registry.logged("another tool has changed");
    assert_eq!(warned.len(), 1, "{:#?}", registry.startup_log);
    assert!(
        warned[0].contains("column jobs.event_seq (bigint)"),
        "{}",
        warned[0]
    );
    let (status, _) = registry
        .send("GET", &format!("/jobs/{running}"), None)
        .await;
    assert_eq!(status, 404, "not moved: this registry starts empty");
    let left: i64 = db
        .query_one("SELECT count(*) FROM public.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2);
    drop(registry);
    let _ = std::fs::remove_dir_all(&directory);
}

/// The directory of the reference's real binaries (fetched once; see tests/reference-cli.sh).
fn reference_binaries() -> PathBuf {
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference-cli.sh"
    ))
    .stderr(Stdio::inherit())
    .output()
    .expect("run tests/reference-cli.sh");
    assert!(
        output.status.success(),
        "the reference's binaries: {output:?}"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The real Go registry, running in a working directory (killed if a test fails first).
pub(crate) struct GoRegistry {
    process: KilledOnDrop,
    base: String,
    http: reqwest::Client,
}

impl GoRegistry {
    /// Starts it in `directory` (on `database_url`, or its default file there), and waits until
    /// it answers.
    pub(crate) async fn start(directory: &Path, database_url: Option<&str>) -> GoRegistry {
        GoRegistry::start_with(directory, database_url, &[]).await
    }

    /// `start`, with more of its environment variables.
    pub(crate) async fn start_with(
        directory: &Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> GoRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(reference_binaries().join("mcp-mesh-registry"));
        command
            .current_dir(directory)
            .env_remove("DATABASE_URL")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        command.envs(env.iter().copied());
        let process = KilledOnDrop(command.spawn().expect("start the Go registry"));
        let registry = GoRegistry {
            process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while registry.send("GET", "/health", None).await.0 != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Go registry did not start"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }

    /// One request; the status (0 while it does not answer) and the JSON body.
    pub(crate) async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Stops it as an operator would, with SIGTERM, and waits for it to exit.
    pub(crate) fn stop(mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.process.0.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        self.process.0.wait().unwrap();
    }
}

/// Runs the Go registry in `directory` (on `database_url`, or its default file there), lets
/// it create its tables and submits one job through it, then stops it with SIGTERM.
pub(crate) async fn run_the_reference(directory: &Path, database_url: Option<&str>) {
    let reference = GoRegistry::start(directory, database_url).await;
    let (status, _) = reference
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "go", "submitted_by": "go", "submitted_payload": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 201);
    reference.stop();
}

/// `pg_dump` of schema `public`, without the random key newer versions print in it.
pub(crate) fn dump_public(database_url: &str) -> String {
    let output = Command::new("pg_dump")
        .args(["--schema=public", "--dbname", database_url])
        .output()
        .expect("run pg_dump");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

postgres_only!(the_go_registrys_tables_are_named_in_the_log_and_left_untouched);
async fn the_go_registrys_tables_are_named_in_the_log_and_left_untouched(backend: Backend) {
    let database = TestDatabase::create_empty(backend).await;
    let directory = working_directory();
    let url = database.url();
    run_the_reference(&directory, Some(&url)).await;
    let before = dump_public(&url);
    assert!(
        before.contains("CREATE TABLE public.capabilities"),
        "{before}"
    );

    let registry = RegistryProcess::start(&directory, &[("DATABASE_URL", url.as_str())]);
    let found = registry.logged("found the Go registry's tables in schema public");
    assert_eq!(found.len(), 1, "{:#?}", registry.startup_log);
    assert!(found[0].contains("capabilities") && found[0].contains("jobs"));
    let (status, created) = registry
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "go", "submitted_by": "us", "submitted_payload": {}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, claimed) = registry
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "go", "instance_id": "ours"})),
        )
        .await;
    assert_eq!(claimed["claimed"][0]["id"], created["id"], "only our job");
    let prune = Command::new(BINARY)
        .args(["migrate", "prune", "--database-url", &url])
        .output()
        .unwrap();
    let listed = String::from_utf8(prune.stdout).unwrap();
    assert!(listed.contains("Nothing to prune"), "{listed}");
    registry.kill();

    assert_eq!(
        dump_public(&url),
        before,
        "the Go registry's tables, byte for byte"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

/// The bytes of the file and of its write-ahead log, if any.
fn file_bytes(file: &Path) -> Vec<Vec<u8>> {
    let wal = PathBuf::from(format!("{}-wal", file.display()));
    [file.to_path_buf(), wal]
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_default())
        .collect()
}

#[actix_web::test]
async fn the_go_registrys_file_is_named_in_the_log_and_never_opened_as_ours() {
    let directory = working_directory();
    run_the_reference(&directory, None).await;
    let theirs = directory.join("mcp_mesh_registry.db");
    let before = file_bytes(&theirs);
    assert!(!before[0].is_empty(), "the Go registry made its file");

    let registry = RegistryProcess::start(&directory, &[]);
    let found = registry.logged("found the Go registry's tables in the file mcp_mesh_registry.db");
    assert_eq!(found.len(), 1, "{:#?}", registry.startup_log);
    assert_eq!(
        registry
            .logged("embedded SQLite file mesh_registry.db")
            .len(),
        1,
        "{:#?}",
        registry.startup_log
    );
    let (status, _) = registry
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "c", "submitted_by": "us", "submitted_payload": {}})),
        )
        .await;
    assert_eq!(status, 201);
    registry.kill();

    // Named explicitly, the Go registry's file is refused, in one line.
    let refused = Command::new(BINARY)
        .current_dir(&directory)
        .args(["--port", "0", "--database-url", "mcp_mesh_registry.db"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("holds the Go registry's tables"),
        "{stderr}"
    );

    assert_eq!(
        file_bytes(&theirs),
        before,
        "the Go registry's file, byte for byte"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

#[actix_web::test]
async fn a_file_an_earlier_mesh_registry_made_under_the_old_name_stays_in_use() {
    let directory = working_directory();
    let registry = RegistryProcess::start(&directory, &[("DATABASE_URL", "mcp_mesh_registry.db")]);
    let (_, created) = registry
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "c", "submitted_by": "us", "submitted_payload": {}})),
        )
        .await;
    registry.kill();

    let registry = RegistryProcess::start(&directory, &[]);
    assert_eq!(
        registry
            .logged("using mcp_mesh_registry.db, the file an earlier mesh-registry made")
            .len(),
        1,
        "{:#?}",
        registry.startup_log
    );
    let id = created["id"].as_str().unwrap();
    let (status, job): (u16, Value) = registry.send("GET", &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 200, "{job}");
    assert!(!directory.join("mesh_registry.db").exists());
    drop(registry);
    let _ = std::fs::remove_dir_all(&directory);
}

/// How many PostgreSQL migrations this binary carries.
fn postgres_migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count()
}
