//! Chaos harness: three replicas of the built registry on one fresh database, producers and a
//! consumer spread over them at random, and faults while they work: a replica killed with
//! SIGKILL and restarted, PostgreSQL restarted, a worker that dies mid-job and later sends late
//! deltas with its old epoch, and a rolling-upgrade drill (drain, stop, start, resume each
//! replica). It then proves, with counts, that every job completed exactly once and none was lost.
//!
//!   cargo test --test chaos                          # the short run .ci/run does (~1-2 min)
//!   cargo test --release --test chaos -- --jobs 5000 # a soak
//!
//! It runs on a PostgreSQL cluster of its own, started from the machine's PostgreSQL binaries
//! (the API tests' throwaway cluster): it restarts the server, which must not be one that others
//! are using. With no PostgreSQL installed it is skipped, with one line saying so.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;
use uuid::Uuid;

#[path = "../api/helpers/throwaway_cluster.rs"]
mod throwaway_cluster;

use throwaway_cluster::ThrowawayCluster;

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");
const REPLICAS: usize = 3;
const WORKERS: usize = 6;
const CAPABILITY: &str = "chaos";
/// Short leases, so that a dead worker's jobs come back quickly.
const LEASE_SECONDS: i64 = 2;
/// After the database is back, pools and listeners need a moment before every answer is good.
const RECOVERY: Duration = Duration::from_secs(10);
/// The consumer's pace; the fault rounds repeat for as long as it submits.
const SUBMITS_PER_SECOND: u32 = 30;

fn log(message: impl AsRef<str>) {
    println!(
        "[chaos {:>7.1}s] {}",
        started().elapsed().as_secs_f64(),
        message.as_ref()
    );
}

fn started() -> &'static Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now)
}

struct Replica {
    port: u16,
    child: Option<Child>,
}

/// Three registry processes on one database.
struct Cluster {
    /// The PostgreSQL server, restarted as one of the faults.
    postgres: ThrowawayCluster,
    database: String,
    logs: PathBuf,
    replicas: Vec<tokio::sync::Mutex<Replica>>,
    http: reqwest::Client,
    /// Every 5xx answer, with when it came.
    errors_5xx: Mutex<Vec<(Instant, u16, String)>>,
    /// When PostgreSQL was being restarted (start, end), each time.
    db_restarts: Mutex<Vec<(Instant, Instant)>>,
}

