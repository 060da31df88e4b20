//! Job rules: lease windows, the executor read's lease cap, retry budgets and the errors of the
//! paths that take a job from its owner, `recv_cursor` merging, and which deltas apply.

use std::time::{Duration, SystemTime};

use crate::go_duration::format_go_duration;
use crate::wire::{JobStatus, RecvCursor, RejectReason};

/// A claim's lease window when the job has no `max_duration`.
pub const DEFAULT_LEASE_WINDOW: Duration = Duration::from_secs(300);

/// How long a claim of a job holds before it must be renewed: the job's `max_duration`
/// (seconds, when positive), else [`DEFAULT_LEASE_WINDOW`]. The same window is granted again by
/// every renewal.
pub fn lease_window(max_duration: Option<i64>) -> Duration {
    match max_duration {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
        _ => DEFAULT_LEASE_WINDOW,
    }
}

/// What bounds the lease an executor read (a long-poll of the job's events by its owner) may
/// grant: `now + window`, but never past `cap` when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollLease {
    pub window: Duration,
    pub cap: Option<SystemTime>,
}

/// The executor read's lease: a poll keeps a claim alive, but never past the job's
/// `total_deadline`, nor (without a deadline, when the stale reaper is on) past the stale
/// ceiling `submitted_at + max(stale timeout, max_duration)`, so polling alone cannot keep a
/// job alive forever.
pub fn poll_lease(
    max_duration: Option<i64>,
    total_deadline: Option<SystemTime>,
    submitted_at: SystemTime,
    stale_timeout: Option<Duration>,
) -> PollLease {
    let cap = total_deadline.or_else(|| {
        let timeout = stale_timeout.filter(|t| !t.is_zero())?;
        let max_duration = Duration::from_secs(max_duration.unwrap_or(0).max(0) as u64);
        submitted_at.checked_add(timeout.max(max_duration))
    });
    PollLease {
        window: lease_window(max_duration),
        cap,
    }
}

impl PollLease {
    /// The lease this grants at `now`.
    pub fn at(self, now: SystemTime) -> SystemTime {
        let lease = now + self.window;
        self.cap.map_or(lease, |cap| lease.min(cap))
    }
}

/// The paths that take a live job from its owner. Each puts the job back in the queue, unowned,
/// or fails it with its own error when its retry budget is spent (epoch, attempts and cursor are
/// kept). The budget is spent once `attempt_count > max_retries` (a job may be claimed while
/// `attempt_count <= max_retries`): the statements spell that comparison, since the claim's
/// partial index needs it literally, and `tests/api/rules.rs` checks they spell it one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenBack {
    /// The lease passed without a renewal.
    LeaseExpired,
    /// The sweep's orphan phase: a pinned job its gone owner never took up.
    Orphaned,
    /// An operator's force reclaim.
    Reclaimed,
}

impl TakenBack {
    /// The `error` of a job this path fails because its retry budget is spent.
    pub fn exhausted_error(self) -> &'static str {
        match self {
            TakenBack::LeaseExpired => "lease expired: no completion within lease window",
            TakenBack::Orphaned => "orphaned: max retries exceeded",
            TakenBack::Reclaimed => "reclaimed: max retries exceeded",
        }
    }
}

/// The `error` of a job its owner released past its retry budget: the trimmed reason, or the
/// reference's default when none was given.
pub fn release_exhausted_error(reason: Option<&str>) -> String {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    format!(
        "exhausted (release): {}",
        reason.unwrap_or("max retries exceeded")
    )
}

/// The `error` of a cancelled job: `cancelled: <reason>` when a reason was given (trimmed),
/// else the job's error is left as it was (`None`).
pub fn cancel_error(reason: &str) -> Option<String> {
    let reason = reason.trim();
    (!reason.is_empty()).then(|| format!("cancelled: {reason}"))
}

/// The stale reaper's `error` (the reference's wording): which ceiling the job outlived.
pub fn stale_reason(timeout: Duration, max_duration: Duration) -> String {
    if max_duration > timeout {
        format!(
            "stale: no total_deadline set and exceeded max_duration ({})",
            format_go_duration(max_duration)
        )
    } else {
        format!(
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling ({})",
            format_go_duration(timeout)
        )
    }
}

/// A delta's `recv_cursor` is merged key by key, keeping the larger sequence number, so a late
/// or reordered delta never moves a cursor back.
pub fn merge_recv_cursor(current: Option<RecvCursor>, incoming: &RecvCursor) -> RecvCursor {
    let mut merged = current.unwrap_or_default();
    for (key, &seq) in incoming {
        let entry = merged.entry(key.clone()).or_insert(seq);
        *entry = (*entry).max(seq);
    }
    merged
}

/// Who holds a job and how: what decides whether a delta or an executor read applies.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: JobStatus,
    pub owner_instance_id: Option<String>,
    pub claim_epoch: i64,
}

impl JobState {
    /// Why a delta from `instance_id` (with or without an epoch) cannot apply to the job as it
    /// is, in the reference's order: ownership/epoch, then terminal state. Without an epoch (an
    /// SDK older than claim epochs) only the owner is checked. `None` when nothing stands in
    /// the way.
    pub fn delta_rejection(
        &self,
        instance_id: &str,
        claim_epoch: Option<i64>,
    ) -> Option<RejectReason> {
        let owned = self.owner_instance_id.as_deref() == Some(instance_id);
        match claim_epoch {
            Some(epoch) if !owned || epoch != self.claim_epoch => {
                Some(RejectReason::ClaimSuperseded)
            }
            None if !owned => Some(RejectReason::NotOwner),
            _ if self.status.is_terminal() => Some(RejectReason::AlreadyTerminal),
            _ => None,
        }
    }

