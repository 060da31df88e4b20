//! Plans made for the tables as they are, not as they were.
//!
//! Every statement is prepared once per connection and runs its generic plan
//! (`plan_cache_mode=force_generic_plan`, see `PgStore::open`), and a generic plan is made for
//! the size the tables had when it was prepared. One made while `jobs` held a handful of rows
//! reads a whole index where a plan made for a larger table looks up one row: after a fresh
//! start, each wave's owner-delta statement read the index entries of every live claim (a
//! thousand per statement within seconds of load; BENCHMARKS.md, the ninth round), for as long as
//! its connection lived. PostgreSQL drops its cached plans when ANALYZE records a table's new
//! size, but autovacuum may run rarely, or not at all.
//!
//! So the store forgets its prepared statements each time the number of hot writes it applied
//! doubles (from `FIRST`): each connection prepares them again at its next use, for the tables
//! as they are then. That is a few dozen re-plans over a registry's life, most of them in its
//! first minutes, when the tables grow fastest relative to their size.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hot writes (submits, claims, owner deltas) before the first re-plan.
const FIRST: u64 = 1024;

pub(super) struct Replan {
    written: AtomicU64,
    next: AtomicU64,
}

impl Replan {
    pub(super) fn new() -> Replan {
        Replan {
            written: AtomicU64::new(0),
            next: AtomicU64::new(FIRST),
        }
    }

    /// Counts `writes` more; true once each time the count has doubled (the caller re-plans).
    pub(super) fn wrote(&self, writes: u64) -> bool {
        let written = self.written.fetch_add(writes, Ordering::Relaxed) + writes;
        let next = self.next.load(Ordering::Relaxed);
        written >= next
            && self
                .next
                .compare_exchange(
                    next,
                    written.saturating_mul(2),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_plans_each_time_the_writes_double() {
        let replan = Replan::new();
        let due: Vec<u64> = (1..=10_000u64).filter(|_| replan.wrote(1)).collect();
        assert_eq!(due, [1024, 2048, 4096, 8192]);
    }

    #[test]
    fn a_large_wave_counts_once_and_doubles_from_where_it_landed() {
        let replan = Replan::new();
        assert!(!replan.wrote(1000));
        assert!(replan.wrote(3000));
        assert!(!replan.wrote(3999));
        assert!(replan.wrote(1));
    }
}
