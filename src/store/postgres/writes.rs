//! Group commit across kinds: the submits, claims and owner deltas that arrive together are
//! applied in ONE transaction, so a wave of hot writes costs one commit (one commit record, one
//! WAL flush to wait for) whatever its mix. Per completed job that is fewer commits than kinds
//! (a job is one submit, one claim and two or more deltas).
//!
//! The statements of a wave are pipelined: BEGIN, the deltas, the claims, the INSERT and COMMIT
//! go out together, one round trip. If a statement fails, the ones after it fail too ("the
//! transaction is aborted") and PostgreSQL turns the COMMIT into a ROLLBACK: the wave reports
//! its first real error (and the batcher applies each call alone, see `batch`). The statements
//! are prepared before the pipeline starts, so each one is sent when first polled, in order.
//! Two deltas to one job need two statements, the second after the first answered: such a wave
//! sends COMMIT only once everything answered. Deltas are sent first: they are the only
//! statements of a wave that may wait for a row lock, and they do so before the wave holds the
//! locks of its claims.
//!
//! A wave of one kind (and at most one wave of deltas) is one statement: no explicit
//! transaction, as before.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::jobs::{
    apply_waves, claim_many_on, create_jobs_on, waves, APPLY_DELTAS, CLAIM_JOBS, CREATE_JOBS,
};
use super::PgStore;
use crate::store::{ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, NewJob, StoreError};

/// A hot write waiting for its wave.
#[derive(Clone)]
pub(super) enum Write {
    Submit(NewJob),
    Claim(ClaimCall),
    Delta(DeltaUpdate),
}

enum Kind {
    Submit,
    Claim,
    Delta,
}

/// Its answer, after the wave committed.
pub(super) enum Written {
    Submitted,
    Claim(ClaimOutcome),
    Delta(DeltaOutcome),
}

impl PgStore {
    /// Applies a wave; answers in the order of `writes`.
    pub(super) async fn apply_writes(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Written>, StoreError> {
        let (mut submits, mut claims, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
        // The kind of each call, in order (to answer in order).
        let kinds: Vec<Kind> = writes
            .into_iter()
            .map(|write| match write {
                Write::Submit(job) => {
                    submits.push(job);
                    Kind::Submit
                }
                Write::Claim(call) => {
                    claims.push(call);
                    Kind::Claim
                }
                Write::Delta(delta) => {
                    deltas.push(delta);
                    Kind::Delta
                }
            })
            .collect();
        let delta_waves = waves(&deltas);
        let present = [submits.is_empty(), claims.is_empty(), deltas.is_empty()]
            .iter()
            .filter(|empty| !**empty)
            .count();
        let shared = present > 1 || delta_waves.len() > 1;
        // COMMIT in the same round trip, unless a second delta statement must wait its turn.
        let commit_ahead = shared && delta_waves.len() <= 1;
        let conn = self.conn().await?;
        for (needed, statement) in [
            (!deltas.is_empty(), APPLY_DELTAS),
            (!claims.is_empty(), CLAIM_JOBS),
            (!submits.is_empty(), CREATE_JOBS),
        ] {
            if needed {
                conn.prepare_cached(statement).await?;
            }
        }
        let (began, deltas_applied, claimed, submitted, committed_ahead) = tokio::join!(
            async {
                match shared {
                    true => conn.batch_execute("BEGIN").await.map_err(StoreError::from),
                    false => Ok(()),
                }
            },
            async {
                match deltas.is_empty() {
                    true => Ok(Vec::new()),
                    false => apply_waves(&conn, &delta_waves, &deltas).await,
                }
            },
            async {
                match claims.is_empty() {
                    true => Ok(Vec::new()),
                    false => claim_many_on(&conn, &claims).await,
                }
            },
            async {
                match submits.is_empty() {
                    true => Ok(()),
                    false => create_jobs_on(&conn, &submits).await,
                }
            },
            async {
                match commit_ahead {
                    true => conn.batch_execute("COMMIT").await.map_err(StoreError::from),
                    false => Ok(()),
                }
            },
        );
        let outcome = match (began, deltas_applied, claimed, submitted) {
            (Ok(()), Ok(deltas), Ok(claims), Ok(())) => Ok((deltas, claims)),
            (began, deltas, claims, submitted) => Err(first_cause(
                [began.err(), deltas.err(), claims.err(), submitted.err()]
                    .into_iter()
                    .flatten(),
            )),
        };
        let (deltas, claims) = match (shared, commit_ahead, outcome) {
            (false, _, outcome) => outcome?,
            // A failed statement made that COMMIT a ROLLBACK.
            (true, true, outcome) => {
                let applied = outcome?;
                committed_ahead?;
                applied
            }
            (true, false, Ok(applied)) => {
                conn.batch_execute("COMMIT").await?;
                applied
            }
            (true, false, Err(error)) => {
                // Leaves the connection clean for the pool (a broken one is dropped by it).
                let _ = conn.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        };
        if self.replan.wrote(kinds.len() as u64) {
            tracing::debug!("the tables have grown: preparing the statements again");
            self.pool.manager().statement_caches.clear();
        }
        let (mut deltas, mut claims) = (deltas.into_iter(), claims.into_iter());
        kinds
            .iter()
            .map(|kind| match kind {
                Kind::Submit => Some(Written::Submitted),
                Kind::Claim => claims.next().map(Written::Claim),
                Kind::Delta => deltas.next().map(Written::Delta),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Batch("a wave answered fewer calls than it had".into()))
    }
}

/// The error that caused a failed wave: not the "transaction is aborted" of the statements
/// pipelined after it.
fn first_cause(errors: impl Iterator<Item = StoreError>) -> StoreError {
    let errors: Vec<StoreError> = errors.collect();
    let caused = |error: &StoreError| match error {
        StoreError::Db(db) => db.code() != Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        _ => true,
    };
    let at = errors.iter().position(caused).unwrap_or(0);
    errors
        .into_iter()
        .nth(at)
        .unwrap_or_else(|| StoreError::Batch("a wave failed without an error".into()))
}
