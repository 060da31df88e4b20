//! Metrics: the registry's counters, gauges and histograms, and their Prometheus text
//! (`GET /metrics`, docs/configuration.md#metrics).
//!
//! One `Metrics` per application (tests run many in one process; nothing is global). Every
//! instrument the hot paths touch is resolved once, here, so a claim or a delta costs an atomic
//! add, never a label lookup. What the database knows (jobs by state, agents by health, live
//! claims) is counted when scraped, at most once per `MCP_MESH_METRICS_REFRESH`, by one scrape
//! at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_registry_actors::{
    DrainState, JobDirectory, LeaseChange, LeaseCheck, LeaseHeld, StoreFuture, SweepPhase,
    SweepReport,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use uuid::Uuid;

use crate::config::MetricsSettings;
use crate::store::{PoolStatus, Store, StoreError, Tally};
use crate::wire::{JobStatus, RejectReason};

/// The `state` label of `mesh_registry_jobs`: every value is always present (a state nobody is
/// in reads 0 rather than vanishing).
const JOB_STATES: [&str; 6] = [
    "queued",
    "working",
    "input_required",
    "completed",
    "failed",
    "cancelled",
];
const AGENT_HEALTH: [&str; 3] = ["healthy", "unhealthy", "unknown"];
/// The delta rejections, in `RejectReason` order.
const REJECT_REASONS: [RejectReason; 6] = [
    RejectReason::NotFound,
    RejectReason::NotOwner,
    RejectReason::AlreadyTerminal,
    RejectReason::InvalidStatus,
    RejectReason::ClaimSuperseded,
    RejectReason::Unavailable,
];
/// The capability label of the jobs beyond the `MCP_MESH_METRICS_CAPABILITIES` largest.
const OTHER_CAPABILITIES: &str = "other";
/// Request latency buckets, in seconds: from a cached read to a long-poll's full wait.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];
const SWEEP_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];
/// Claim-wait and run-time buckets, in seconds: jobs wait and run from milliseconds to a day.
const JOB_BUCKETS: [f64; 20] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// The `outcome` label of the run-time histogram: the terminal states.
const ENDINGS: [JobStatus; 3] = [
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// How long one OTLP export may take: from a local collector's milliseconds to the timeout.
const EXPORT_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Every instrument of one registry process.
pub struct Metrics {
    registry: Registry,
    settings: MetricsSettings,
    /// The trace pipeline's (zero while it is off).
    pub trace: TraceMetrics,
    pub job_submits: IntCounter,
    job_claims: IntCounter,
    claim_wait: Histogram,
    /// Indexed as `ENDINGS`.
    run_time: [Histogram; ENDINGS.len()],
    /// Claim calls that found no work (nothing claimable, draining, or gated).
    pub empty_claims: IntCounter,
    pub job_deltas: IntCounter,
    /// Indexed as `REJECT_REASONS`.
    job_rejections: [IntCounter; REJECT_REASONS.len()],
    pub job_releases: IntCounter,
    pub job_cancels: IntCounter,
    pub job_force_reclaims: IntCounter,
    lease_expiries_requeued: IntCounter,
    lease_expiries_failed: IntCounter,
    lease_expiries_swept: IntCounter,
    orphan_reroutes: IntCounter,
    sweep_seconds: HistogramVec,
    sweep_rows: IntCounterVec,
    sweep_failures: IntCounterVec,
    long_polls_parked: IntGauge,
    pub long_polls_refused: IntCounter,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    jobs: IntGaugeVec,
    jobs_by_capability: IntGaugeVec,
    agents: IntGaugeVec,
    live_claims: IntGauge,
    draining: IntGaugeVec,
    pool_max: IntGauge,
    pool_connections: IntGaugeVec,
    pool_waiting: IntGauge,
    tally_failures: IntCounter,
    /// When the database was last counted; held by the scrape that counts.
    /// The last database count and when it was taken.
    tallied: tokio::sync::Mutex<Option<(Instant, Arc<Tally>)>>,
}

/// Builds and registers one instrument; the names are static, so a failure is a bug.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    /// The instruments of one application, the store's own among them.
    pub fn new(settings: MetricsSettings, store: &Store) -> Arc<Metrics> {
        let r = Registry::new();
        for instrument in store.instruments() {
            r.register(instrument)
                .expect("the store's metric names are unique and valid");
        }
        let counter = |name: &str, help: &str| {
            register(&r, IntCounter::new(name, help).expect("valid metric"))
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge =
            |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("valid metric"));
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    labels,
                )
                .expect("valid metric"),
            )
        };
        let rejections = counter_vec(
            "mesh_registry_job_rejections_total",
            "Owner deltas refused, by reason (the reason strings of POST /jobs/batch).",
            &["reason"],
        );
        let run_time = histogram_vec(
            "mesh_registry_job_run_duration_seconds",
            "From a claim to its job's end (a terminal delta from the owner, or a cancel), by \
             outcome. Pinned jobs, never claimed, are not in it.",
            &["outcome"],
            &JOB_BUCKETS,
        );
        let lease_expiries = counter_vec(
            "mesh_registry_lease_expiries_total",
            "Claims whose lease lapsed: requeued or failed (budget spent) by this replica's \
             lease timers, or reclaimed by its safety sweep.",
            &["outcome"],
        );
        let sweep_seconds = histogram_vec(
            "mesh_registry_sweep_phase_duration_seconds",
            "How long each phase of the safety sweep took on this replica.",
            &["phase"],
            &SWEEP_BUCKETS,
        );
        let sweep_rows = counter_vec(
            "mesh_registry_sweep_rows_total",
            "Rows each phase of the safety sweep changed or deleted.",
            &["phase"],
        );
        let sweep_failures = counter_vec(
            "mesh_registry_sweep_failures_total",
            "Sweep phases that failed (retried at the next sweep).",
            &["phase"],
        );
        for phase in PHASES {
            sweep_seconds.with_label_values(&[phase]);
            sweep_rows.with_label_values(&[phase]);
            sweep_failures.with_label_values(&[phase]);
        }
        let jobs = gauge_vec(
            "mesh_registry_jobs",
            "Jobs in the database by state (queued: working and unowned). Counted in the \
             database, so every replica reports the whole fleet's jobs.",
            &["status"],
        );
        let agents = gauge_vec(
            "mesh_registry_agents",
            "Registered agents by health, fleet-wide.",
            &["health"],
        );
        let draining = gauge_vec(
            "mesh_registry_draining",
            "1 while claims are paused by a drain of this replica or of the fleet.",
            &["scope"],
        );
        for scope in ["replica", "fleet"] {
            draining.with_label_values(&[scope]);
        }
        let trace = TraceMetrics::register(&r);
        Arc::new(Metrics {
            trace,
            job_submits: counter(
                "mesh_registry_job_submits_total",
                "Jobs submitted through this replica.",
            ),
            job_claims: counter(
                "mesh_registry_job_claims_total",
                "Jobs handed to a producer by this replica.",
            ),
            claim_wait: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mesh_registry_job_claim_wait_seconds",
                        "How long each claimed job waited claimable: since its submission, or \
                         since it last went back to the queue.",
                    )
                    .buckets(JOB_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            run_time: ENDINGS.map(|status| run_time.with_label_values(&[status.as_str()])),
            empty_claims: counter(
                "mesh_registry_job_empty_claims_total",
                "Claim calls that got no job (nothing claimable, draining, or gated).",
            ),
            job_deltas: counter("mesh_registry_job_deltas_total", "Owner deltas applied."),
            job_rejections: REJECT_REASONS
                .map(|reason| rejections.with_label_values(&[reason_label(reason)])),
            job_releases: counter(
                "mesh_registry_job_releases_total",
                "Jobs handed back by their owner.",
            ),
            job_cancels: counter("mesh_registry_job_cancels_total", "Jobs cancelled."),
            job_force_reclaims: counter(
                "mesh_registry_job_force_reclaims_total",
                "Jobs taken back from their owner by an operator.",
            ),
            lease_expiries_requeued: lease_expiries.with_label_values(&["requeued"]),
            lease_expiries_failed: lease_expiries.with_label_values(&["failed"]),
            lease_expiries_swept: lease_expiries.with_label_values(&["swept"]),
            orphan_reroutes: counter(
                "mesh_registry_orphan_reroutes_total",
                "Pinned jobs rerouted by the sweep because their owner never took them up.",
            ),
            sweep_seconds,
            sweep_rows,
            sweep_failures,
            long_polls_parked: gauge(
                "mesh_registry_long_polls_parked",
                "Event long-polls waiting on this replica.",
            ),
            long_polls_refused: counter(
                "mesh_registry_long_polls_refused_total",
                "Event long-polls refused with 503 because MCP_MESH_MAX_LONG_POLLS were parked.",
            ),
            http_requests: counter_vec(
                "mesh_registry_http_requests_total",
                "HTTP requests answered, by route pattern, method and status.",
                &["route", "method", "status"],
            ),
            http_seconds: histogram_vec(
                "mesh_registry_http_request_duration_seconds",
                "Time to answer an HTTP request (a long-poll's wait included), by route \
                 pattern, method and status.",
                &["route", "method", "status"],
                &LATENCY_BUCKETS,
            ),
            jobs,
            jobs_by_capability: gauge_vec(
                "mesh_registry_jobs_by_capability",
                "Jobs by capability and state, for the MCP_MESH_METRICS_CAPABILITIES \
                 capabilities with the most jobs (the rest summed as \"other\").",
                &["capability", "status"],
            ),
            agents,
            live_claims: gauge(
                "mesh_registry_live_claims",
                "Owned live jobs fleet-wide: what a drain waits on.",
            ),
            draining,
            pool_max: gauge(
                "mesh_registry_db_pool_max_connections",
                "Most PostgreSQL connections this replica's pool opens.",
            ),
            pool_connections: gauge_vec(
                "mesh_registry_db_pool_connections",
                "Open PostgreSQL connections of this replica's pool, in use or idle.",
                &["state"],
            ),
            pool_waiting: gauge(
                "mesh_registry_db_pool_waiting",
                "Calls waiting for a PostgreSQL connection.",
            ),
            tally_failures: counter(
                "mesh_registry_metrics_tally_failures_total",
                "Scrapes whose database counts failed (the previous counts were served).",
            ),
            registry: r,
            settings,
            tallied: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether `GET /metrics` is served and requests are measured.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn rejection(&self, reason: RejectReason) -> &IntCounter {
        let index = REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        &self.job_rejections[index]
    }

    /// One job claimed, after waiting `waited` (unknown for a job requeued before the store
    /// recorded requeue times: counted, not observed).
    pub fn claimed(&self, waited: Option<Duration>) {
        self.job_claims.inc();
        if let Some(waited) = waited {
            self.claim_wait.observe(waited.as_secs_f64());
        }
    }

    /// A claim ended with its job in `status` after running `ran` (unknown: not observed).
    pub fn claim_ended(&self, status: JobStatus, ran: Option<Duration>) {
        let ending = ENDINGS.iter().position(|s| *s == status);
        if let (Some(ending), Some(ran)) = (ending, ran) {
            self.run_time[ending].observe(ran.as_secs_f64());
        }
    }

    /// Counts one parked long-poll until the guard drops.
    pub fn parked(&self) -> ParkedGuard<'_> {
        self.long_polls_parked.inc();
        ParkedGuard(&self.long_polls_parked)
    }

    /// One answered request; `route` is the matched pattern (bounded), never the raw path.
    pub fn observe_request(&self, route: &str, method: &str, status: &str, elapsed: Duration) {
        let labels = [route, method, status];
        self.http_requests.with_label_values(&labels).inc();
        (self.http_seconds.with_label_values(&labels)).observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text: the database counts refreshed when older than the refresh
    /// interval, the gauges of this replica's state set from `now`.
    pub async fn render(
        &self,
        store: &Store,
        drain: DrainState,
        pool: Option<PoolStatus>,
    ) -> String {
        let _ = self.tally(store).await;
        self.draining
            .with_label_values(&["replica"])
            .set(drain.replica.into());
        self.draining
            .with_label_values(&["fleet"])
            .set(drain.fleet.into());
        if let Some(pool) = pool {
            self.pool_max.set(pool.max_size as i64);
            let in_use = pool.size.saturating_sub(pool.available);
            self.pool_connections
                .with_label_values(&["in_use"])
                .set(in_use as i64);
            (self.pool_connections.with_label_values(&["idle"])).set(pool.available as i64);
            self.pool_waiting.set(pool.waiting as i64);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }

    /// The database counts, taken anew unless a recent count stands; one caller counts at a
    /// time (the others wait and reuse its numbers). A failure keeps the previous numbers
    /// (the error when there are none yet). Scrapes and the dashboard share it.
    pub async fn tally(&self, store: &Store) -> Result<Arc<Tally>, StoreError> {
        let mut tallied = self.tallied.lock().await;
        if let Some((at, tally)) = tallied.as_ref() {
            if at.elapsed() < self.settings.refresh {
                return Ok(tally.clone());
            }
        }
        match store.tally().await {
            Ok(tally) => {
                let tally = Arc::new(tally);
                self.set_tally(&tally);
                *tallied = Some((Instant::now(), tally.clone()));
                Ok(tally)
            }
            Err(error) => {
                self.tally_failures.inc();
                tracing::warn!(%error, "metrics: cannot count jobs and agents");
                tallied
                    .as_ref()
                    .map(|(_, tally)| tally.clone())
                    .ok_or(error)
            }
        }
    }

    fn set_tally(&self, tally: &Tally) {
        for state in JOB_STATES {
            let jobs = tally.jobs.iter().filter(|(s, _, _)| s == state);
            self.jobs
                .with_label_values(&[state])
                .set(jobs.map(|(_, _, n)| n).sum());
        }
        for health in AGENT_HEALTH {
            let agents = tally.agents.iter().filter(|(s, _)| s == health);
            self.agents
                .with_label_values(&[health])
                .set(agents.map(|(_, n)| n).sum());
        }
        self.live_claims.set(tally.live_claims);
        self.jobs_by_capability.reset();
        if self.settings.capabilities == 0 {
            return;
        }
        let kept = largest_capabilities(&tally.jobs, self.settings.capabilities);
        for (state, capability, jobs) in &tally.jobs {
            let capability = match kept.contains(&capability.as_str()) {
                true => capability.as_str(),
                false => OTHER_CAPABILITIES,
            };
            self.jobs_by_capability
                .with_label_values(&[capability, state])
                .add(*jobs);
        }
    }
}

/// The `limit` capabilities with the most jobs (ties: by name, so the choice is stable).
fn largest_capabilities(jobs: &[(String, String, i64)], limit: usize) -> Vec<&str> {
    let mut totals = std::collections::HashMap::<&str, i64>::new();
    for (_, capability, n) in jobs {
        *totals.entry(capability).or_default() += n;
    }
    let mut totals: Vec<_> = totals.into_iter().collect();
    totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    totals.into_iter().take(limit).map(|(c, _)| c).collect()
}

fn reason_label(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::NotFound => "not_found",
        RejectReason::NotOwner => "not_owner",
        RejectReason::AlreadyTerminal => "already_terminal",
        RejectReason::InvalidStatus => "invalid_status",
        RejectReason::ClaimSuperseded => "claim_superseded",
        RejectReason::Unavailable => "unavailable",
    }
}

/// The `phase` label of the sweep's metrics, in the order the phases run.
const PHASES: [&str; 7] = [
    "purge_agents",
    "reroute_orphans",
    "reclaim_expired_leases",
    "expire_deadlines",
    "expire_stale",
    "purge_events",
    "purge_jobs",
];

fn phase_label(phase: &SweepPhase) -> &'static str {
    match phase {
        SweepPhase::PurgeAgents { .. } => PHASES[0],
        SweepPhase::RerouteOrphans => PHASES[1],
        SweepPhase::ReclaimExpiredLeases => PHASES[2],
        SweepPhase::ExpireDeadlines => PHASES[3],
        SweepPhase::ExpireStale { .. } => PHASES[4],
        SweepPhase::PurgeEvents { .. } => PHASES[5],
        SweepPhase::PurgeJobs { .. } => PHASES[6],
    }
}

