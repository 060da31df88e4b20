//! Each job rule is decided once, in `src/domain/`. Where a rule must run row by row inside
//! PostgreSQL it is one SQL function (migration V5; V11 rewrote the cursor merge in PL/pgSQL
//! with the same answers), and where a statement must spell a rule
//! (the live and terminal statuses, the retry budget: partial indexes need them literally) the
//! spelling is checked here against the Rust rule, so the two cannot drift apart.

use std::path::Path;
use std::time::Duration;

use mesh_registry::domain::jobs::{lease_window, merge_recv_cursor, DEFAULT_LEASE_WINDOW};
use mesh_registry::wire::{JobStatus, RecvCursor};
use serde_json::Value;

use crate::helpers::{connect, postgres_only, Backend, TestDatabase};

postgres_only!(the_lease_window_function_is_the_domain_rule);
async fn the_lease_window_function_is_the_domain_rule(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let db = connect(database.pg_name()).await;
    let default_seconds = DEFAULT_LEASE_WINDOW.as_secs_f64();
    for max_duration in [
        None,
        Some(-5),
        Some(0),
        Some(1),
        Some(7),
        Some(300),
        Some(86_400),
    ] {
        let row = db
            .query_one(
                "SELECT extract(epoch FROM job_lease_window($1, $2))::float8",
                &[&max_duration, &default_seconds],
            )
            .await
            .unwrap();
        let seconds: f64 = row.get(0);
        assert_eq!(
            Duration::from_secs_f64(seconds),
            lease_window(max_duration),
            "max_duration {max_duration:?}"
        );
    }
}

postgres_only!(the_cursor_merge_function_is_the_domain_rule);
async fn the_cursor_merge_function_is_the_domain_rule(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let db = connect(database.pg_name()).await;
    let random_cursor = |rng: &mut fastrand::Rng| -> RecvCursor {
        (0..rng.usize(0..4))
            .map(|_| (format!("k{}", rng.u8(0..5)), rng.i64(0..1_000)))
            .collect()
    };
    let mut rng = fastrand::Rng::with_seed(23);
    for _ in 0..200 {
        let current = rng.bool().then(|| random_cursor(&mut rng));
        // A delta without a cursor (most of them) leaves the stored one as it was.
        let incoming = (rng.u8(0..4) > 0).then(|| random_cursor(&mut rng));
        let to_json = |cursor: &RecvCursor| serde_json::to_value(cursor).unwrap();
        let row = db
            .query_one(
                "SELECT merged_recv_cursor($1, $2)",
                &[
                    &current.as_ref().map(to_json),
                    &incoming.as_ref().map(to_json),
                ],
            )
            .await
            .unwrap();
        let merged: Option<Value> = row.get(0);
        let expected = match &incoming {
            Some(incoming) => merge_recv_cursor(current.clone(), incoming),
            None => current.clone().unwrap_or_default(),
        };
        // PostgreSQL has no empty object out of an aggregate over nothing: NULL is "no cursor".
        let merged: RecvCursor =
            merged.map_or_else(RecvCursor::new, |v| serde_json::from_value(v).unwrap());
        assert_eq!(merged, expected, "{current:?} + {incoming:?}");
    }
}

/// Every `.sql` statement of both backends.
fn statements() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for backend in ["postgres", "embedded"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/store/{backend}/sql"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path.display().to_string(), text));
            }
        }
    }
    found
}

/// The SQL text without its `--` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn status_lists_in_sql_are_the_live_or_the_terminal_statuses() {
    let spell = |terminal: bool| {
        let names: Vec<String> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal() == terminal)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", names.join(", "))
    };
    let (live, terminal) = (spell(false), spell(true));
    let statements = statements();
    assert!(statements.len() > 20, "the statements were found");
    for (path, text) in statements {
        let code = code(&text);
        for (at, _) in code.match_indices("status IN (") {
            let list = &code[at + "status IN ".len()..];
            let list = &list[..=list.find(')').unwrap()];
            assert!(
                list == live || list == terminal,
                "{path}: {list} is neither {live} nor {terminal}"
            );
        }
    }
}

#[test]
fn the_retry_budget_is_spelled_one_way_in_sql() {
    // The retry budget (domain::jobs::TakenBack): exhausted iff attempt_count > max_retries.
    for (path, text) in statements() {
        let code = code(&text);
        for (at, _) in code.match_indices("attempt_count ") {
            let comparison: String = code[at..].chars().take_while(|&c| c != '\n').collect();
            if comparison.contains("max_retries") {
                assert!(
                    comparison.starts_with("attempt_count > max_retries")
                        || comparison.starts_with("attempt_count <= max_retries"),
                    "{path}: {comparison}"
                );
            }
        }
    }
}
