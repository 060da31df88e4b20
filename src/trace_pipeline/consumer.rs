//! The consumer of `mesh:trace`: one consumer of a consumer group shared by every replica (Redis
//! hands each entry to one of them), reading batches, exporting them, acknowledging what went
//! out; with the group's housekeeping (entries stuck with a consumer that died, consumers that
//! left) and the stream's trimming beside it.
//!
//! It runs on a thread of its own and keeps to itself: Redis or the collector being down costs
//! the registry nothing but a log line per attempt (with backoff) and this thread's wait. At
//! most one batch (`TRACE_BATCH_SIZE` entries) is held in memory; while the collector is down
//! the entries wait in Redis, not here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncConnectionConfig, ConnectionAddr, RedisResult, Value};
use tokio::sync::watch;

use super::event::{resource_spans, Disposition, TraceEvent};
use super::export::{ExportError, Exporter};
use super::{ConnectionState, Shared, StreamSnapshot};
use crate::config::{ClientTls, TracePipelineSettings};
use crate::metrics::{ExportOutcome, TraceDrop, TraceMetrics};

/// How long an XREADGROUP waits for entries (the reference's 5 s).
const BLOCK: Duration = Duration::from_secs(5);
/// Reconnect backoff: 5 s doubling up to 60 s, as the reference.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Export retries of one batch: 1 s doubling up to 60 s.
const EXPORT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// How often the stream and group figures of `/trace/status` are refreshed (and the connection
/// checked).
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// The group's housekeeping, as the reference's: entries delivered but unacknowledged for
/// 5 minutes (their consumer died mid-batch) are taken over, dropped after 5 deliveries; a
/// consumer idle for an hour with nothing pending is removed (every restart leaves one).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
const STUCK_AFTER: Duration = Duration::from_secs(300);
const MAX_DELIVERIES: usize = 5;
const RECLAIM_BATCH: usize = 100;
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// How often the stream is trimmed to the retention (also at every connect).
const TRIM_EVERY: Duration = Duration::from_secs(300);
/// How long opening a connection to Redis may take, TLS handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Consumer {
    pub settings: TracePipelineSettings,
    pub consumer_name: String,
    pub outlet: Outlet,
    pub shared: Arc<Mutex<Shared>>,
    pub stop: watch::Receiver<bool>,
}

/// Where read spans go, and what is counted of them.
#[derive(Clone)]
pub struct Outlet {
    pub exporter: Exporter,
    pub metrics: TraceMetrics,
}

impl Consumer {
    /// Connects, consumes and reconnects until told to stop.
    pub async fn run(mut self) {
        let link = match RedisLink::new(&self.settings.redis_url, &self.settings.redis_tls) {
            Ok(link) => link,
            Err(error) => {
                self.failed(error.clone());
                tracing::error!("trace pipeline: {error}; not consuming");
                return;
            }
        };
        loop {
            self.set_state(ConnectionState::Connecting);
            let outcome = match self.connect(&link).await {
                Ok((reader, control)) => {
                    tracing::info!(
                        "trace pipeline: connected to Redis; consuming {} as {} in group {}",
                        self.settings.stream,
                        self.consumer_name,
                        self.settings.consumer_group
                    );
                    self.session(reader, control).await
                }
                Err(error) => Err(format!("cannot connect to Redis: {error}")),
            };
            if *self.stop.borrow() {
                return;
            }
            let error = outcome.err().unwrap_or_else(|| "connection closed".into());
            let attempt = self.failed(error.clone());
            let wait = backoff(RETRY_FIRST, attempt);
            tracing::warn!("trace pipeline: {error}; retrying in {wait:?} (attempt {attempt})");
            if self.sleep(wait).await {
                return;
            }
            self.outlet.metrics.redis_reconnects.inc();
        }
    }

