//! What a measured window costs the machine, read from counters rather than clocks (so that the
//! figures hold on a loaded machine too): PostgreSQL's own counters for the registry's database
//! (WAL bytes, commits, rows written, HOT updates, index scans of `jobs`), and CPU time by
//! process group (the registry, the PostgreSQL cluster, the load generator) with the machine's
//! idle share, from `/proc`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Kernel clock ticks per second (`USER_HZ`: 100 on every Linux the benchmark runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// PostgreSQL's cumulative counters for one database.
pub struct PgCounters {
    /// Cluster-wide WAL position in bytes (other databases' writes count too: run on a quiet
    /// cluster, or on one of the benchmark's own with `--pg-port`).
    wal_bytes: i64,
    /// Full-page images written to the WAL (cluster-wide too): the first change of a page after
    /// a checkpoint logs the whole page, so they depend on when checkpoints fall.
    wal_full_pages: i64,
    commits: i64,
    rows_written: i64,
    /// Updates of the `jobs` table, and how many of them were HOT (no index entry written).
    job_updates: i64,
    job_hot_updates: i64,
    /// Scans per index of `jobs`.
    index_scans: BTreeMap<String, i64>,
}

impl PgCounters {
    /// `server` is a connection to any other database of the cluster, `database` one to the
    /// measured database (statistics of tables are per database). Read after the registry's
    /// sessions ended: a session reports its statistics when it ends, or once a second at most.
    pub async fn read(
        server: &tokio_postgres::Client,
        database: &tokio_postgres::Client,
        name: &str,
    ) -> PgCounters {
        let totals = server
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, xact_commit, \
                        tup_inserted + tup_updated + tup_deleted, \
                        (SELECT wal_fpi FROM pg_stat_wal) \
                 FROM pg_stat_database WHERE datname = $1",
                &[&name],
            )
            .await
            .expect("pg_stat_database");
        let jobs = database
            .query_one(
                "SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint \
                 FROM pg_stat_user_tables WHERE relname = 'jobs'",
                &[],
            )
            .await
            .expect("pg_stat_user_tables");
        let index_scans = database
            .query(
                "SELECT indexrelname::text, idx_scan FROM pg_stat_user_indexes \
                 WHERE relname = 'jobs'",
                &[],
            )
            .await
            .expect("pg_stat_user_indexes")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        PgCounters {
            wal_bytes: totals.get(0),
            wal_full_pages: totals.get(3),
            commits: totals.get(1),
            rows_written: totals.get(2),
            job_updates: jobs.get(0),
            job_hot_updates: jobs.get(1),
            index_scans,
        }
    }

    /// What happened between `before` and `self`, per job where it is a cost.
    pub fn per_job(&self, before: &PgCounters, jobs: u64) -> Value {
        let jobs = jobs.max(1) as f64;
        let updates = self.job_updates - before.job_updates;
        let hot = self.job_hot_updates - before.job_hot_updates;
        let scans: BTreeMap<&str, i64> = self
            .index_scans
            .iter()
            .map(|(index, scans)| {
                let was = before.index_scans.get(index).copied().unwrap_or(0);
                (index.as_str(), scans - was)
            })
            .collect();
        json!({
            "wal_bytes_per_job": round((self.wal_bytes - before.wal_bytes) as f64 / jobs),
            "wal_full_pages_per_job": round2((self.wal_full_pages - before.wal_full_pages) as f64 / jobs),
            "commits_per_job": round2((self.commits - before.commits) as f64 / jobs),
            "rows_written_per_job": round2((self.rows_written - before.rows_written) as f64 / jobs),
            "hot_update_percent": if updates > 0 { round(100.0 * hot as f64 / updates as f64) } else { 0.0 },
            "index_scans": scans,
        })
    }
}

