//! mesh-registry benchmark: starts the registry binary (and the reference registry, when one is
//! given or cached) on fresh databases of each backend (PostgreSQL, and the embedded SQLite file
//! each registry uses when no DATABASE_URL is given), drives the HTTP API with a small async
//! load generator, and prints one JSON line per scenario, backend and target, then one ratio
//! line per scenario and backend.
//!
//!   cargo bench --bench registry -- [scenario ...] [--reference PATH | --no-reference]
//!                                   [--backend postgres|embedded] [--seconds N] [--slow]
//!                                   [--metrics-off]
//!
//! Scenarios (default: all): startup, idle, submit, cycle, cycle-backlog, poll, wakeup, reclaim,
//! drain, statements, heartbeat-statements, live-claims. The reference is `--reference PATH`,
//! else the binary that `tests/meshctl/run.sh` caches
//! (`~/.cache/mesh-registry/cli-linux-x64-3.7.1`), else none.
//! `--slow` also measures the reference's reclaim latency (it waits for its 5-minute sweep).
//! Both backends run unless `--backend` names one. On the embedded backend, `statements` and
//! `heartbeat-statements` (PostgreSQL wire counts) do not apply, and the reference's reclaim is
//! not read.
//! `--metrics-off` also runs ours with `MCP_MESH_METRICS=false` (target `ours-metrics-off`),
//! in the same run, and prints the ratio of ours over it: what metrics cost.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;
use uuid::Uuid;

#[path = "registry/costs.rs"]
mod costs;
#[path = "registry/report.rs"]
mod report;
#[path = "registry/scale.rs"]
mod scale;

/// The PostgreSQL server's port on 127.0.0.1 (user `postgres`, trusted): `--pg-port`, else
/// `MESH_BENCH_PG_PORT`, else 5432.
static PG_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

fn pg_port() -> u16 {
    *PG_PORT.get_or_init(|| {
        std::env::var("MESH_BENCH_PG_PORT")
            .ok()
            .and_then(|port| port.parse().ok())
            .unwrap_or(5432)
    })
}

type Figures = Map<String, Value>;

/// Where a registry under test keeps its data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    /// The registry's default: a SQLite file in its working directory.
    Embedded,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Embedded => "embedded",
        }
    }
}

/// A registry's database, removed when the registry is dropped.
enum Database {
    Postgres {
        name: String,
        client: tokio_postgres::Client,
    },
    /// The working directory the registry created its file in.
    Embedded { directory: PathBuf },
}