    /// Two connections: the reader's (its XREADGROUP blocks) and one for everything else.
    async fn connect(
        &self,
        link: &RedisLink,
    ) -> RedisResult<(MultiplexedConnection, MultiplexedConnection)> {
        let reader = link.open(BLOCK * 2).await?;
        let mut control = link.open(Duration::from_secs(5)).await?;
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.stream)
            .arg(&self.settings.consumer_group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut control)
            .await;
        match created {
            Ok(()) => tracing::info!(
                "trace pipeline: created consumer group {}",
                self.settings.consumer_group
            ),
            Err(error) if error.code() == Some("BUSYGROUP") => {}
            Err(error) => return Err(error),
        }
        Ok((reader, control))
    }

    /// Consumes until the connection fails (`Err`) or the pipeline stops (`Ok`).
    async fn session(
        &mut self,
        reader: MultiplexedConnection,
        control: MultiplexedConnection,
    ) -> Result<(), String> {
        {
            let mut shared = self.lock();
            shared.connection_state = ConnectionState::Connected;
            shared.consuming = true;
            shared.retry_count = 0;
            shared.last_error = None;
        }
        self.outlet.metrics.redis_connected.set(1);
        let mut stop = self.stop.clone();
        let mut reading = std::pin::pin!(self.read_loop(reader));
        let mut upkeep = std::pin::pin!(upkeep(
            self.settings.clone(),
            self.consumer_name.clone(),
            self.outlet.clone(),
            control,
            self.shared.clone(),
            self.stop.clone(),
        ));
        let outcome = tokio::select! {
            outcome = &mut reading => outcome,
            outcome = &mut upkeep => outcome,
            _ = stop.wait_for(|stopped| *stopped) => Ok(()),
        };
        self.outlet.metrics.redis_connected.set(0);
        let mut shared = self.lock();
        shared.consuming = false;
        shared.connection_state = ConnectionState::Disconnected;
        outcome
    }

    /// Reads batches of never-delivered entries, exports and acknowledges them.
    async fn read_loop(&self, mut reader: MultiplexedConnection) -> Result<(), String> {
        let settings = &self.settings;
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&settings.consumer_group)
                .arg(&self.consumer_name)
                .arg("COUNT")
                .arg(settings.batch_size)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&settings.stream)
                .arg(">")
                .query_async(&mut reader)
                .await
                .map_err(|e| format!("XREADGROUP failed: {e}"))?;
            let entries: Vec<StreamId> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            if entries.is_empty() {
                continue;
            }
            let ids = self.outlet.deliver(&self.stop, entries).await;
            acknowledge(&mut reader, settings, &ids).await?;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: ConnectionState) {
        self.lock().connection_state = state;
    }

    /// Records a failed connection; returns the attempt number.
    fn failed(&self, error: String) -> u32 {
        let mut shared = self.lock();
        shared.connection_state = ConnectionState::Failed;
        shared.retry_count += 1;
        shared.last_error = Some((error, SystemTime::now()));
        shared.retry_count
    }

    /// Sleeps `wait`; `true` when the pipeline was stopped meanwhile.
    async fn sleep(&mut self, wait: Duration) -> bool {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.wait_for(|stopped| *stopped) => true,
        };
        stopped || *self.stop.borrow()
    }
}

impl Outlet {
    /// Exports the spans among `entries` (retrying while the collector is unavailable, until it
    /// takes them, refuses them for good, or the pipeline stops) and returns the ids that are
    /// done with: all of them, unless the pipeline stopped first (then none: they stay pending
    /// and another consumer takes them over).
    async fn deliver(&self, stop: &watch::Receiver<bool>, entries: Vec<StreamId>) -> Vec<String> {
        self.metrics.entries_read.inc_by(entries.len() as u64);
        let mut spans = Vec::new();
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let fields: HashMap<String, String> = entry
                .map
                .into_iter()
                .filter_map(|(key, value)| {
                    Some((key, redis::from_redis_value::<String>(value).ok()?))
                })
                .collect();
            match TraceEvent::from_fields(&fields).disposition() {
                Disposition::Export(span, agent) => spans.push((*span, agent)),
                Disposition::Skip => {}
                Disposition::Malformed(why) => {
                    self.metrics.dropped(TraceDrop::Malformed, 1);
                    tracing::warn!("trace pipeline: dropping stream entry {}: {why}", entry.id)
                }
            }
            ids.push(entry.id);
        }
        if spans.is_empty() {
            return ids;
        }
        let count = spans.len();
        let request = ExportTraceServiceRequest {
            resource_spans: resource_spans(spans),
        };
        let mut stop = stop.clone();
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let outcome = self.exporter.export(request.clone()).await;
            let took = started.elapsed();
            match outcome {
                Ok(()) => {
                    self.metrics
                        .exported(ExportOutcome::Exported, count as u64, took);
                    if attempt > 0 {
                        tracing::info!("trace pipeline: the collector takes spans again");
                    }
                    return ids;
                }
                Err(ExportError::Rejected(why)) => {
                    self.metrics
                        .exported(ExportOutcome::Refused, count as u64, took);
                    tracing::error!(
                        "trace pipeline: the collector refused a batch of {count} span(s) ({why}); dropping them"
                    );
                    return ids;
                }
                Err(ExportError::Retry(why)) => {
                    self.metrics
                        .exported(ExportOutcome::Unavailable, count as u64, took);
                    attempt += 1;
                    let wait = backoff(EXPORT_RETRY_FIRST, attempt);
                    tracing::warn!(
                        "trace pipeline: cannot export a batch of {count} span(s) ({why}); retrying in {wait:?} \
                         (attempt {attempt}; new spans wait in Redis meanwhile)"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return Vec::new(),
                    }
                }
            }
        }
    }
}