/// What became of a stream entry the trace pipeline read but did not export (the `reason`
/// label of `mesh_registry_trace_entries_dropped_total`).
#[derive(Debug, Clone, Copy)]
pub enum TraceDrop {
    /// Not a span the collector could take (ids that are not hex of the OTLP sizes).
    Malformed,
    /// Part of a batch the collector refused for good.
    Refused,
    /// Given to consumers that never acknowledged it, `MAX_DELIVERIES` times.
    Undeliverable,
}

/// How an OTLP export ended (the `outcome` label of the export histogram).
#[derive(Debug, Clone, Copy)]
pub enum ExportOutcome {
    Exported,
    /// The collector is down, slow or overloaded: the batch is tried again.
    Unavailable,
    /// The collector refused the batch for good: its spans are dropped.
    Refused,
}

/// The trace pipeline's instruments. Its thread holds a copy (they are shared counters), so
/// what it counts shows in this replica's `GET /metrics`.
#[derive(Clone)]
pub struct TraceMetrics {
    /// Stream entries read from `mesh:trace`, taken over from departed consumers included.
    pub entries_read: IntCounter,
    pub spans_exported: IntCounter,
    /// Indexed as `TraceDrop`.
    dropped: [IntCounter; 3],
    export_seconds: HistogramVec,
    pub redis_reconnects: IntCounter,
    pub redis_connected: IntGauge,
    pub entries_trimmed: IntCounter,
    pub stream_length: IntGauge,
    pub group_pending: IntGauge,
    pub group_lag: IntGauge,
}

