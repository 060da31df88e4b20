//! The store's prepared statements are planned again as the tables grow
//! (`store::postgres::replan`): a plan made while `jobs` was empty is not kept for good.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn_app_with, Backend, TestApp};

/// Scans of `jobs_live_owner_idx` and the index entries they read, as PostgreSQL has counted
/// them so far (each session reports its counts within about a second of going idle).
async fn live_owner_index_reads(app: &TestApp) -> (i64, i64) {
    let row = app
        .pg()
        .query_one(
            "SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes
             WHERE indexrelname = 'jobs_live_owner_idx'",
            &[],
        )
        .await
        .expect("index statistics");
    (row.get(0), row.get(1))
}

#[actix_web::test]
async fn owner_deltas_are_planned_again_once_the_jobs_table_has_grown() {
    // One connection, so that the plans it made while `jobs` was empty are the ones it has.
    let app = spawn_app_with(Backend::Postgres, |config| config.db_pool_size = 1).await;
    let id = app.submit("c").await;
    app.claim("c", "owner-b").await.expect("owner-b's job");
    // Prepared now, for an empty table: such a plan reads every live claim's index entry.
    app.delta("owner-b", json!({"id": id, "progress": 0.1}))
        .await;

    // The table grows: 10 000 finished jobs and 400 live claims of another owner (written
    // directly, as a long-running mesh accumulates them), then 1 100 submits through the API,
    // enough writes for the store to re-plan.
    app.pg()
        .batch_execute(
            "INSERT INTO jobs (job_id, capability, status, submitted_payload, owner_instance_id,
                               last_heartbeat_at)
             SELECT gen_random_uuid(), 'c',
                    CASE WHEN n <= 400 THEN 'working' ELSE 'completed' END, '{}',
                    CASE WHEN n <= 400 THEN 'owner-a' END, now()
             FROM generate_series(1, 10400) AS n",
        )
        .await
        .expect("grow jobs");
    for _ in 0..1100 {
        app.submit("other").await;
    }
    let deltas = 20;
    let (scans_before, reads_before) = settled(&app, 1).await;
    for n in 0..deltas {
        let progress = 0.2 + f64::from(n) / 100.0;
        let answer = app
            .delta("owner-b", json!({"id": id, "progress": progress}))
            .await;
        assert_eq!(answer["accepted"], 1, "{answer}");
    }
    let (scans, reads) = settled(&app, scans_before + deltas as i64).await;
    let per_scan = (reads - reads_before) as f64 / (scans - scans_before) as f64;
    // Planned for the grown table, a delta looks up owner-b's own entries (its one live claim
    // and a few dead versions); the plan made for the empty table read all 401.
    assert!(
        per_scan < 50.0,
        "each of owner-b's deltas read {per_scan:.0} entries of jobs_live_owner_idx"
    );
}

/// The index counts once at least `scans` scans have been reported.
async fn settled(app: &TestApp, scans: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = live_owner_index_reads(app).await;
        if counts.0 >= scans {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL reported {} scans of jobs_live_owner_idx, expected {scans}",
            counts.0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
