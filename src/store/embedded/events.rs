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
        posted_by: Option<&str>,
    ) -> Result<PostEventOutcome, StoreError> {
        let event_type = event_type.to_owned();
        let payload = payload.map(|p| p.get().to_owned());
        let trace_context = trace_context.map(|t| t.get().to_owned());
        let posted_by = posted_by.map(str::to_owned);
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
                &Appended {
                    event_type: &event_type,
                    payload: payload.as_deref(),
                    trace_context: trace_context.as_deref(),
                    posted_by: posted_by.as_deref(),
                },
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
/// An event as appended: what it says, and who posted it (`None` for the registry's own events
/// and for callers without a verified client certificate).
pub(super) struct Appended<'a> {
    pub event_type: &'a str,
    pub payload: Option<&'a str>,
    pub trace_context: Option<&'a str>,
    pub posted_by: Option<&'a str>,
}

impl<'a> Appended<'a> {
    /// An event the registry writes itself (`cancelled`, `stale`).
    pub fn by_registry(event_type: &'a str, payload: &'a str) -> Appended<'a> {
        Appended {
            event_type,
            payload: Some(payload),
            trace_context: None,
            posted_by: None,
        }
    }
}

pub(super) fn append(
    db: &Connection,
    job_id: Uuid,
    seq: i64,
    event: &Appended<'_>,
    created_at: i64,
) -> Result<(), StoreError> {
    db.prepare_cached(include_str!("sql/append_event.sql"))?
        .execute(named_params! {
            ":job_id": job_id.to_string(),
            ":seq": seq,
            ":type": event.event_type,
            ":payload": event.payload,
            ":trace_context": event.trace_context,
            ":posted_by": event.posted_by,
            ":created_at": created_at,
        })?;
    Ok(())
}