impl Cluster {
    async fn start(postgres: ThrowawayCluster, database: String) -> Arc<Cluster> {
        let logs = std::env::temp_dir().join(format!("mesh-chaos-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs).expect("log directory");
        let mut replicas = Vec::new();
        for _ in 0..REPLICAS {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            replicas.push(tokio::sync::Mutex::new(Replica { port, child: None }));
        }
        let cluster = Arc::new(Cluster {
            postgres,
            database,
            logs,
            replicas,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            errors_5xx: Mutex::new(Vec::new()),
            db_restarts: Mutex::new(Vec::new()),
        });
        for index in 0..REPLICAS {
            cluster.launch(index).await;
        }
        cluster
    }

    async fn port(&self, index: usize) -> u16 {
        self.replicas[index].lock().await.port
    }

    async fn launch(&self, index: usize) {
        let mut replica = self.replicas[index].lock().await;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("replica-{index}.log")))
            .unwrap();
        let child = Command::new(BINARY)
            .env("HOST", "127.0.0.1")
            .env("PORT", replica.port.to_string())
            .env(
                "DATABASE_URL",
                format!("{}/{}?sslmode=disable", self.postgres.url(), self.database),
            )
            .env("MCP_MESH_LOG_LEVEL", "INFO")
            .env("MCP_MESH_STARTUP_GRACE", "2s")
            .env("MCP_MESH_SWEEP_INTERVAL", "5s")
            .env("MCP_MESH_HTTP_WORKERS", "1")
            .env("MCP_MESH_DB_POOL_SIZE", "8")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica");
        replica.child = Some(child);
        let health = format!("http://127.0.0.1:{}/health", replica.port);
        drop(replica);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(self.http.get(&health).send().await, Ok(r) if r.status() == 200) {
            assert!(Instant::now() < deadline, "replica {index} did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&self, index: usize) {
        if let Some(mut child) = self.replicas[index].lock().await.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, and wait for the graceful exit.
    async fn stop(&self, index: usize) {
        if let Some(mut child) = self.replicas[index].lock().await.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
                .await
                .expect("a graceful stop")
                .expect("exit status");
            assert!(status.success(), "replica {index} exited with {status}");
        }
    }

    /// One request to one replica; records 5xx answers.
    async fn send(
        &self,
        index: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let port = self.port(index).await;
        let mut request = self
            .http
            .request(method, format!("http://127.0.0.1:{port}{path}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status >= 500 {
            self.errors_5xx
                .lock()
                .unwrap()
                .push((Instant::now(), status, body.to_string()));
        }
        Ok((status, body))
    }

    /// Retries on other replicas until an answer below 500 (or gives up after `patience`).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        patience: Duration,
    ) -> Option<(u16, Value)> {
        let deadline = Instant::now() + patience;
        let mut index = fastrand::usize(..REPLICAS);
        loop {
            if let Ok((status, body)) = self.send(index, method.clone(), path, body).await {
                if status < 500 {
                    return Some((status, body));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            index = (index + 1) % REPLICAS;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn restart_postgres(&self) {
        let began = Instant::now();
        if let Err(reason) = self.postgres.restart() {
            panic!("PostgreSQL restart failed: {reason}");
        }
        self.db_restarts
            .lock()
            .unwrap()
            .push((began, Instant::now()));
    }
}

/// What the clients saw of each job.
#[derive(Default)]
struct Ledger {
    /// Completing deltas answered `accepted`, per job.
    accepted: HashMap<Uuid, u32>,
    /// Completing deltas whose answer was lost (the replica died): (worker, epoch).
    unanswered: HashMap<Uuid, Vec<(String, i64)>>,
    /// Late deltas of the dead worker, by rejection reason.
    late: HashMap<String, u32>,
    /// Deltas of live workers rejected because their claim had been superseded meanwhile.
    superseded_in_flight: u32,
}

async fn heartbeat_forever(cluster: Arc<Cluster>, agent: String, alive: Arc<AtomicBool>) {
    let registration = json!({"agent_id": agent, "name": agent, "tools": [
        {"function_name": "run", "capability": CAPABILITY, "kwargs": {"task": true}}]});
    cluster
        .call(
            reqwest::Method::POST,
            "/heartbeat",
            Some(&registration),
            Duration::from_secs(30),
        )
        .await;
    while alive.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let index = fastrand::usize(..REPLICAS);
        if let Ok((status, _)) = cluster
            .send(
                index,
                reqwest::Method::HEAD,
                &format!("/heartbeat/{agent}"),
                None,
            )
            .await
        {
            if status == 410 || status == 202 {
                let _ = cluster
                    .send(
                        index,
                        reqwest::Method::POST,
                        "/heartbeat",
                        Some(&registration),
                    )
                    .await;
            }
        }
    }
}

/// One delta for `job` under `epoch`; `None` when no replica answered in time.
async fn delta(
    cluster: &Cluster,
    worker: &str,
    job: Uuid,
    epoch: i64,
    fields: Value,
) -> Option<Result<(), String>> {
    let mut delta = json!({"id": job, "claim_epoch": epoch});
    delta
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let body = json!({"instance_id": worker, "deltas": [delta]});
    let (_, answer) = cluster
        .call(
            reqwest::Method::POST,
            "/jobs/batch",
            Some(&body),
            Duration::from_secs(30),
        )
        .await?;
    Some(match answer["accepted"].as_u64() {
        Some(1) => Ok(()),
        _ => Err(answer["rejected"][0]["reason"]
            .as_str()
            .unwrap_or("?")
            .to_owned()),
    })
}

async fn work(
    cluster: Arc<Cluster>,
    ledger: Arc<Mutex<Ledger>>,
    worker: String,
    running: Arc<AtomicBool>,
) {
    while running.load(Ordering::SeqCst) {
        let index = fastrand::usize(..REPLICAS);
        let claim = json!({"capability": CAPABILITY, "instance_id": worker});
        let Ok((200, body)) = cluster
            .send(index, reqwest::Method::POST, "/jobs/claim", Some(&claim))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(job) = body["claimed"].get(0).cloned() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
        let epoch = job["claim_epoch"].as_i64().unwrap();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(10..150))).await;
        match delta(
            &cluster,
            &worker,
            id,
            epoch,
            json!({"progress": 0.5, "progress_message": "half"}),
        )
        .await
        {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                ledger.lock().unwrap().superseded_in_flight += 1;
                continue;
            }
            None => continue, // the lease will lapse; someone else finishes it
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(10..150))).await;
        let result = json!({"status": "completed", "progress": 1.0, "result": {"by": worker, "epoch": epoch}});
        let outcome = delta(&cluster, &worker, id, epoch, result).await;
        let mut ledger = ledger.lock().unwrap();
        match outcome {
            Some(Ok(())) => *ledger.accepted.entry(id).or_default() += 1,
            // Possibly applied with its answer lost; the database decides below.
            Some(Err(reason)) if reason == "already_terminal" => ledger
                .unanswered
                .entry(id)
                .or_default()
                .push((worker.clone(), epoch)),
            Some(Err(_)) => ledger.superseded_in_flight += 1,
            None => ledger
                .unanswered
                .entry(id)
                .or_default()
                .push((worker.clone(), epoch)),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    started();
    let jobs: usize = std::env::args()
        .skip_while(|a| a != "--jobs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let postgres = match ThrowawayCluster::start() {
        Ok(Some(postgres)) => postgres,
        Ok(None) => {
            println!(
                "chaos skipped: no PostgreSQL installed (it runs on a throwaway cluster started \
                 from initdb and pg_ctl; install PostgreSQL, e.g. apt-get install postgresql)"
            );
            return;
        }
        Err(reason) => panic!("cannot start a PostgreSQL cluster for the chaos run: {reason}"),
    };
    let server = postgres.url().to_owned();
    let database = format!("mesh_chaos_{}", Uuid::new_v4().simple());
    let (admin, connection) = tokio_postgres::connect(&format!("{server}/postgres"), NoTls)
        .await
        .expect("PostgreSQL");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();

    let cluster = Cluster::start(postgres, database.clone()).await;
    log(format!(
        "{REPLICAS} replicas up; {jobs} jobs, {WORKERS} workers (logs in {})",
        cluster.logs.display()
    ));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let worker = format!("chaos-worker-{w}");
        tasks.push(tokio::spawn(heartbeat_forever(
            cluster.clone(),
            worker.clone(),
            running.clone(),
        )));
        tasks.push(tokio::spawn(work(
            cluster.clone(),
            ledger.clone(),
            worker,
            running.clone(),
        )));
    }

    // The consumer submits over the first 30 s; a retried submit may create a second job with
    // the same `submitted_by`: every job in the database must complete either way.
    let submitted = Arc::new(AtomicU64::new(0));
    let submitter = {
        let (cluster, submitted) = (cluster.clone(), submitted.clone());
        tokio::spawn(async move {
            let pace = Duration::from_secs(1) / SUBMITS_PER_SECOND;
            for n in 0..jobs {
                let body = json!({"capability": CAPABILITY, "submitted_by": format!("chaos-consumer-{n}"),
                    "submitted_payload": {"n": n}, "max_duration": LEASE_SECONDS, "max_retries": 50});
                cluster
                    .call(
                        reqwest::Method::POST,
                        "/jobs",
                        Some(&body),
                        Duration::from_secs(60),
                    )
                    .await
                    .expect("a submit");
                submitted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pace).await;
            }
        })
    };

    // A worker that dies mid-job: claims, reports once, then goes silent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dead = "chaos-worker-dead".to_owned();
    let dead_alive = Arc::new(AtomicBool::new(true));
    let dead_heartbeat = tokio::spawn(heartbeat_forever(
        cluster.clone(),
        dead.clone(),
        dead_alive.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut dead_claims = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(15);
    while dead_claims.len() < 5 && Instant::now() < give_up {
        let claim = json!({"capability": CAPABILITY, "instance_id": dead});
        if let Some((200, body)) = cluster
            .call(
                reqwest::Method::POST,
                "/jobs/claim",
                Some(&claim),
                Duration::from_secs(5),
            )
            .await
        {
            if let Some(job) = body["claimed"].get(0) {
                let id = Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
                let epoch = job["claim_epoch"].as_i64().unwrap();
                delta(&cluster, &dead, id, epoch, json!({"progress": 0.1})).await;
                dead_claims.push((id, epoch));
            }
        }
    }
    dead_alive.store(false, Ordering::SeqCst);
    dead_heartbeat.abort();
    log(format!(
        "worker {dead} died holding {} jobs",
        dead_claims.len()
    ));

    // Fault rounds, for as long as the consumer submits: in each, one replica is killed and
    // restarted, PostgreSQL restarts, and one replica goes through the upgrade drill (drain,
    // graceful stop, start, resume). The dead worker's late deltas come after the first restart.
    let mut round = 0;
    loop {
        let victim = (round + 1) % REPLICAS;
        tokio::time::sleep(Duration::from_secs(3)).await;
        log(format!("round {round}: SIGKILL replica {victim}"));
        cluster.kill(victim).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.launch(victim).await;
        log(format!("round {round}: replica {victim} restarted"));

        tokio::time::sleep(Duration::from_secs(3)).await;
        log(format!("round {round}: restarting PostgreSQL"));
        cluster.restart_postgres().await;
        log(format!("round {round}: PostgreSQL is back"));
        tokio::time::sleep(Duration::from_secs(6)).await;

        if round == 0 {
            log("the dead worker wakes up and sends its late deltas");
            for (id, epoch) in &dead_claims {
                let late = delta(
                    &cluster,
                    &dead,
                    *id,
                    *epoch,
                    json!({"status": "completed", "result": {"by": dead, "epoch": epoch}}),
                )
                .await;
                let reason = match late {
                    Some(Ok(())) => "accepted".to_owned(),
                    Some(Err(reason)) => reason,
                    None => "no answer".to_owned(),
                };
                *ledger.lock().unwrap().late.entry(reason).or_default() += 1;
            }
        }

        // The rolling-upgrade drill: every replica in round 0, one per later round.
        let drilled: Vec<usize> = if round == 0 {
            (0..REPLICAS).collect()
        } else {
            vec![round % REPLICAS]
        };
        for index in drilled {
            let _ = cluster
                .send(index, reqwest::Method::POST, "/admin/drain", None)
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.stop(index).await;
            cluster.launch(index).await;
            let _ = cluster
                .send(index, reqwest::Method::DELETE, "/admin/drain", None)
                .await;
            log(format!(
                "round {round}: replica {index} drained, stopped, started, resumed"
            ));
        }
        round += 1;
        if submitter.is_finished() {
            break;
        }
    }

    submitter.await.unwrap();
    let db = cluster_db(&server, &database).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open: i64 = db
            .query_one("SELECT count(*) FROM jobs WHERE status <> 'completed'", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    running.store(false, Ordering::SeqCst);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    }

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let verdict = verify(&cluster, &db, &ledger, submitted.load(Ordering::SeqCst)).await;
    for index in 0..REPLICAS {
        cluster.kill(index).await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .ok();
    match verdict {
        Ok(summary) => {
            println!("{summary}");
            let _ = std::fs::remove_dir_all(&cluster.logs);
        }
        Err(failure) => {
            eprintln!(
                "CHAOS FAILED: {failure}\nreplica logs kept in {}",
                cluster.logs.display()
            );
            std::process::exit(1);
        }
    }
}

async fn cluster_db(server: &str, database: &str) -> tokio_postgres::Client {
    // The registry's tables are in its schema.
    let url = format!("{server}/{database}?options=-c%20search_path%3Dmesh_registry");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The counts, from the database and the clients' ledger.
async fn verify(
    cluster: &Cluster,
    db: &tokio_postgres::Client,
    ledger: &Ledger,
    submitted: u64,
) -> Result<String, String> {
    let rows = db
        .query(
            "SELECT job_id, status, claim_epoch, result::text, submitted_by FROM jobs",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut consumers = std::collections::HashSet::new();
    let (mut lost, mut exactly_once, mut duplicates) = (0u64, 0u64, 0u64);
    for row in &rows {
        let id: Uuid = row.get(0);
        let status: &str = row.get(1);
        let epoch: i64 = row.get(2);
        consumers.insert(row.get::<_, String>(4));
        if status != "completed" {
            lost += 1;
            continue;
        }
        let result: Value = serde_json::from_str(row.get::<_, Option<&str>>(3).unwrap_or("null"))
            .unwrap_or(Value::Null);
        let (by, result_epoch) = (
            result["by"].as_str().unwrap_or(""),
            result["epoch"].as_i64().unwrap_or(-1),
        );
        if result_epoch != epoch {
            return Err(format!(
                "job {id} completed by epoch {result_epoch} while its claim epoch is {epoch}"
            ));
        }
        let accepted = ledger.accepted.get(&id).copied().unwrap_or(0);
        let unanswered_winner = ledger
            .unanswered
            .get(&id)
            .is_some_and(|attempts| attempts.iter().any(|(w, e)| w == by && *e == result_epoch));
        match (accepted, unanswered_winner) {
            (1, _) | (0, true) => exactly_once += 1,
            (0, false) => {
                return Err(format!(
                    "job {id} completed by {by} at epoch {epoch}, which no client saw"
                ))
            }
            _ => duplicates += 1,
        }
    }
    let jobs = rows.len() as u64;
    if consumers.len() as u64 != submitted {
        return Err(format!(
            "{submitted} submissions but {} distinct ones in the database",
            consumers.len()
        ));
    }
    let stale_rejected = ledger.late.get("claim_superseded").copied().unwrap_or(0);
    let late_total: u32 = ledger.late.values().sum();
    if stale_rejected != late_total || late_total == 0 {
        return Err(format!(
            "late deltas of the dead worker: {:?} (all must be claim_superseded)",
            ledger.late
        ));
    }
    let windows = cluster.db_restarts.lock().unwrap().clone();
    let outside: Vec<_> = cluster
        .errors_5xx
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _, _)| {
            !windows
                .iter()
                .any(|(began, ended)| *at >= *began && *at <= *ended + RECOVERY)
        })
        .map(|(at, status, body)| {
            format!(
                "{status} at {:.1}s: {body}",
                at.duration_since(*started()).as_secs_f64()
            )
        })
        .collect();
    if !outside.is_empty() {
        return Err(format!(
            "5xx outside the database restart windows: {outside:?}"
        ));
    }
    if lost > 0 || duplicates > 0 || exactly_once != jobs {
        return Err(format!("jobs {jobs}, completed exactly once {exactly_once}, lost {lost}, duplicate completions {duplicates}"));
    }
    let errors_in_window = cluster.errors_5xx.lock().unwrap().len();
    log(format!(
        "5xx answers inside the database restart window: {errors_in_window}; deltas superseded in flight: {}",
        ledger.superseded_in_flight
    ));
    Ok(format!(
        "jobs {jobs}, completed exactly once {exactly_once}, lost {lost}, duplicate completions {duplicates}, stale rejected {stale_rejected}"
    ))
}