async fn acknowledge(
    connection: &mut MultiplexedConnection,
    settings: &TracePipelineSettings,
    ids: &[String],
) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    redis::cmd("XACK")
        .arg(&settings.stream)
        .arg(&settings.consumer_group)
        .arg(ids)
        .query_async::<u64>(connection)
        .await
        .map(drop)
        .map_err(|e| format!("XACK failed: {e}"))
}

/// Beside the reader, on the control connection: the status figures and connection check
/// every 2 s, the trim (now and every 5 minutes), the group's housekeeping every minute.
async fn upkeep(
    settings: TracePipelineSettings,
    me: String,
    outlet: Outlet,
    mut control: MultiplexedConnection,
    shared: Arc<Mutex<Shared>>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut health = tokio::time::interval(HEALTH_EVERY);
    let mut trim = tokio::time::interval(TRIM_EVERY);
    let mut housekeeping = tokio::time::interval_at(
        tokio::time::Instant::now() + HOUSEKEEPING_EVERY,
        HOUSEKEEPING_EVERY,
    );
    loop {
        tokio::select! {
            _ = health.tick() => {
                let snapshot = snapshot(&mut control, &settings).await?;
                outlet.metrics.stream_length.set(snapshot.length as i64);
                outlet.metrics.group_pending.set(snapshot.group_pending.unwrap_or_default() as i64);
                if let Some(lag) = snapshot.group_lag {
                    outlet.metrics.group_lag.set(lag as i64);
                }
                shared.lock().unwrap_or_else(|e| e.into_inner()).stream = Some(snapshot);
            }
            // Trim and housekeeping failures are retried at their next tick; only the health
            // check decides that the connection is gone.
            _ = trim.tick() => {
                if let Some(retention) = settings.retention {
                    match trim_stream(&mut control, &settings, retention).await {
                        Ok(removed) => outlet.metrics.entries_trimmed.inc_by(removed),
                        Err(error) => tracing::warn!(
                            "trace pipeline: {error}; trying again in {TRIM_EVERY:?}"
                        ),
                    }
                }
            }
            _ = housekeeping.tick() => {
                let done = match reclaim(&mut control, &settings, &me, &outlet, &stop).await {
                    Ok(()) => reap(&mut control, &settings, &me).await,
                    failed => failed,
                };
                if let Err(error) = done {
                    tracing::warn!("trace pipeline: group housekeeping: {error}; trying again in {HOUSEKEEPING_EVERY:?}");
                }
            }
        }
    }
}

/// The stream's length and last id, the group's pending count and last delivered id.
async fn snapshot(
    control: &mut MultiplexedConnection,
    settings: &TracePipelineSettings,
) -> Result<StreamSnapshot, String> {
    let stream: HashMap<String, Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&settings.stream)
        .query_async(control)
        .await
        .map_err(|e| format!("XINFO STREAM failed: {e}"))?;
    let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&settings.stream)
        .query_async(control)
        .await
        .map_err(|e| format!("XINFO GROUPS failed: {e}"))?;
    let group = groups
        .groups
        .into_iter()
        .find(|g| g.name == settings.consumer_group);
    let field = |name: &str| stream.get(name).cloned();
    Ok(StreamSnapshot {
        length: field("length")
            .and_then(|v| redis::from_redis_value::<u64>(v).ok())
            .unwrap_or_default(),
        last_entry_id: field("last-generated-id")
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default(),
        group_pending: group.as_ref().map(|g| g.pending as u64),
        group_lag: group.as_ref().and_then(|g| g.lag).map(|lag| lag as u64),
        group_last_delivered_id: group.map(|g| g.last_delivered_id),
    })
}

/// `XTRIM MINID ~ <now - retention>`: entry ids are their arrival times in ms. The number of
/// entries removed.
async fn trim_stream(
    control: &mut MultiplexedConnection,
    settings: &TracePipelineSettings,
    retention: Duration,
) -> Result<u64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let min_id = now.saturating_sub(retention).as_millis();
    let removed: u64 = redis::cmd("XTRIM")
        .arg(&settings.stream)
        .arg("MINID")
        .arg("~")
        .arg(min_id.to_string())
        .query_async(control)
        .await
        .map_err(|e| format!("XTRIM failed: {e}"))?;
    if removed > 0 {
        tracing::info!(
            "trace pipeline: trimmed {removed} entries older than {retention:?} from {}",
            settings.stream
        );
    }
    Ok(removed)
}