/// The WAL written between two readings, per job, by what its records do (read with
/// `pg_walinspect`, created in the `public` schema of the measured database, so that the
/// registry's own schema holds only its objects; the benchmark drops that database afterwards):
/// `{"index": {"bytes": …, "records": …}, "row_updates": …}`. `Null` where the extension is not
/// available (it needs a superuser and PostgreSQL's contrib modules).
pub async fn wal_by_kind(
    database: &tokio_postgres::Client,
    before: &PgCounters,
    after: &PgCounters,
    jobs: u64,
) -> Value {
    const BY_KIND: &str = "
        SELECT CASE WHEN record LIKE 'Btree/%' THEN 'index'
                    WHEN record LIKE 'Heap/INSERT%' THEN 'row_inserts'
                    WHEN record LIKE 'Heap/%UPDATE%' THEN 'row_updates'
                    WHEN record = 'Heap/LOCK' THEN 'row_locks'
                    WHEN record LIKE 'Transaction/%' THEN 'commits'
                    ELSE 'other' END AS kind,
               sum(count)::bigint, sum(combined_size)::bigint
        FROM (SELECT \"resource_manager/record_type\" AS record, count, combined_size
              FROM pg_get_wal_stats('0/0'::pg_lsn + $1::bigint::numeric,
                                    least('0/0'::pg_lsn + $2::bigint::numeric,
                                          pg_current_wal_flush_lsn()), true)
             ) AS records
        GROUP BY kind";
    // Without the extension there is nothing to read; with it, a failing query is a bug.
    if database
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect SCHEMA public")
        .await
        .is_err()
    {
        return Value::Null;
    }
    let rows = database
        .query(BY_KIND, &[&before.wal_bytes, &after.wal_bytes])
        .await
        .expect("pg_get_wal_stats");
    let jobs = jobs.max(1) as f64;
    rows.iter()
        .map(|row| {
            let (records, bytes): (i64, i64) = (row.get(1), row.get(2));
            let kind: String = row.get(0);
            (
                kind,
                json!({"bytes": round(bytes as f64 / jobs), "records": round2(records as f64 / jobs)}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// What our registry says of its own group commit in `GET /metrics` (PostgreSQL only; the
/// reference and the embedded store have no such series): the write waves and the writes they
/// carried, and every HTTP request answered with the time it took.
pub struct WaveCounters {
    waves: f64,
    writes: f64,
    requests: f64,
    request_seconds: f64,
}

impl WaveCounters {
    /// `None` where the exposition has no write waves.
    pub fn parse(metrics: &str) -> Option<WaveCounters> {
        // The sum of a series over its labels; `None` where no line of it is exposed.
        let series = |name: &str| -> Option<f64> {
            metrics
                .lines()
                .filter(|line| line.starts_with(name))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .reduce(|sum, value| sum + value)
        };
        Some(WaveCounters {
            waves: series("mesh_registry_db_batch_size_count{kind=\"write\"}")?,
            writes: series("mesh_registry_db_batch_size_sum{kind=\"write\"}")?,
            requests: series("mesh_registry_http_request_duration_seconds_count{")?,
            request_seconds: series("mesh_registry_http_request_duration_seconds_sum{")?,
        })
    }

    /// Between `before` and `self`, over a window of `seconds` that completed `jobs`: waves per
    /// job, writes per wave, how often a wave started (with one in flight, back to back, that
    /// is how long each took) and how long a request took to be answered, on average. `Null`
    /// where no wave ran in the window.
    pub fn per_job(&self, before: &WaveCounters, jobs: u64, seconds: f64) -> Value {
        let waves = self.waves - before.waves;
        let requests = self.requests - before.requests;
        if waves < 1.0 || requests < 1.0 {
            return Value::Null;
        }
        json!({
            "write_waves_per_job": round3(waves / jobs.max(1) as f64),
            "writes_per_wave": round2((self.writes - before.writes) / waves),
            "wave_interval_ms": round3(1e3 * seconds / waves),
            "answer_ms": round3(1e3 * (self.request_seconds - before.request_seconds) / requests),
        })
    }
}

/// CPU time so far, by process group, and the machine's tick counters.
pub struct CpuCounters {
    registry: f64,
    postgres: Option<f64>,
    load_generator: f64,
    machine_idle_ticks: u64,
    machine_ticks: u64,
}

impl CpuCounters {
    /// `registry`: the registry's pid; `postmaster`: the PostgreSQL cluster's, when it runs on
    /// this machine (its CPU is then the postmaster's and all its children's).
    pub fn read(registry: u32, postmaster: Option<u32>) -> CpuCounters {
        let (machine_idle_ticks, machine_ticks) = machine_ticks();
        CpuCounters {
            registry: process_cpu(registry).unwrap_or(0.0),
            postgres: postmaster.map(|pid| {
                process_cpu(pid).unwrap_or(0.0)
                    + children(pid)
                        .into_iter()
                        .filter_map(process_cpu)
                        .sum::<f64>()
            }),
            load_generator: process_cpu(std::process::id()).unwrap_or(0.0),
            machine_idle_ticks,
            machine_ticks,
        }
    }

    /// CPU-seconds per 1 000 operations (completed jobs, submits, polls) by group, and the idle
    /// share of the machine, since `before`.
    pub fn per_thousand(&self, before: &CpuCounters, operations: u64) -> Value {
        let per = |now: f64, was: f64| round3((now - was) * 1000.0 / operations.max(1) as f64);
        let ticks = self
            .machine_ticks
            .saturating_sub(before.machine_ticks)
            .max(1);
        let idle = self
            .machine_idle_ticks
            .saturating_sub(before.machine_idle_ticks);
        json!({
            "cpu_s_per_1000": {
                "registry": per(self.registry, before.registry),
                "postgres": match (self.postgres, before.postgres) {
                    (Some(now), Some(was)) => json!(per(now, was)),
                    _ => Value::Null,
                },
                "load_generator": per(self.load_generator, before.load_generator),
            },
            "machine_idle_percent": round(100.0 * idle as f64 / ticks as f64),
        })
    }
}

/// The postmaster of the cluster `client` is connected to: the parent of its own backend.
pub async fn postmaster(client: &tokio_postgres::Client) -> Option<u32> {
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?
        .get(0);
    let parent = stat_fields(backend as u32)?.get(1)?.parse().ok()?;
    Some(parent)
}

/// The fields of `/proc/<pid>/stat` after the command name (state is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of a process.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / TICKS_PER_SECOND)
}

fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == parent)
        })
        .collect()
}

/// `(idle + iowait, all)` ticks of the whole machine since boot.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (idle, ticks.iter().sum())
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