    /// Whether an executor read by this caller is fenced off: the job is live and held by
    /// someone else, or by this instance under another epoch.
    pub fn superseded_for(&self, instance_id: &str, claim_epoch: i64) -> bool {
        let current_claim = self.owner_instance_id.as_deref() == Some(instance_id)
            && self.claim_epoch == claim_epoch;
        !(self.status.is_terminal() || current_claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_lease_window_is_max_duration_or_five_minutes() {
        assert_eq!(lease_window(None), Duration::from_secs(300));
        assert_eq!(lease_window(Some(0)), Duration::from_secs(300));
        assert_eq!(lease_window(Some(-4)), Duration::from_secs(300));
        assert_eq!(lease_window(Some(7)), Duration::from_secs(7));
    }

    #[test]
    fn a_poll_lease_is_capped_by_the_deadline_else_the_stale_ceiling() {
        let submitted = SystemTime::UNIX_EPOCH + 10 * HOUR;
        let now = submitted + HOUR;
        let deadline = now + Duration::from_secs(60);
        // The deadline wins over the stale ceiling, and caps the window.
        let lease = poll_lease(None, Some(deadline), submitted, Some(HOUR));
        assert_eq!(lease.at(now), deadline);
        // Without a deadline: the stale ceiling, at least max_duration after submission.
        let lease = poll_lease(Some(7200), None, submitted, Some(HOUR));
        assert_eq!(lease.cap, Some(submitted + 2 * HOUR));
        assert_eq!(
            lease.at(now),
            submitted + 2 * HOUR,
            "capped before now + window"
        );
        let lease = poll_lease(None, None, submitted, Some(HOUR));
        assert_eq!(lease.at(now), submitted + HOUR);
        // Neither: the plain window.
        let lease = poll_lease(Some(30), None, submitted, None);
        assert_eq!(lease.at(now), now + Duration::from_secs(30));
    }

    #[test]
    fn errors_of_exhausted_jobs_match_the_reference() {
        assert_eq!(
            release_exhausted_error(Some("  OSError: refused ")),
            "exhausted (release): OSError: refused"
        );
        assert_eq!(
            release_exhausted_error(Some("  ")),
            "exhausted (release): max retries exceeded"
        );
        assert_eq!(
            release_exhausted_error(None),
            "exhausted (release): max retries exceeded"
        );
        assert_eq!(
            TakenBack::Orphaned.exhausted_error(),
            "orphaned: max retries exceeded"
        );
        assert_eq!(
            cancel_error("  user asked "),
            Some("cancelled: user asked".into())
        );
        assert_eq!(cancel_error(" "), None);
    }

    #[test]
    fn stale_reasons_match_the_reference() {
        assert_eq!(
            stale_reason(HOUR, Duration::ZERO),
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (1h0m0s)"
        );
        assert_eq!(
            stale_reason(HOUR, 3 * HOUR),
            "stale: no total_deadline set and exceeded max_duration (3h0m0s)"
        );
        assert_eq!(
            stale_reason(HOUR, Duration::from_secs(600)),
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (1h0m0s)"
        );
    }

    #[test]
    fn cursors_merge_key_by_key_keeping_the_larger_sequence() {
        let current = RecvCursor::from([("a".into(), 5), ("b".into(), 2)]);
        let incoming = RecvCursor::from([("a".into(), 3), ("b".into(), 9), ("c".into(), 1)]);
        assert_eq!(
            merge_recv_cursor(Some(current), &incoming),
            RecvCursor::from([("a".into(), 5), ("b".into(), 9), ("c".into(), 1)])
        );
        assert_eq!(merge_recv_cursor(None, &incoming), incoming);
    }

    #[test]
    fn deltas_are_checked_for_ownership_then_epoch_then_terminal_state() {
        let job = |status, owner: Option<&str>| JobState {
            status,
            owner_instance_id: owner.map(str::to_owned),
            claim_epoch: 2,
        };
        let live = job(JobStatus::Working, Some("a"));
        assert_eq!(live.delta_rejection("a", Some(2)), None);
        assert_eq!(live.delta_rejection("a", None), None);
        assert_eq!(
            live.delta_rejection("a", Some(1)),
            Some(RejectReason::ClaimSuperseded)
        );
        assert_eq!(
            live.delta_rejection("b", None),
            Some(RejectReason::NotOwner)
        );
        assert_eq!(
            live.delta_rejection("b", Some(2)),
            Some(RejectReason::ClaimSuperseded)
        );
        let done = job(JobStatus::Completed, Some("a"));
        assert_eq!(
            done.delta_rejection("a", None),
            Some(RejectReason::AlreadyTerminal)
        );
        assert_eq!(
            done.delta_rejection("b", None),
            Some(RejectReason::NotOwner)
        );
        assert!(
            !done.superseded_for("b", 1),
            "finished jobs are never fenced"
        );
        assert!(live.superseded_for("a", 1));
        assert!(!live.superseded_for("a", 2));
    }
}
