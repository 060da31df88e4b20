//! Event-log statements on the embedded file: read a page of a job's events, append one
//! (docs/contract.md#events-endpoints).

use async_trait::async_trait;
use rusqlite::{named_params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::jobs::job_state;
use super::{encode, json, now_micros, time_of, EmbeddedStore};
use crate::store::model::event_weight;
use crate::store::{EventFilter, EventStore, PostEventOutcome, StoreError};
use crate::wire::{JobEvent, RawJson, Timestamp};

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn list_events(
        &self,
        job_id: Uuid,
        filter: &EventFilter,
        max_bytes: i64,
    ) -> Result<Option<Vec<JobEvent>>, StoreError> {
        let after = filter.after;
        let types = filter.types.as_ref().map(encode).transpose()?;
        let limit = filter.limit;
        self.run(move |db| {
            let id = job_id.to_string();
            let exists = db
                .prepare_cached(include_str!("sql/job_exists.sql"))?
                .exists(named_params! {":job_id": id})?;
            if !exists {
                return Ok(None);
            }
            let mut statement = db.prepare_cached(include_str!("sql/list_events.sql"))?;
            let rows = statement.query_map(
                named_params! {":job_id": id, ":after": after, ":types": types, ":limit": limit},
                |row| Ok(event_from_row(job_id, row)),
            )?;
            // Rows are read one at a time: the page stops reading at the budget.
            let mut events = Vec::new();
            let mut weight = 0;
            for row in rows {
                if weight >= max_bytes {
                    break;
                }
                let event = row??;
                weight += event_weight(&event);
                events.push(event);
            }
            Ok(Some(events))
        })
        .await
    }

    async fn post_event(
        &self,
        job_id: Uuid,
        event_type: &str,
        payload: Option<&RawJson>,
        trace_context: Option<&RawJson>,
    ) -> Result<PostEventOutcome, StoreError> {
        let event_type = event_type.to_owned();
        let payload = payload.map(|p| p.get().to_owned());
        let trace_context = trace_context.map(|t| t.get().to_owned());
        self.run(move |db| {
            // The seq comes from the job row's counter (docs/contract.md#diff-event-seq):
            // gap-free, never contended (calls run one at a time).
            let seq: Option<i64> = db
                .prepare_cached(include_str!("sql/take_event_seq.sql"))?
                .query_row(named_params! {":job_id": job_id.to_string()}, |row| {
                    row.get(0)
                })
                .optional()?;
            let Some(seq) = seq else {
                return Ok(match job_state(db, job_id)? {
                    None => PostEventOutcome::NotFound,
                    Some(_) => PostEventOutcome::Terminal,
                });
            };
            let now = now_micros();
            append(
                db,
                job_id,
                seq,
                &event_type,
                payload.as_deref(),
                trace_context.as_deref(),
                now,
            )?;
            Ok(PostEventOutcome::Posted {
                job_id,
                seq,
                created_at: Timestamp(time_of(now)),
            })
        })
        .await
    }
}

fn event_from_row(job_id: Uuid, row: &Row) -> Result<JobEvent, StoreError> {
    Ok(JobEvent {
        job_id,
        seq: row.get("seq")?,
        event_type: row.get("type")?,
        payload: json(row, "payload")?,
        trace_context: json(row, "trace_context")?,
        posted_by: row.get("posted_by")?,
        created_at: Timestamp(time_of(row.get("created_at")?)),
    })
}

/// Appends one event whose seq the caller took from the job's counter.
pub(super) fn append(
    db: &Connection,
    job_id: Uuid,
    seq: i64,
    event_type: &str,
    payload: Option<&str>,
    trace_context: Option<&str>,
    created_at: i64,
) -> Result<(), StoreError> {
    db.prepare_cached(include_str!("sql/append_event.sql"))?
        .execute(named_params! {
            ":job_id": job_id.to_string(),
            ":seq": seq,
            ":type": event_type,
            ":payload": payload,
            ":trace_context": trace_context,
            ":created_at": created_at,
        })?;
    Ok(())
}
