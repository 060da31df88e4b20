//! Job use cases: submit, list, read, claim (behind the drain gate and the required-dependency
//! gate), owner deltas, release, cancel (with its grace and the forward to the owner) and force
//! reclaim. docs/state-machine.md has the transitions.

use uuid::Uuid;

use tracing::Instrument;

use super::{store_span, Registry};
use crate::domain::jobs::{cancel_error, release_exhausted_error};
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, JobCount,
    JobListQuery, JobPage, NewJob, ReclaimOutcome, ReleaseOutcome, StoreError,
};
use crate::wire::{parse_job_id, ClaimedJob, Job, JobDelta, JobStatus, RejectReason};

/// Most (status, capability) groups the dashboard's counts hold.
pub const JOB_COUNT_GROUPS: i64 = 500;

/// Headers of a cancel request that travel with the forward to the owner.
pub type ForwardHeaders = Vec<(&'static str, String)>;

impl Registry {
    /// Submit (docs/state-machine.md#submit). Accepted while draining.
    pub async fn submit(&self, job: NewJob) -> Result<(), StoreError> {
        tracing::debug!(job_id = %job.id, capability = job.capability,
            push_owner = ?job.owner_instance_id, "job submitted");
        self.store
            .create_job(job)
            .instrument(store_span("create_job"))
            .await?;
        self.metrics.job_submits.inc();
        Ok(())
    }

    pub async fn list_jobs(&self, query: &JobListQuery) -> Result<JobPage, StoreError> {
        self.store
            .list_jobs(query, self.settings.max_page_bytes)
            .instrument(store_span("list_jobs"))
            .await
    }

    /// Jobs per status and capability (the dashboard), the first `JOB_COUNT_GROUPS` groups by
    /// capability: from the same cached count as `GET /metrics` (a queued job is `working`
    /// here, as its status says), so open dashboards do not count in the database each.
    pub async fn job_counts(&self) -> Result<Vec<JobCount>, StoreError> {
        let tally = self.metrics.tally(&self.store).await?;
        let mut counts = std::collections::BTreeMap::<(&str, &str), i64>::new();
        for (state, capability, jobs) in &tally.jobs {
            let status = if state == "queued" { "working" } else { state };
            *counts.entry((capability, status)).or_default() += jobs;
        }
        Ok(counts
            .into_iter()
            .take(JOB_COUNT_GROUPS as usize)
            .map(|((capability, status), jobs)| JobCount {
                status: status.to_owned(),
                capability: capability.to_owned(),
                jobs,
            })
            .collect())
    }

    pub async fn job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError> {
        self.store
            .get_job(job_id)
            .instrument(store_span("get_job"))
            .await
    }

    /// Claim (docs/state-machine.md#claim): at most one job; `None` is "no work" (draining,
    /// nothing claimable, or gated).
    pub async fn claim(
        &self,
        capability: &str,
        instance_id: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        // Draining: no work, and nothing touched.
        if self.drain_gate.state().draining() {
            self.metrics.empty_claims.inc();
            return Ok(None);
        }
        let call = |gate_checked| ClaimCall {
            capability: capability.to_owned(),
            instance_id: instance_id.to_owned(),
            gate_checked,
        };
        let outcome = match self
            .store
            .claim_next(call(false))
            .instrument(store_span("claim_next"))
            .await?
        {
            ClaimOutcome::Gated
                if !self
                    .required_dependencies_met(instance_id, capability)
                    .await =>
            {
                ClaimOutcome::NoWork
            }
            ClaimOutcome::Gated => {
                self.store
                    .claim_next(call(true))
                    .instrument(store_span("claim_next"))
                    .await?
            }
            other => other,
        };
        self.forward(&outcome);
        Ok(match outcome {
            ClaimOutcome::Claimed { job, waited } => {
                tracing::debug!(job_id = %job.id, capability, instance_id,
                    epoch = job.claim_epoch, attempt = job.attempt_count, "job claimed");
                self.metrics.claimed(waited);
                Some(job)
            }
            ClaimOutcome::NoWork | ClaimOutcome::Gated => {
                self.metrics.empty_claims.inc();
                None
            }
        })
    }

    /// The claim gate: a producer whose tool for `capability` has a required dependency that
    /// nothing available serves gets no work. Its own health is not checked, and a failure to
    /// evaluate lets the claim through (fail open).
    async fn required_dependencies_met(&self, instance_id: &str, capability: &str) -> bool {
        let snapshot = match self
            .store
            .mesh_snapshot()
            .instrument(store_span("mesh_snapshot"))
            .await
        {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, instance_id,
                    "claim gate not evaluated; letting the claim through");
                return true;
            }
        };
        let mesh = match self.mesh(&snapshot, &[]).await {
            Ok(mesh) => mesh,
            Err(error) => {
                tracing::warn!(%error, instance_id,
                    "claim gate not evaluated; letting the claim through");
                return true;
            }
        };
        let broken = mesh
            .providers()
            .iter()
            .filter(|p| p.agent_id == instance_id && p.capability == capability)
            .find_map(|p| mesh.broken_required_dependency(p));
        if let Some(reason) = &broken {
            tracing::debug!(instance_id, capability, reason, "claim gated");
        }
        broken.is_none()
    }

    /// Update (docs/state-machine.md#update): one owner delta, with the reference's order of
    /// reasons (docs/contract.md#delta-rejections): an id that names no job, then ownership and
    /// epoch, then terminal state, then an unknown status.
    pub async fn apply_delta(
        &self,
        instance_id: &str,
        delta: JobDelta,
    ) -> Result<DeltaOutcome, StoreError> {
        let raw_id = delta.id.as_deref().unwrap_or_default();
        let Some(job_id) = parse_job_id(raw_id) else {
            self.metrics.rejection(RejectReason::NotFound).inc();
            return Ok(DeltaOutcome::Rejected(RejectReason::NotFound));
        };
        let status = match delta.status.as_deref() {
            None => None,
            Some(raw) => match JobStatus::parse(raw) {
                Some(status) => Some(status),
                None => {
                    let reason = self.delta_rejection(instance_id, job_id, delta.claim_epoch);
                    let reason = reason.await?.unwrap_or(RejectReason::InvalidStatus);
                    self.metrics.rejection(reason).inc();
                    return Ok(DeltaOutcome::Rejected(reason));
                }
            },
        };
        let outcome = self
            .store
            .apply_delta(DeltaUpdate {
                job_id,
                instance_id: instance_id.to_owned(),
                claim_epoch: delta.claim_epoch,
                status,
                progress: delta.progress,
                progress_message: delta.progress_message,
                result: delta.result.map(|object| object.0),
                error: delta.error,
                recv_cursor: delta.recv_cursor,
            })
            .instrument(store_span("apply_delta"))
            .await?;
        self.forward(&outcome);
        match &outcome {
            DeltaOutcome::Accepted(after) => {
                self.metrics.job_deltas.inc();
                if let (ClaimAfter::Ended { ran, .. }, Some(status)) = (after, status) {
                    self.metrics.claim_ended(status, *ran);
                }
            }
            DeltaOutcome::Rejected(reason) => {
                tracing::debug!(%job_id, instance_id, ?reason, "delta rejected");
                self.metrics.rejection(*reason).inc();
            }
        }
        Ok(outcome)
    }

    /// Why a delta cannot apply to the job as it is now; `None` when nothing stands in the way.
    async fn delta_rejection(
        &self,
        instance_id: &str,
        job_id: Uuid,
        claim_epoch: Option<i64>,
    ) -> Result<Option<RejectReason>, StoreError> {
        Ok(
            match self
                .store
                .job_state(job_id)
                .instrument(store_span("job_state"))
                .await?
            {
                None => Some(RejectReason::NotFound),
                Some(job) => job.delta_rejection(instance_id, claim_epoch),
            },
        )
    }

    /// Release (docs/state-machine.md#release): the owner hands the job back (back to the
    /// queue, or failed when its budget is spent).
    pub async fn release(
        &self,
        job_id: Uuid,
        instance_id: &str,
        reason: Option<&str>,
    ) -> Result<ReleaseOutcome, StoreError> {
        let exhausted_error = release_exhausted_error(reason);
        let outcome = (self.store)
            .release_job(job_id, instance_id, &exhausted_error)
            .instrument(store_span("release_job"))
            .await?;
        self.forward(&outcome);
        if let ReleaseOutcome::Released { status, .. } = &outcome {
            self.metrics.job_releases.inc();
            tracing::info!(%job_id, instance_id, ?status, reason, "job released by its owner");
        }
        Ok(outcome)
    }

    /// Cancel (docs/state-machine.md#cancel): the job is cancelled and its `cancelled` event
    /// appended in one statement; parked readers wake. After the grace (so a producer parked on
    /// its events sees the event before the forward interrupts it) the owner is told, without
    /// waiting for it.
    pub async fn cancel(
        &self,
        job_id: Uuid,
        reason: String,
        headers: ForwardHeaders,
    ) -> Result<CancelOutcome, StoreError> {
        let error = cancel_error(&reason);
        let outcome = self
            .store
            .cancel_job(job_id, error.as_deref(), &reason)
            .instrument(store_span("cancel_job"))
            .await?;
        self.forward(&outcome);
        let CancelOutcome::Cancelled {
            previous_owner,
            ran,
            ..
        } = &outcome
        else {
            return Ok(outcome);
        };
        tracing::info!(%job_id, owner = ?previous_owner, reason = reason.trim(), "job cancelled");
        self.metrics.job_cancels.inc();
        self.metrics.claim_ended(JobStatus::Cancelled, *ran);
        if !self.settings.cancel_event_grace.is_zero() {
            actix_web::rt::time::sleep(self.settings.cancel_event_grace).await;
        }
        if let Some(owner) = previous_owner.clone() {
            // Best effort and not awaited: the row is already cancelled; a lost forward only
            // means the owner learns it from its next rejected delta.
            let forward = super::forward::CancelForward {
                store: self.store.clone(),
                client: self.agent_client.clone(),
                owner,
                job_id,
                reason,
                headers,
            };
            actix_web::rt::spawn(forward.send());
        }
        Ok(outcome)
    }

    /// Force reclaim (docs/state-machine.md#force-reclaim): an operator takes the job back
    /// (docs/ownership.md: only for owners known gone).
    pub async fn reclaim(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
        let outcome = self
            .store
            .reclaim_job(job_id)
            .instrument(store_span("reclaim_job"))
            .await?;
        self.forward(&outcome);
        if let ReclaimOutcome::Reclaimed {
            status,
            previous_owner,
            ..
        } = &outcome
        {
            self.metrics.job_force_reclaims.inc();
            tracing::info!(%job_id, ?previous_owner, ?status, "job force-reclaimed");
        }
        Ok(outcome)
    }
}
