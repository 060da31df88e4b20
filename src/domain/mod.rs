//! The rules of jobs and agents, each decided once, in plain Rust.
//!
//! Both storage backends apply these rules: the embedded store calls them directly, and the
//! PostgreSQL statements receive their results as parameters. Where a rule must be evaluated row
//! by row inside a PostgreSQL statement (the lease window of a claimed row, the merge of a
//! delta's `recv_cursor`) it is one SQL function, created by a migration, that a test pins to the
//! Rust rule here (`tests/api/rules.rs`). See docs/state-machine.md for the rules in context.

pub mod agents;
pub mod jobs;
pub mod registry_events;