impl TraceMetrics {
    /// The pipeline's instruments, registered in `r`.
    pub(crate) fn register(r: &Registry) -> TraceMetrics {
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        let dropped = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "mesh_registry_trace_entries_dropped_total",
                    "Span stream entries acknowledged without being exported, by reason: \
                     malformed, refused (by the collector, for good), undeliverable.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        let export_seconds = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "mesh_registry_trace_export_duration_seconds",
                    "How long each OTLP export of a batch of spans took, by outcome: exported, \
                     unavailable (tried again), refused.",
                )
                .buckets(EXPORT_BUCKETS.to_vec()),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        for outcome in ["exported", "unavailable", "refused"] {
            export_seconds.with_label_values(&[outcome]);
        }
        TraceMetrics {
            entries_read: counter(
                "mesh_registry_trace_entries_read_total",
                "Span stream entries the trace pipeline read (each a span, half of one, or \
                 malformed).",
            ),
            spans_exported: counter(
                "mesh_registry_trace_spans_exported_total",
                "Spans the OTLP collector took.",
            ),
            dropped: ["malformed", "refused", "undeliverable"]
                .map(|reason| dropped.with_label_values(&[reason])),
            export_seconds,
            redis_reconnects: counter(
                "mesh_registry_trace_redis_reconnects_total",
                "Times the trace pipeline connected to Redis again after failing to connect or \
                 losing its connection.",
            ),
            redis_connected: gauge(
                "mesh_registry_trace_redis_connected",
                "1 while the trace pipeline is connected to Redis and consuming.",
            ),
            entries_trimmed: counter(
                "mesh_registry_trace_entries_trimmed_total",
                "Span stream entries removed by the retention trim (MCP_MESH_TRACE_RETENTION).",
            ),
            stream_length: gauge(
                "mesh_registry_trace_stream_length",
                "Entries in the span stream, as last read (every 2 s).",
            ),
            group_pending: gauge(
                "mesh_registry_trace_group_pending",
                "Entries delivered to the consumer group but not yet acknowledged.",
            ),
            group_lag: gauge(
                "mesh_registry_trace_group_lag",
                "Entries in the stream not yet delivered to the consumer group (Redis 7 and \
                 later).",
            ),
        }
    }

    pub fn dropped(&self, reason: TraceDrop, entries: u64) {
        self.dropped[reason as usize].inc_by(entries);
    }

    /// One export attempt of `spans` spans, and what became of it.
    pub fn exported(&self, outcome: ExportOutcome, spans: u64, took: Duration) {
        let label = match outcome {
            ExportOutcome::Exported => "exported",
            ExportOutcome::Unavailable => "unavailable",
            ExportOutcome::Refused => "refused",
        };
        (self.export_seconds.with_label_values(&[label])).observe(took.as_secs_f64());
        match outcome {
            ExportOutcome::Exported => self.spans_exported.inc_by(spans),
            ExportOutcome::Refused => self.dropped(TraceDrop::Refused, spans),
            ExportOutcome::Unavailable => {}
        }
    }
}

