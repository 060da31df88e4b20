//! Event-log statements: read a page of a job's events, append one
//! (docs/contract.md#events-endpoints).

use async_trait::async_trait;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::{column, PgStore};
use crate::store::{EventFilter, EventStore, PostEventOutcome, StoreError};
use crate::wire::{JobEvent, RawJson, Timestamp};

#[async_trait]
impl EventStore for PgStore {
    /// Events with `seq > after` (of the wanted types), ascending, at most `limit`; `None` when
    /// the job does not exist. Existence and the page come from one statement.
    async fn list_events(
        &self,
        job_id: Uuid,
        filter: &EventFilter,
        max_bytes: i64,
    ) -> Result<Option<Vec<JobEvent>>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/list_events.sql"))
            .await?;
        let rows = conn
            .query(
                &statement,
                &[
                    &job_id,
                    &filter.after,
                    &filter.types,
                    &filter.limit,
                    &max_bytes,
                ],
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // The job exists but has no matching event: one row of NULLs.
            let Some(seq) = column::<Option<i64>>(row, "seq")? else {
                continue;
            };
            events.push(JobEvent {
                job_id,
                seq,
                event_type: column(row, "type")?,
                payload: column::<Option<Json<RawJson>>>(row, "payload")?.map(|j| j.0),
                trace_context: column::<Option<Json<RawJson>>>(row, "trace_context")?.map(|j| j.0),
                posted_by: column(row, "posted_by")?,
                created_at: Timestamp(column(row, "created_at")?),
            });
        }
        Ok(Some(events))
    }

    /// Appends an event to a live job. The seq comes from the job row's counter, bumped in the
    /// same statement (docs/contract.md#diff-event-seq): concurrent posters queue on the row
    /// lock and every one of them succeeds with a gap-free seq. A JSON `null` payload is stored
    /// as no payload.
    async fn post_event(
        &self,
        job_id: Uuid,
        event_type: &str,
        payload: Option<&RawJson>,
        trace_context: Option<&RawJson>,
        posted_by: Option<&str>,
    ) -> Result<PostEventOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/post_event.sql"))
            .await?;
        let row = conn
            .query_opt(
                &statement,
                &[
                    &job_id,
                    &event_type,
                    &payload.map(|p| Json(&**p)),
                    &trace_context.map(|t| Json(&**t)),
                    &self.channels.job_events,
                    &posted_by,
                ],
            )
            .await?;
        if let Some(row) = row {
            return Ok(PostEventOutcome::Posted {
                job_id,
                seq: column(&row, "seq")?,
                created_at: Timestamp(column(&row, "created_at")?),
            });
        }
        Ok(match super::jobs::job_state_on(&conn, job_id).await? {
            None => PostEventOutcome::NotFound,
            Some(_) => PostEventOutcome::Terminal,
        })
    }
}