/// A registry build to measure.
#[derive(Clone)]
struct Target {
    name: &'static str,
    binary: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Target {
    fn ours() -> Target {
        Target {
            name: "ours",
            binary: PathBuf::from(env!("CARGO_BIN_EXE_mesh-registry")),
            env: vec![("MCP_MESH_LOG_LEVEL", "WARNING".into())],
        }
    }

    /// Ours without the per-request measurements and `GET /metrics`.
    fn ours_without_metrics() -> Target {
        let mut ours = Target::ours();
        ours.name = "ours-metrics-off";
        ours.env.push(("MCP_MESH_METRICS", "false".into()));
        ours
    }

    fn reference(binary: PathBuf) -> Target {
        Target {
            name: "reference",
            binary,
            // Its fastest setting (issue 8).
            env: vec![
                ("MCP_MESH_LOG_LEVEL", "WARNING".into()),
                ("DB_MAX_IDLE_CONNECTIONS", "25".into()),
            ],
        }
    }

    fn cached_reference() -> Option<PathBuf> {
        let home = std::env::var_os("HOME")?;
        let cache = std::env::var_os("MESH_REGISTRY_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(home).join(".cache/mesh-registry"));
        let binary = cache.join("cli-linux-x64-3.7.1/package/bin/mcp-mesh-registry");
        binary.exists().then_some(binary)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Unqualified names find our tables (schema mesh_registry) or the reference's (public).
/// The benchmark's own sessions are named `mesh-bench` (to tell them from the registry's).
async fn connect(database: &str) -> tokio_postgres::Client {
    let server = format!("postgres://postgres@127.0.0.1:{}", pg_port());
    let url = format!(
        "{server}/{database}?application_name=mesh-bench\
         &options=-c%20search_path%3Dmesh_registry,public"
    );
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
    tokio::spawn(connection);
    client
}

/// A running registry on its own database; stopped and dropped with this value.
struct Registry {
    child: Child,
    /// How it was started (to start it again on the same data).
    command: Command,
    name: &'static str,
    base: String,
    database: Database,
    http: reqwest::Client,
    startup: Duration,
}

impl Registry {
    async fn start(target: &Target, backend: Backend) -> Registry {
        Registry::start_via(target, backend, None).await
    }

    /// Starts it; with `db_port`, it reaches PostgreSQL through that port (a counting proxy).
    async fn start_via(target: &Target, backend: Backend, db_port: Option<u16>) -> Registry {
        let name = format!("mesh_bench_{}", Uuid::new_v4().simple());
        let directory = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&directory).expect("a working directory");
        let mut command = Command::new(&target.binary);
        command.current_dir(&directory).env_remove("DATABASE_URL");
        if backend == Backend::Postgres {
            connect("postgres")
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the bench database");
            let db_port = db_port.unwrap_or_else(pg_port);
            command.env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{db_port}/{name}?sslmode=disable"),
            );
        }
        let port = free_port();
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let spawned = Instant::now();
        let child = spawn(&mut command, target.name);
        wait_healthy(&http, &base, spawned, target.name).await;
        let startup = spawned.elapsed();
        let database = match backend {
            Backend::Postgres => Database::Postgres {
                client: connect(&name).await,
                name,
            },
            Backend::Embedded => Database::Embedded { directory },
        };
        Registry {
            child,
            command,
            name: target.name,
            base,
            database,
            http,
            startup,
        }
    }

    /// Stops the process and, on PostgreSQL, waits until its sessions have ended (a session
    /// reports its statistics when it ends).
    async fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Database::Postgres { name, .. } = &self.database {
            let server = connect("postgres").await;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let sessions: i64 = server
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = $1 AND application_name <> 'mesh-bench'",
                        &[name],
                    )
                    .await
                    .expect("pg_stat_activity")
                    .get(0);
                if sessions == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Stops the process and starts it again on the same data (same port, same settings).
    async fn restart(&mut self) {
        self.stop().await;
        let spawned = Instant::now();
        self.child = spawn(&mut self.command, self.name);
        wait_healthy(&self.http, &self.base, spawned, self.name).await;
    }

    /// PostgreSQL's counters for this registry's database (with its sessions ended: see `stop`).
    async fn pg_counters(&self) -> Option<costs::PgCounters> {
        let Database::Postgres { name, client } = &self.database else {
            return None;
        };
        Some(costs::PgCounters::read(&connect("postgres").await, client, name).await)
    }

    /// Its group commit so far, where its `GET /metrics` tells (see `costs::WaveCounters`).
    async fn wave_counters(&self) -> Option<costs::WaveCounters> {
        let answer = self.http.get(self.url("/metrics")).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        costs::WaveCounters::parse(&answer.text().await.ok()?)
    }

    /// CPU counters: this registry, its PostgreSQL cluster (when local), the load generator.
    async fn cpu_counters(&self) -> costs::CpuCounters {
        let postmaster = match &self.database {
            Database::Postgres { client, .. } => costs::postmaster(client).await,
            Database::Embedded { .. } => None,
        };
        costs::CpuCounters::read(self.child.id(), postmaster)
    }

    /// `(job, lease expiry)` of every job with a lease, read from the registry's database.
    async fn leases(&self) -> HashMap<Uuid, SystemTime> {
        match &self.database {
            // (`::uuid`: the reference keeps ids as text.)
            Database::Postgres { client, .. } => client
                .query(
                    "SELECT job_id::uuid, lease_expires_at FROM jobs \
                     WHERE lease_expires_at IS NOT NULL",
                    &[],
                )
                .await
                .expect("leases")
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
            // Ours only: microseconds since the epoch.
            Database::Embedded { .. } => self
                .sqlite(
                    "SELECT job_id, lease_expires_at FROM jobs WHERE lease_expires_at IS NOT NULL",
                )
                .into_iter()
                .map(|(id, micros)| {
                    let micros = micros.expect("a lease") as u64;
                    (id, SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
                })
                .collect(),
        }
    }

    /// Jobs nobody owns, read from the registry's database.
    async fn unowned(&self) -> Vec<Uuid> {
        match &self.database {
            Database::Postgres { client, .. } => client
                .query(
                    "SELECT job_id::uuid FROM jobs WHERE owner_instance_id IS NULL",
                    &[],
                )
                .await
                .expect("poll")
                .iter()
                .map(|row| row.get(0))
                .collect(),
            Database::Embedded { .. } => self
                .sqlite("SELECT job_id, NULL FROM jobs WHERE owner_instance_id IS NULL")
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        }
    }

    /// Rows of `(job id, an integer)` from our embedded file (read-only, beside the registry).
    fn sqlite(&self, query: &str) -> Vec<(Uuid, Option<i64>)> {
        let Database::Embedded { directory } = &self.database else {
            return Vec::new();
        };
        let file = rusqlite::Connection::open_with_flags(
            directory.join("mesh_registry.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the registry's file");
        file.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        let mut statement = file.prepare(query).expect("query");
        statement
            .query_map([], |row| {
                let id: String = row.get(0)?;
                Ok((Uuid::parse_str(&id).expect("uuid"), row.get(1)?))
            })
            .expect("rows")
            .map(|row| row.expect("row"))
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn proc_status(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory now, and its high-water mark, in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        (self.proc_status("VmRSS:"), self.proc_status("VmHWM:"))
    }

    /// CPU time used so far (user + system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        costs::process_cpu(self.child.id()).unwrap_or(0.0)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        match self.http.post(self.url(path)).json(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Whether `GET path` answered 200.
    async fn get_ok(&self, path: &str) -> bool {
        matches!(self.http.get(self.url(path)).send().await, Ok(resp) if resp.status() == 200)
    }

    async fn submit(&self, capability: &str) -> Option<String> {
        let body = json!({"capability": capability, "submitted_by": "bench",
                          "submitted_payload": {"n": 1}, "max_retries": 3});
        let (status, body) = self.post("/jobs", &body).await;
        (status == 201).then(|| body["id"].as_str().unwrap_or_default().to_owned())
    }

    /// `(id, epoch)` of the claimed job, or `None` for "no work".
    async fn claim(&self, capability: &str, worker: &str) -> Option<(String, i64)> {
        let (_, body) = self
            .post(
                "/jobs/claim",
                &json!({"capability": capability, "instance_id": worker}),
            )
            .await;
        let job = body["claimed"].get(0)?;
        Some((job["id"].as_str()?.to_owned(), job["claim_epoch"].as_i64()?))
    }

    async fn delta(&self, worker: &str, id: &str, epoch: i64, fields: Value) -> bool {
        let mut delta = json!({"id": id, "claim_epoch": epoch});
        delta
            .as_object_mut()
            .expect("object")
            .extend(fields.as_object().expect("object").clone());
        let (_, body) = self
            .post(
                "/jobs/batch",
                &json!({"instance_id": worker, "deltas": [delta]}),
            )
            .await;
        body["accepted"] == 1
    }

    /// One whole job cycle as a producer runs it: claim, progress, complete.
    async fn run_one(&self, capability: &str, worker: &str) -> Option<String> {
        let (id, epoch) = self.claim(capability, worker).await?;
        self.delta(
            worker,
            &id,
            epoch,
            json!({"progress": 0.5, "progress_message": "half"}),
        )
        .await;
        self.delta(
            worker,
            &id,
            epoch,
            json!({"status": "completed", "result": {"ok": true}}),
        )
        .await;
        Some(id)
    }
}

fn spawn(command: &mut Command, name: &str) -> Child {
    command
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

async fn wait_healthy(http: &reqwest::Client, base: &str, spawned: Instant, name: &str) {
    while !matches!(http.get(format!("{base}/health")).send().await, Ok(r) if r.status() == 200) {
        assert!(
            spawned.elapsed() < Duration::from_secs(60),
            "{name} did not start"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let database = match &self.database {
            Database::Embedded { directory } => {
                let _ = std::fs::remove_dir_all(directory);
                return;
            }
            Database::Postgres { name, .. } => name.clone(),
        };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                connect("postgres")
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                    .await
            })
        })
        .join();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn figures(value: Value) -> Figures {
    match value {
        Value::Object(map) => map,
        _ => Figures::new(),
    }
}

/// Runs `clients` loops of `one` until `seconds` pass; returns how many succeeded.
async fn hammer<F, Fut>(clients: usize, seconds: f64, one: F) -> (u64, f64)
where
    F: Fn(usize) -> Fut + Clone,
    Fut: std::future::Future<Output = bool>,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    join_all((0..clients).map(|c| {
        let (one, done) = (one.clone(), done.clone());
        async move {
            while Instant::now() < deadline {
                if one(c).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }))
    .await;
    (
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

/// Submissions per second with `clients` concurrent submitters, and what each cost the machine.
async fn submit(r: &Registry, seconds: f64) -> Figures {
    let clients = 16;
    let cpu_before = r.cpu_counters().await;
    let (done, elapsed) = hammer(clients, seconds, |_| async {
        r.submit("bench-submit").await.is_some()
    })
    .await;
    let cpu = r.cpu_counters().await.per_thousand(&cpu_before, done);
    let mut line = figures(
        json!({"clients": clients, "submits": done, "per_s": round(done as f64 / elapsed)}),
    );
    line.extend(figures(cpu));
    line
}

/// `GET /jobs/{id}` per second with `clients` concurrent readers and what each cost the machine,
/// then `GET /health` by the same clients (the floor).
async fn poll(r: &Registry, seconds: f64) -> Figures {
    let clients = 32;
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(r.submit("bench-poll").await.expect("submit"));
    }
    let ids = Arc::new(ids);
    let cpu_before = r.cpu_counters().await;
    let (done, elapsed) = hammer(clients, seconds, |c| {
        let ids = ids.clone();
        async move {
            let id = &ids[(c * 7 + fastrand::usize(..ids.len())) % ids.len()];
            r.get_ok(&format!("/jobs/{id}")).await
        }
    })
    .await;
    let cpu = r.cpu_counters().await.per_thousand(&cpu_before, done);
    // The HTTP floor: the same clients on `GET /health`, an answer from memory. No poll through
    // this client and this HTTP stack on this machine does better.
    let (floor, floor_elapsed) = hammer(clients, seconds, |_| r.get_ok("/health")).await;
    let mut line = figures(json!({
        "clients": clients, "gets": done, "per_s": round(done as f64 / elapsed),
        "floor_per_s": round(floor as f64 / floor_elapsed),
    }));
    line.extend(figures(cpu));
    line
}

/// Job cycles per second: `workers` producers claim, report progress and complete while
/// feeders keep `backlog` (at least twice the workers) jobs queued. Also counts "no work"
/// answers given while more jobs were queued than claims could be in flight, checks each job
/// was claimed exactly once, and reads what the window cost: claim latency, PostgreSQL's
/// counters per job and CPU per 1 000 jobs (see `costs`). On PostgreSQL the registry is
/// restarted after the queue is filled, so that its statistics start from a clean slate.
async fn cycle(r: &mut Registry, seconds: f64, backlog: usize, workers: usize) -> Figures {
    let capability = format!("bench-cycle-{}", Uuid::new_v4().simple());
    let target = backlog.max(2 * workers) as u64;
    let submitted = Arc::new(AtomicU64::new(0));
    let claimed = Arc::new(AtomicU64::new(0));
    stream_submit(r, &capability, target as usize, &submitted).await;
    if matches!(r.database, Database::Postgres { .. }) {
        r.restart().await;
    }
    let pg_before = r.pg_counters().await;
    let (mut line, done) = cycle_window(
        r,
        seconds,
        backlog,
        workers,
        &capability,
        target,
        submitted,
        claimed,
    )
    .await;
    if let Some(before) = pg_before {
        // The sessions report their last statistics when they end.
        r.stop().await;
        let after = r.pg_counters().await.expect("PostgreSQL");
        line.extend(figures(after.per_job(&before, done)));
        if let Database::Postgres { client, .. } = &r.database {
            let by_kind = costs::wal_by_kind(client, &before, &after, done).await;
            line.insert("wal_by_kind_per_job".into(), by_kind);
        }
    }
    line
}

/// The measured window of `cycle`: its figures, and the jobs completed.
#[allow(clippy::too_many_arguments)]
async fn cycle_window(
    r: &Registry,
    seconds: f64,
    backlog: usize,
    workers: usize,
    capability: &str,
    target: u64,
    submitted: Arc<AtomicU64>,
    claimed: Arc<AtomicU64>,
) -> (Figures, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let no_work_while_queued = Arc::new(AtomicU64::new(0));
    let seen: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let twice = Arc::new(AtomicU64::new(0));
    let claim_latencies: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    // Read before the CPU counters (and after them at the end), so that scraping our
    // `GET /metrics` is not counted as the window's work.
    let waves_before = r.wave_counters().await;
    let cpu_before = r.cpu_counters().await;
    let registry_cpu_before = r.cpu_seconds();
    let started = Instant::now();
    // Enough feeders that the queue keeps up with the workers.
    let feeders = 4.max(workers / 4);
    let feeder = async {
        while !stop.load(Ordering::Relaxed) {
            let queued = submitted.load(Ordering::Relaxed) - claimed.load(Ordering::Relaxed);
            if queued < target {
                join_all((0..feeders).map(|_| async {
                    if r.submit(capability).await.is_some() {
                        submitted.fetch_add(1, Ordering::Relaxed);
                    }
                }))
                .await;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    let producers = join_all((0..workers).map(|w| {
        let worker = format!("bench-worker-{w}");
        let (stop, completed, claimed, submitted) = (&stop, &completed, &claimed, &submitted);
        let (no_work_while_queued, seen, twice) = (&no_work_while_queued, &seen, &twice);
        let claim_latencies = &claim_latencies;
        async move {
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let answer = r.claim(capability, &worker).await;
                let latency = asked.elapsed().as_secs_f64() * 1e3;
                match answer {
                    Some((id, epoch)) => {
                        claim_latencies.lock().expect("lock").push(latency);
                        claimed.fetch_add(1, Ordering::Relaxed);
                        if !seen.lock().expect("lock").insert(id.clone()) {
                            twice.fetch_add(1, Ordering::Relaxed);
                        }
                        r.delta(
                            &worker,
                            &id,
                            epoch,
                            json!({"progress": 0.5, "progress_message": "half"}),
                        )
                        .await;
                        if r.delta(
                            &worker,
                            &id,
                            epoch,
                            json!({"status": "completed", "result": {"ok": true}}),
                        )
                        .await
                        {
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        let queued = submitted.load(Ordering::Relaxed) as i64
                            - claimed.load(Ordering::Relaxed) as i64;
                        // More queued than could be in flight: the answer was wrong.
                        if queued > workers as i64 {
                            no_work_while_queued.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
    }));
    let timer = async {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stop.store(true, Ordering::Relaxed);
    };
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = async {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(r.rss_kib().0, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(feeder, producers, timer, sampler);
    let elapsed = started.elapsed().as_secs_f64();
    let done = completed.load(Ordering::Relaxed);
    let cpu = r.cpu_counters().await.per_thousand(&cpu_before, done);
    let mut latencies = claim_latencies.into_inner().expect("lock");
    latencies.sort_by(f64::total_cmp);
    let mut line = figures(json!({
        "workers": workers,
        "backlog": backlog,
        "completed": done,
        "per_s": round(done as f64 / elapsed),
        "claim_p50_ms": round(percentile(&latencies, 50.0)),
        "claim_p95_ms": round(percentile(&latencies, 95.0)),
        "no_work_while_queued": no_work_while_queued.load(Ordering::Relaxed),
        "claimed_twice": twice.load(Ordering::Relaxed),
        "registry_cpu_percent": round(100.0 * (r.cpu_seconds() - registry_cpu_before) / elapsed),
        "rss_peak_kib": peak.load(Ordering::Relaxed),
    }));
    line.extend(figures(cpu));
    let waves = match (waves_before, r.wave_counters().await) {
        (Some(before), Some(after)) => after.per_job(&before, done, elapsed),
        _ => Value::Null,
    };
    line.insert("group_commit".into(), waves);
    (line, done)
}

/// Submits `count` jobs with 16 submitters.
async fn stream_submit(r: &Registry, capability: &str, count: usize, submitted: &AtomicU64) {
    let next = AtomicU64::new(0);
    join_all((0..16).map(|_| async {
        while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
            if r.submit(capability).await.is_some() {
                submitted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
    .await;
}

/// Event long-poll wake-up: a reader parked on a job, then an event posted; the time from the
/// post to the reader's answer.
async fn wakeup(r: &Registry) -> Figures {
    let id = r.submit("bench-wakeup").await.expect("submit");
    let mut latencies = Vec::new();
    for after in 0..50 {
        let reader = r
            .http
            .get(r.url(&format!("/jobs/{id}/events?after={after}&wait=10")))
            .send();
        let poster = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let posted = Instant::now();
            r.post(&format!("/jobs/{id}/events"), &json!({"type": "tick"}))
                .await;
            posted
        };
        let (answer, posted) = tokio::join!(reader, poster);
        answer.expect("long-poll answer");
        latencies.push(posted.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    figures(
        json!({"wakeups": latencies.len(), "p50_ms": round(percentile(&latencies, 50.0)),
                   "p95_ms": round(percentile(&latencies, 95.0)), "max_ms": round(*latencies.last().unwrap_or(&0.0))}),
    )
}

/// Lease-expiry reclaim latency at default settings: one-second leases claimed and abandoned;
/// the time from each lease's expiry to its job being claimable again, read from the database
/// (polled every 2 ms).
async fn reclaim(r: &Registry, jobs: usize, limit: Duration) -> Figures {
    let mut ids = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let body = json!({"capability": "bench-reclaim", "submitted_by": "bench",
                          "submitted_payload": {}, "max_duration": 1, "max_retries": 3});
        let (_, created) = r.post("/jobs", &body).await;
        ids.push(Uuid::parse_str(created["id"].as_str().expect("id")).expect("uuid"));
    }
    for worker in 0..jobs {
        r.claim("bench-reclaim", &format!("worker-{worker}"))
            .await
            .expect("claim");
    }
    let leases = r.leases().await;
    let mut reclaimed_at: HashMap<Uuid, SystemTime> = HashMap::new();
    let deadline = Instant::now() + limit;
    while reclaimed_at.len() < jobs && Instant::now() < deadline {
        let unowned = r.unowned().await;
        let now = SystemTime::now();
        for id in unowned {
            reclaimed_at.entry(id).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let at = reclaimed_at.get(id)?;
            Some(
                at.duration_since(*leases.get(id)?)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    figures(
        json!({"jobs": jobs, "reclaimed": latencies.len(), "p50_ms": round(percentile(&latencies, 50.0)),
                   "p95_ms": round(percentile(&latencies, 95.0)), "max_ms": latencies.last().map(|m| round(*m))}),
    )
}

/// Drain: with one job running and the registry draining, the time from the last completion's
/// answer to `GET /admin/drain` reporting no live claims (polled back to back).
async fn drain(r: &Registry) -> Figures {
    let mut latencies = Vec::new();
    for round_no in 0..20 {
        let capability = format!("bench-drain-{round_no}");
        r.submit(&capability).await.expect("submit");
        let (id, epoch) = r.claim(&capability, "drainer").await.expect("claim");
        r.post("/admin/drain", &Value::Null).await;
        r.delta("drainer", &id, epoch, json!({"status": "completed"}))
            .await;
        let completed = Instant::now();
        loop {
            let body: Value = r
                .http
                .get(r.url("/admin/drain"))
                .send()
                .await
                .expect("drain status")
                .json()
                .await
                .unwrap_or(Value::Null);
            if body["live_claims"] == 0 {
                break;
            }
        }
        latencies.push(completed.elapsed().as_secs_f64() * 1e3);
        r.http
            .delete(r.url("/admin/drain"))
            .send()
            .await
            .expect("resume");
    }
    latencies.sort_by(f64::total_cmp);
    figures(
        json!({"rounds": latencies.len(), "p50_ms": round(percentile(&latencies, 50.0)), "max_ms": round(*latencies.last().unwrap_or(&0.0))}),
    )
}

/// SQL statements per job cycle (submit, claim, progress, complete), counted on the wire by a
/// proxy between the registry and PostgreSQL: every simple query and every extended-protocol
/// Execute, background work included.
async fn statements(target: &Target) -> Figures {
    let counter = Arc::new(AtomicU64::new(0));
    let proxy_port = start_counting_proxy(counter.clone()).await;
    let r = Registry::start_via(target, Backend::Postgres, Some(proxy_port)).await;
    let jobs = 200;
    for _ in 0..20 {
        r.submit("bench-statements").await.expect("submit");
        r.run_one("bench-statements", "counter")
            .await
            .expect("cycle");
    }
    let before = counter.load(Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..jobs {
        r.submit("bench-statements").await.expect("submit");
        r.run_one("bench-statements", "counter")
            .await
            .expect("cycle");
    }
    let counted = counter.load(Ordering::SeqCst) - before;
    let window = started.elapsed();
    // What a registry sends on its own (its sweeps and timers) in as long again without jobs:
    // driven by the clock, not by the jobs, so the figure is given without it as well as with
    // it (a slower machine takes longer over the 200 jobs and counts more of it).
    let quiet_from = counter.load(Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let background = counter.load(Ordering::SeqCst) - quiet_from;
    figures(
        json!({"jobs": jobs, "statements": counted, "background_statements": background,
                   "per_job": round(counted.saturating_sub(background) as f64 / jobs as f64),
                   "per_job_with_background": round(counted as f64 / jobs as f64),
                   "seconds": round(window.as_secs_f64())}),
    )
}

/// SQL statements per steady-state `POST /heartbeat` of a consumer whose dependencies are one
/// contested (two producers), one single and one unresolved: the full heartbeat an SDK sends
/// after a 202, with nothing changed since its last one. Counted on the wire as `statements`.
async fn heartbeat_statements(target: &Target) -> Figures {
    let counter = Arc::new(AtomicU64::new(0));
    let proxy_port = start_counting_proxy(counter.clone()).await;
    let r = Registry::start_via(target, Backend::Postgres, Some(proxy_port)).await;
    let agent = |id: &str, tools: Value| {
        json!({"agent_id": id, "name": id, "agent_type": "mcp_agent", "runtime": "python",
               "version": "1.0.0", "http_host": "127.0.0.1", "http_port": 9000,
               "namespace": "default", "tools": tools})
    };
    for (id, capability) in [
        ("weather-a", "weather"),
        ("weather-b", "weather"),
        ("clock-a", "clock"),
    ] {
        let tools = json!([{"function_name": "serve", "capability": capability,
                            "version": "1.0.0", "tags": ["api"]}]);
        assert_eq!(r.post("/heartbeat", &agent(id, tools)).await.0, 200);
    }
    let consumer = agent(
        "planner",
        json!([{"function_name": "plan", "capability": "plan", "version": "1.0.0",
                "dependencies": [{"capability": "weather", "tags": ["api"]},
                                 {"capability": "clock"}, {"capability": "missing"}]}]),
    );
    let before = counter.load(Ordering::SeqCst);
    assert_eq!(r.post("/heartbeat", &consumer).await.0, 200);
    let first = counter.load(Ordering::SeqCst) - before;
    for _ in 0..20 {
        assert_eq!(r.post("/heartbeat", &consumer).await.0, 200);
    }
    let posts = 200;
    let before = counter.load(Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..posts {
        assert_eq!(r.post("/heartbeat", &consumer).await.0, 200);
    }
    let counted = counter.load(Ordering::SeqCst) - before;
    figures(json!({"posts": posts, "statements": counted,
                   "per_post": round(counted as f64 / posts as f64), "first_post": first,
                   "seconds": round(started.elapsed().as_secs_f64())}))
}

/// A TCP proxy in front of PostgreSQL that counts statements the clients send.
async fn start_counting_proxy(counter: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", pg_port())).await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    let mut started = false;
                    loop {
                        let n = client_read.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 || server_write.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        count_messages(&mut buffer, &mut started, &counter);
                    }
                };
                let downstream = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    port
}

/// Consumes whole frontend messages from `buffer`, counting `Q` and `E`.
fn count_messages(buffer: &mut Vec<u8>, started: &mut bool, counter: &AtomicU64) {
    let mut at = 0;
    loop {
        if !*started {
            // The startup message has no type byte.
            let Some(len) = buffer.get(at..at + 4) else {
                break;
            };
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            if buffer.len() < at + len {
                break;
            }
            at += len;
            *started = true;
            continue;
        }
        let Some(header) = buffer.get(at..at + 5) else {
            break;
        };
        let len = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
        if buffer.len() < at + 1 + len {
            break;
        }
        if matches!(header[0], b'Q' | b'E') {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        at += 1 + len;
    }
    buffer.drain(..at);
}

/// Registry memory per live claim: RSS before and after `claims` jobs are claimed and held.
async fn live_claims(r: &Registry, claims: usize) -> Figures {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = AtomicU64::new(0);
    stream_submit(r, "bench-held", claims, &submitted).await;
    let before = r.rss_kib().0;
    let next = AtomicU64::new(0);
    join_all((0..16).map(|_| async {
        while next.fetch_add(1, Ordering::Relaxed) < claims as u64 {
            let worker = format!("w-{}", fastrand::u64(..));
            r.claim("bench-held", &worker).await;
        }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = r.rss_kib().0;
    figures(
        json!({"claims": claims, "rss_after_submits_kib": before, "rss_with_live_claims_kib": held,
                   "bytes_per_live_claim": round((held.saturating_sub(before) * 1024) as f64 / claims as f64)}),
    )
}

/// The figure a ratio is taken of, for each scenario.
fn headline(scenario: &str) -> &'static str {
    match scenario {
        "submit" | "cycle" | "cycle-backlog" | "poll" => "per_s",
        "wakeup" | "drain" => "p50_ms",
        "reclaim" => "p95_ms",
        "statements" => "per_job",
        "heartbeat-statements" => "per_post",
        "startup" => "ms",
        "idle" => "rss_kib",
        _ => "bytes_per_live_claim",
    }
}

async fn run(
    scenario: &str,
    target: &Target,
    backend: Backend,
    seconds: f64,
    slow: bool,
) -> Figures {
    match (scenario, backend) {
        ("statements", Backend::Postgres) => return statements(target).await,
        ("heartbeat-statements", Backend::Postgres) => return heartbeat_statements(target).await,
        ("statements" | "heartbeat-statements", Backend::Embedded) => {
            return figures(json!({"skipped": "counts statements on the PostgreSQL wire"}))
        }
        ("reclaim", Backend::Embedded) if target.name == "reference" => {
            return figures(json!({
                "skipped": "reclaims only at its sweep (every 5 minutes by default); measured \
                            on PostgreSQL with --slow"
            }))
        }
        _ => {}
    }
    let mut r = Registry::start(target, backend).await;
    match scenario {
        "startup" => figures(json!({"ms": round(r.startup.as_secs_f64() * 1e3)})),
        "idle" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Split, because the file pages (the binary's code, mapped as it runs) depend on the
            // machine's read-ahead and page cache as much as on the binary.
            figures(
                json!({"rss_kib": r.rss_kib().0, "rss_anon_kib": r.proc_status("RssAnon:"),
                           "rss_file_kib": r.proc_status("RssFile:")}),
            )
        }
        "submit" => submit(&r, seconds).await,
        "cycle" => cycle(&mut r, seconds, 0, 8).await,
        "cycle-backlog" => cycle(&mut r, seconds, 5_000, 8).await,
        "poll" => poll(&r, seconds).await,
        "wakeup" => wakeup(&r).await,
        "reclaim" if target.name == "reference" && !slow => figures(json!({
            "skipped": "reclaims only at its sweep (every 5 minutes by default); --slow measures it"
        })),
        "reclaim" => {
            reclaim(
                &r,
                if target.name == "reference" { 10 } else { 100 },
                Duration::from_secs(400),
            )
            .await
        }
        "drain" => drain(&r).await,
        "live-claims" => live_claims(&r, 10_000).await,
        other => unreachable!("main accepts only SCENARIOS, not {other:?}"),
    }
}

/// Every scenario, in the order a full run takes them.
const SCENARIOS: [&str; 13] = [
    "startup",
    "idle",
    "submit",
    "cycle",
    "cycle-backlog",
    "poll",
    "wakeup",
    "reclaim",
    "drain",
    "statements",
    "heartbeat-statements",
    "live-claims",
    "scale",
];

fn usage() -> String {
    format!(
        "\
Usage: cargo bench --bench registry -- [SCENARIO ...] [OPTIONS]

Runs each scenario (all of them when none is named) on both backends, ours and the reference
interleaved, and prints one JSON line per scenario, backend and target. BENCHMARKS.md says what
each scenario measures.

Scenarios: {}

Options:
  --backend postgres|embedded  one backend only (default: both)
  --reference PATH             the reference binary (default: the cached mcp-mesh-registry 3.7.1)
  --no-reference               ours only
  --seconds N                  length of each throughput window (default: 10)
  --slow                       also measure the reference's reclaim (its sweep runs every 5 min)
  --metrics-off                also run ours with MCP_MESH_METRICS=false, interleaved
  --pg-port N                  PostgreSQL on 127.0.0.1:N (default: 5432, or MESH_BENCH_PG_PORT)
  --scale-rows N,N,...         job rows for the scale curve (default: 10000,100000,1000000)
  --markdown FILE              rewrite the generated tables of FILE (BENCHMARKS.md)
  -h, --help                   this text
",
        SCENARIOS.join(" ")
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut scenarios = Vec::new();
    let mut reference = Target::cached_reference();
    let (mut seconds, mut slow, mut metrics_off) = (10.0_f64, false, false);
    let mut scale_rows: Vec<u64> = vec![10_000, 100_000, 1_000_000];
    let mut markdown = None;
    let command = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect::<Vec<_>>();
    let command = format!("cargo bench --bench registry -- {}", command.join(" "));
    let mut printed: Vec<Value> = Vec::new();
    let mut backends = vec![Backend::Postgres, Backend::Embedded];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reference" => {
                reference = Some(PathBuf::from(args.next().expect("--reference PATH")))
            }
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            "--slow" => slow = true,
            "--metrics-off" => metrics_off = true,
            "--markdown" => markdown = Some(args.next().expect("--markdown FILE")),
            "--pg-port" => {
                let port = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--pg-port N");
                PG_PORT.set(port).expect("--pg-port once");
            }
            "--scale-rows" => {
                scale_rows = args
                    .next()
                    .map(|s| {
                        s.split(',')
                            .map(|n| n.parse().expect("--scale-rows N,N,..."))
                            .collect()
                    })
                    .expect("--scale-rows N,N,...")
            }
            "--no-reference" => reference = None,
            "--backend" => {
                backends = match args.next().as_deref() {
                    Some("postgres") => vec![Backend::Postgres],
                    Some("embedded") => vec![Backend::Embedded],
                    other => panic!("--backend postgres|embedded, not {other:?}"),
                }
            }
            "--help" | "-h" => {
                print!("{}", usage());
                return;
            }
            scenario if SCENARIOS.contains(&scenario) => scenarios.push(scenario.to_owned()),
            other => {
                eprint!("unknown argument {other:?}\n\n{}", usage());
                std::process::exit(2);
            }
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.map(String::from).to_vec();
    }
    let mut targets = vec![Target::ours()];
    if metrics_off {
        targets.push(Target::ours_without_metrics());
    }
    targets.extend(reference.map(Target::reference));
    for (scenario, backend) in scenarios
        .iter()
        .flat_map(|s| backends.iter().map(move |b| (s, *b)))
    {
        if scenario == "scale" {
            if backend == Backend::Postgres {
                // Ours only: the curve of our own costs (five seconds a point at most).
                for point in scale::run(&targets[0], &scale_rows, seconds.min(5.0)).await {
                    let mut line = Figures::new();
                    line.insert("scenario".into(), json!("scale"));
                    line.insert("backend".into(), json!(backend.name()));
                    line.insert("target".into(), json!("ours"));
                    line.extend(point);
                    println!("{}", Value::Object(line.clone()));
                    printed.push(Value::Object(line));
                }
            }
            continue;
        }
        let mut results: HashMap<&str, Figures> = HashMap::new();
        // Interleaved: each scenario runs on every target before the next scenario.
        for target in &targets {
            let mut line = Figures::new();
            line.insert("scenario".into(), json!(scenario));
            line.insert("backend".into(), json!(backend.name()));
            line.insert("target".into(), json!(target.name));
            line.extend(run(scenario, target, backend, seconds, slow).await);
            println!("{}", Value::Object(line.clone()));
            printed.push(Value::Object(line.clone()));
            results.insert(target.name, line);
        }
        let key = headline(scenario);
        let figure = |name: &str| {
            results
                .get(name)
                .and_then(|f| f.get(key))
                .and_then(Value::as_f64)
        };
        for (other, label) in [
            ("reference", "ours_over_reference"),
            ("ours-metrics-off", "ours_over_metrics_off"),
        ] {
            if let (Some(ours), Some(theirs)) = (figure("ours"), figure(other)) {
                println!(
                    "{}",
                    json!({"scenario": scenario, "backend": backend.name(), "ratio": key,
                           label: round(ours / theirs * 100.0) / 100.0})
                );
            }
        }
    }
    if let Some(path) = markdown {
        let pg = if backends.contains(&Backend::Postgres) {
            postgres_settings().await
        } else {
            String::new()
        };
        report::write(&path, &printed, command.trim(), &pg);
    }
}

/// The PostgreSQL server measured, and the settings that decide its commit cost and its upkeep
/// (without autovacuum, only the pruning and index hints of readers clean up in a window).
async fn postgres_settings() -> String {
    let client = connect("postgres").await;
    let mut described = Vec::new();
    for setting in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "wal_level",
        "checkpoint_timeout",
        "autovacuum",
    ] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .expect("SHOW");
        described.push(format!("{setting}={}", row.get::<_, String>(0)));
    }
    format!(
        "PostgreSQL on 127.0.0.1:{} ({})",
        pg_port(),
        described.join(", ")
    )
}