/// Decrements the parked long-polls when the long-poll ends, however it ends.
pub struct ParkedGuard<'a>(&'a IntGauge);

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The supervisor's storage, measured: lease expiries and the sweep's phases are counted as
/// the store reports them, so the actors stay free of metrics.
pub struct MeteredDirectory {
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

impl JobDirectory for MeteredDirectory {
    fn live_claims(&self) -> StoreFuture<Vec<LeaseHeld>> {
        JobDirectory::live_claims(&self.store)
    }

    fn reclaim_if_expired(&self, job_id: Uuid, claim_epoch: i64) -> StoreFuture<LeaseCheck> {
        let check = JobDirectory::reclaim_if_expired(&self.store, job_id, claim_epoch);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let outcome = check.await;
            if let Ok(LeaseCheck::Reclaimed { exhausted }) = &outcome {
                match exhausted {
                    true => metrics.lease_expiries_failed.inc(),
                    false => metrics.lease_expiries_requeued.inc(),
                }
            }
            outcome
        })
    }

    fn sweep(&self, phase: SweepPhase) -> StoreFuture<SweepReport> {
        let sweep = JobDirectory::sweep(&self.store, phase);
        let metrics = self.metrics.clone();
        let label = phase_label(&phase);
        Box::pin(async move {
            let started = Instant::now();
            let outcome = sweep.await;
            (metrics.sweep_seconds.with_label_values(&[label]))
                .observe(started.elapsed().as_secs_f64());
            match &outcome {
                Ok(report) => {
                    (metrics.sweep_rows.with_label_values(&[label])).inc_by(report.count);
                    match phase {
                        SweepPhase::RerouteOrphans => metrics.orphan_reroutes.inc_by(report.count),
                        SweepPhase::ReclaimExpiredLeases => {
                            metrics.lease_expiries_swept.inc_by(report.count)
                        }
                        _ => {}
                    }
                }
                Err(_) => metrics.sweep_failures.with_label_values(&[label]).inc(),
            }
            outcome
        })
    }

    fn fleet_draining(&self) -> StoreFuture<bool> {
        JobDirectory::fleet_draining(&self.store)
    }

    fn announce(&self, changes: Vec<LeaseChange>) -> StoreFuture<()> {
        JobDirectory::announce(&self.store, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capabilities_with_most_jobs_keep_their_label() {
        let row = |s: &str, c: &str, n| (s.to_owned(), c.to_owned(), n);
        let jobs = [
            row("queued", "a", 1),
            row("completed", "b", 5),
            row("queued", "c", 3),
            row("failed", "a", 1),
            row("queued", "d", 3),
        ];
        assert_eq!(largest_capabilities(&jobs, 2), ["b", "c"]);
        assert_eq!(largest_capabilities(&jobs, 10).len(), 4);
    }
}
