//! How cost grows with work (ours, PostgreSQL): the job cycle with 10 k, 100 k and 1 M job rows
//! in the table (mostly finished, as a long-running mesh accumulates them), at 1, 8, 64 and 256
//! concurrent workers; and event reads on a job with 10 k events against one with 10. Rows are
//! bulk-loaded with SQL, not submitted over HTTP. Prints one line per point.

use std::time::Instant;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{cycle, figures, percentile, round, Backend, Database, Figures, Registry, Target};

/// Concurrent workers at each table size.
const WORKERS: [usize; 4] = [1, 8, 64, 256];

/// Runs the curve; `rows` are the table sizes, `seconds` the window of each point.
pub async fn run(target: &Target, rows: &[u64], seconds: f64) -> Vec<Figures> {
    let mut r = Registry::start(target, Backend::Postgres).await;
    let mut lines = Vec::new();
    let mut loaded = 0;
    for &size in rows {
        let started = Instant::now();
        load_history(&r, loaded, size).await;
        let load_seconds = started.elapsed().as_secs_f64();
        loaded = size;
        for workers in WORKERS {
            let mut line = figures(json!({
                "point": "cycle", "rows": size, "load_s": round(load_seconds),
            }));
            line.extend(cycle(&mut r, seconds, 0, workers).await);
            lines.push(line);
        }
    }
    lines.extend(event_reads(&mut r).await);
    lines
}

/// Adds finished jobs (and one in a thousand still queued, under capabilities nobody claims
/// here) until the table holds `to` rows beyond the cycles' own.
async fn load_history(r: &Registry, from: u64, to: u64) {
    let Database::Postgres { client, .. } = &r.database else {
        unreachable!("scale runs on PostgreSQL");
    };
    let (from, to) = (from as i64 + 1, to as i64);
    client
        .execute(
            "INSERT INTO jobs (job_id, capability, status, submitted_payload, result, error, \
                               attempt_count, claim_epoch, submitted_by, submitted_at, \
                               last_heartbeat_at) \
             SELECT gen_random_uuid(), 'bench-history-' || (i % 20), \
                    CASE WHEN i % 1000 = 0 THEN 'working' WHEN i % 10 = 0 THEN 'failed' \
                         ELSE 'completed' END, \
                    '{\"n\": 1}', \
                    CASE WHEN i % 10 <> 0 THEN '{\"ok\": true}'::json END, \
                    CASE WHEN i % 10 = 0 AND i % 1000 <> 0 THEN 'boom' END, \
                    CASE WHEN i % 1000 = 0 THEN 0 ELSE 1 END, \
                    CASE WHEN i % 1000 = 0 THEN 0 ELSE 1 END, 'bench-history', \
                    CASE WHEN i % 1000 = 0 THEN now() \
                         ELSE now() - make_interval(secs => ($2 - i) * 0.01) END, \
                    CASE WHEN i % 1000 = 0 THEN NULL \
                         ELSE now() - make_interval(secs => ($2 - i) * 0.01) END \
             FROM generate_series($1::bigint, $2::bigint) AS i",
            &[&from, &to],
        )
        .await
        .expect("bulk-load finished jobs");
    client.batch_execute("ANALYZE jobs").await.expect("analyze");
}

/// Reads of a job's event log: its first page, its last page, and the whole log page by page,
/// on a job with 10 000 events and on one with 10.
async fn event_reads(r: &mut Registry) -> Vec<Figures> {
    // The last cycle stopped it (to read PostgreSQL's counters).
    r.restart().await;
    let mut lines = Vec::new();
    for events in [10, 10_000] {
        let job = Uuid::new_v4();
        let Database::Postgres { client, .. } = &r.database else {
            unreachable!("scale runs on PostgreSQL");
        };
        client
            .batch_execute(&format!(
                "INSERT INTO jobs (job_id, capability, submitted_payload, event_seq, submitted_by) \
                 VALUES ('{job}', 'bench-events-{job}', '{{}}', {events}, 'bench'); \
                 INSERT INTO job_events (job_id, seq, type, payload) \
                 SELECT '{job}', i, 'tick', json_build_object('i', i) \
                 FROM generate_series(1, {events}) AS i"
            ))
            .await
            .expect("bulk-load events");
        let first = latency(r, &format!("/jobs/{job}/events?after=0"), 200).await;
        let last = latency(r, &format!("/jobs/{job}/events?after={}", events - 5), 200).await;
        let started = Instant::now();
        let (mut after, mut read, mut pages) = (0, 0, 0);
        loop {
            let page: Value = r
                .http
                .get(r.url(&format!("/jobs/{job}/events?after={after}")))
                .send()
                .await
                .expect("events")
                .json()
                .await
                .expect("a page");
            let got = page["events"].as_array().map_or(0, Vec::len);
            if got == 0 {
                break;
            }
            (read, pages) = (read + got, pages + 1);
            after = page["next_after"].as_i64().expect("next_after");
        }
        let whole_ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(read, events as usize, "every event read once");
        lines.push(figures(json!({
            "point": "events", "events": events,
            "first_page_p50_ms": round(first.0), "first_page_p95_ms": round(first.1),
            "last_page_p50_ms": round(last.0), "last_page_p95_ms": round(last.1),
            "whole_log_ms": round(whole_ms), "pages": pages,
            "whole_log_us_per_event": round(whole_ms * 1e3 / events as f64),
        })));
    }
    lines
}

/// `(p50, p95)` in milliseconds of `times` GETs of `path`, one after the other.
async fn latency(r: &Registry, path: &str, times: usize) -> (f64, f64) {
    let mut latencies = Vec::with_capacity(times);
    for _ in 0..times {
        let asked = Instant::now();
        let answer = r.http.get(r.url(path)).send().await.expect("GET");
        assert_eq!(answer.status(), 200, "GET {path}");
        answer.bytes().await.expect("body");
        latencies.push(asked.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    (percentile(&latencies, 50.0), percentile(&latencies, 95.0))
}