/// Entries another consumer was given and never acknowledged (it died mid-batch): taken over
/// and exported here; after `MAX_DELIVERIES` attempts an entry is dropped instead.
async fn reclaim(
    control: &mut MultiplexedConnection,
    settings: &TracePipelineSettings,
    me: &str,
    outlet: &Outlet,
    stop: &watch::Receiver<bool>,
) -> Result<(), String> {
    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&settings.stream)
        .arg(&settings.consumer_group)
        .arg("IDLE")
        .arg(STUCK_AFTER.as_millis() as u64)
        .arg("-")
        .arg("+")
        .arg(RECLAIM_BATCH)
        .query_async(control)
        .await
        .map_err(|e| format!("XPENDING failed: {e}"))?;
    let (dead, stuck): (Vec<_>, Vec<_>) = pending
        .ids
        .into_iter()
        .partition(|p| p.times_delivered >= MAX_DELIVERIES);
    let dead: Vec<String> = dead.into_iter().map(|p| p.id).collect();
    if !dead.is_empty() {
        (outlet.metrics).dropped(TraceDrop::Undeliverable, dead.len() as u64);
        tracing::warn!(
            "trace pipeline: dropping {} entries after {MAX_DELIVERIES} deliveries: {dead:?}",
            dead.len()
        );
        acknowledge(control, settings, &dead).await?;
    }
    if stuck.is_empty() {
        return Ok(());
    }
    let claimed: StreamClaimReply = redis::cmd("XCLAIM")
        .arg(&settings.stream)
        .arg(&settings.consumer_group)
        .arg(me)
        .arg(STUCK_AFTER.as_millis() as u64)
        .arg(stuck.iter().map(|p| p.id.as_str()).collect::<Vec<_>>())
        .query_async(control)
        .await
        .map_err(|e| format!("XCLAIM failed: {e}"))?;
    let count = claimed.ids.len();
    let done = outlet.deliver(stop, claimed.ids).await;
    acknowledge(control, settings, &done).await?;
    if count > 0 {
        tracing::info!("trace pipeline: took over {count} entries stuck with a departed consumer");
    }
    Ok(())
}

/// Removes the group's consumers that left (idle an hour, nothing pending), never this one.
async fn reap(
    control: &mut MultiplexedConnection,
    settings: &TracePipelineSettings,
    me: &str,
) -> Result<(), String> {
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&settings.stream)
        .arg(&settings.consumer_group)
        .query_async(control)
        .await
        .map_err(|e| format!("XINFO CONSUMERS failed: {e}"))?;
    for consumer in consumers.consumers {
        let gone = consumer.name != me
            && consumer.pending == 0
            && consumer.idle as u128 >= CONSUMER_IDLE.as_millis();
        if gone {
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&settings.stream)
                .arg(&settings.consumer_group)
                .arg(&consumer.name)
                .query_async::<u64>(control)
                .await
                .map_err(|e| format!("XGROUP DELCONSUMER failed: {e}"))?;
            tracing::info!(
                "trace pipeline: removed consumer {} (idle, nothing pending)",
                consumer.name
            );
        }
    }
    Ok(())
}

/// `first`, doubled per attempt after the first, at most 60 s.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(5);
    (first * 2u32.pow(doublings)).min(RETRY_MAX)
}

/// How the consumer reaches Redis: through the redis crate, or over TLS when the URL says
/// `rediss://` or a `REDIS_TLS_*` variable is set (the reference's rule). The TLS handshake is
/// the pipeline's own (`super::tls`); the redis crate then speaks over that stream.
struct RedisLink {
    client: redis::Client,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl RedisLink {
    fn new(url: &str, tls: &ClientTls) -> Result<RedisLink, String> {
        let secure = url
            .get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"));
        // The redis crate parses the rest of the URL (password, database) as it would.
        let plain = match secure {
            true => format!("redis://{}", &url[9..]),
            false => url.to_owned(),
        };
        let client = redis::Client::open(plain)
            .map_err(|e| format!("REDIS_URL is not a Redis URL ({e})"))?;
        let tls = match secure || tls.given() {
            true => Some(Arc::new(super::tls::config(tls).map_err(|e| {
                format!("cannot set up TLS to Redis (REDIS_TLS_*): {e}")
            })?)),
            false => None,
        };
        if tls.is_some() && !matches!(client.get_connection_info().addr(), ConnectionAddr::Tcp(..))
        {
            return Err("TLS to Redis needs a host and port in REDIS_URL".into());
        }
        Ok(RedisLink { client, tls })
    }

    /// A new connection whose commands time out after `response`.
    async fn open(&self, response: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response));
        let (Some(tls), ConnectionAddr::Tcp(host, port)) =
            (&self.tls, self.client.get_connection_info().addr())
        else {
            return self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await;
        };
        let handshake = super::tls::connect(tls.clone(), host, *port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let settings = self.client.get_connection_info().redis_settings();
        let (connection, driver) =
            MultiplexedConnection::new_with_config(settings, stream, config).await?;
        tokio::spawn(driver);
        Ok(connection)
    }
}
