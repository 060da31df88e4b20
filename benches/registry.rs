//! mesh-registry benchmark: starts the registry binary (and the reference registry when
//! `--reference <binary>` is given) on fresh PostgreSQL databases, drives the HTTP API, and
//! prints one JSON line per scenario and target.
//!
//!   cargo bench --bench registry -- [scenario ...] [--reference PATH]
//!
//! Scenarios: reclaim (lease-expiry reclaim latency at default settings), live-claims (registry
//! memory per live claim).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

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

    fn reference(binary: PathBuf) -> Target {
        Target {
            name: "reference",
            binary,
            env: vec![
                ("MCP_MESH_LOG_LEVEL", "WARNING".into()),
                ("DB_MAX_IDLE_CONNECTIONS", "25".into()),
            ],
        }
    }
}

/// A running registry on its own database; stopped and dropped with this value.
struct Registry {
    target: &'static str,
    child: Child,
    base: String,
    database: String,
    http: reqwest::Client,
    db: tokio_postgres::Client,
}

impl Registry {
    async fn start(target: &Target) -> Registry {
        let database = format!("mesh_bench_{}", Uuid::new_v4().simple());
        let admin = connect("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create the bench database");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&target.binary)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "DATABASE_URL",
                format!("{SERVER}/{database}?sslmode=disable"),
            )
            .envs(target.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", target.binary.display()));
        let registry = Registry {
            target: target.name,
            child,
            base: format!("http://127.0.0.1:{port}"),
            db: connect(&database).await,
            database,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
        };
        let started = Instant::now();
        while registry
            .http
            .get(registry.url("/health"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not start",
                target.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        registry
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resident memory of the registry process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    async fn submit(&self, capability: &str, extra: Value) -> String {
        let mut body = json!({"capability": capability, "submitted_by": "bench", "submitted_payload": {"n": 1}});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        self.post("/jobs", &body).await["id"]
            .as_str()
            .expect("job id")
            .to_owned()
    }

    async fn claim(&self, capability: &str, worker: &str) -> Option<Value> {
        let body = self
            .post(
                "/jobs/claim",
                &json!({"capability": capability, "instance_id": worker}),
            )
            .await;
        body["claimed"].as_array().and_then(|c| c.first().cloned())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let database = self.database.clone();
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

async fn connect(database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&format!("{SERVER}/{database}"), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {SERVER}: {e}"));
    tokio::spawn(connection);
    client
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(scenario: &str, registry: &Registry, figures: Value) -> Value {
    let mut line = json!({"scenario": scenario, "target": registry.target});
    line.as_object_mut()
        .expect("object")
        .extend(figures.as_object().expect("object").clone());
    println!("{line}");
    line
}

/// Lease-expiry reclaim latency at default settings: jobs with a one-second lease are claimed
/// and abandoned; the time from each lease's expiry to the job being claimable again is read
/// from the database (polled every 2 ms).
async fn reclaim(target: &Target, jobs: usize) -> Value {
    let registry = Registry::start(target).await;
    if target.name == "reference" {
        // The reference acts on expired leases only at its sweep, every 5 minutes by default.
        return report(
            "reclaim",
            &registry,
            json!({"skipped": "reclaims at its 5-minute sweep"}),
        );
    }
    let mut ids = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        ids.push(
            Uuid::parse_str(
                &registry
                    .submit("reclaim", json!({"max_duration": 1, "max_retries": 3}))
                    .await,
            )
            .expect("uuid"),
        );
    }
    for worker in 0..jobs {
        registry
            .claim("reclaim", &format!("worker-{worker}"))
            .await
            .expect("claim");
    }
    let leases: HashMap<Uuid, SystemTime> = registry
        .db
        .query("SELECT job_id, lease_expires_at FROM jobs", &[])
        .await
        .expect("leases")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut reclaimed_at: HashMap<Uuid, SystemTime> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reclaimed_at.len() < jobs && Instant::now() < deadline {
        let rows = registry
            .db
            .query(
                "SELECT job_id FROM jobs WHERE owner_instance_id IS NULL",
                &[],
            )
            .await
            .expect("poll");
        let now = SystemTime::now();
        for row in rows {
            reclaimed_at.entry(row.get(0)).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let at = reclaimed_at.get(id)?;
            Some(
                at.duration_since(leases[id])
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    report(
        "reclaim",
        &registry,
        json!({
            "jobs": jobs,
            "reclaimed": latencies.len(),
            "p50_ms": percentile(&latencies, 50.0),
            "p95_ms": percentile(&latencies, 95.0),
            "max_ms": latencies.last(),
            "min_ms": latencies.first(),
        }),
    )
}

/// Registry memory per live claim: RSS before and after `claims` jobs are claimed (and held).
async fn live_claims(target: &Target, claims: usize) -> Value {
    let registry = Registry::start(target).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = registry.rss_kib();
    let registry_ref = &registry;
    stream::iter(0..claims)
        .for_each_concurrent(16, |_| async move {
            registry_ref
                .submit("held", json!({"max_duration": 3600}))
                .await;
        })
        .await;
    let submitted = registry.rss_kib();
    stream::iter(0..claims)
        .for_each_concurrent(16, |i| async move {
            registry_ref
                .claim("held", &format!("worker-{i}"))
                .await
                .expect("claim");
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = registry.rss_kib();
    report(
        "live-claims",
        &registry,
        json!({
            "claims": claims,
            "rss_idle_kib": idle,
            "rss_after_submits_kib": submitted,
            "rss_with_live_claims_kib": held,
            "bytes_per_live_claim": (held.saturating_sub(submitted) * 1024) as f64 / claims as f64,
        }),
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut scenarios = Vec::new();
    let mut targets = vec![Target::ours()];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reference" => {
                let path = PathBuf::from(args.next().expect("--reference needs a path"));
                targets.push(Target::reference(path));
            }
            scenario => scenarios.push(scenario.to_owned()),
        }
    }
    if scenarios.is_empty() {
        scenarios = vec!["reclaim".into(), "live-claims".into()];
    }
    for scenario in &scenarios {
        for target in &targets {
            match scenario.as_str() {
                "reclaim" => reclaim(target, 100).await,
                "live-claims" => live_claims(target, 10_000).await,
                other => panic!("unknown scenario {other:?}"),
            };
        }
    }
}
