//! `migrate import-reference` on the embedded store (docs/operations.md#switching-from-go): the
//! Go registry's jobs and events, in its SQLite file, copied into ours in one transaction. Its
//! file is attached read-only (`mode=ro`), so not a byte of it changes; the column mapping is in
//! sql/import_reference_jobs.sql and sql/import_reference_events.sql.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{named_params, Connection};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use super::now_micros;
use crate::store::namespace::reference_tables;
use crate::store::{ImportOutcome, ImportReport, ReferenceClaim, StoreError};

/// Copies the jobs of the Go registry's SQLite `file` that we do not hold yet (see the module
/// documentation). Refuses, copying nothing, while it still holds live claims, unless `force`.
pub(super) fn import_reference_file(
    db: &mut Connection,
    file: &Path,
    force: bool,
) -> Result<ImportOutcome, StoreError> {
    if !file.is_file() {
        return Ok(ImportOutcome::NoReference);
    }
    db.create_scalar_function(
        "reference_time",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        reference_time,
    )?;
    db.execute("ATTACH DATABASE ?1 AS reference", [read_only_uri(file)])?;
    let outcome = copy(db, force);
    db.execute_batch("DETACH DATABASE reference")?;
    outcome
}

fn copy(db: &mut Connection, force: bool) -> Result<ImportOutcome, StoreError> {
    // One transaction, so the live-claim check, the counts and the copy see one state.
    let tx = db.transaction()?;
    let tables = tx
        .prepare("SELECT name FROM reference.sqlite_master WHERE type = 'table'")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    // The Go registry's tables, told apart from an older file of ours by the tables only it
    // makes; both the jobs and their events must be there.
    let reference = reference_tables(tables.iter().map(String::as_str));
    if !["jobs", "job_events"]
        .iter()
        .all(|table| reference.iter().any(|found| found == table))
    {
        return Ok(ImportOutcome::NoReference);
    }
    let claims = tx
        .prepare(include_str!("sql/reference_live_claims.sql"))?
        .query_map(named_params! {":now": now_micros()}, |row| {
            Ok(ReferenceClaim {
                job_id: row.get("job_id")?,
                owner_instance_id: row.get("owner_instance_id")?,
                lease_expires_at: row.get("lease_expires_at")?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if !claims.is_empty() && !force {
        return Ok(ImportOutcome::LiveClaims(claims));
    }
    let reference_jobs: i64 =
        tx.query_row("SELECT count(*) FROM reference.jobs", [], |row| row.get(0))?;
    let jobs_by_status = tx
        .prepare(include_str!("sql/reference_jobs_to_import.sql"))?
        .query_map([], |row| Ok((row.get("status")?, row.get("n")?)))?
        .collect::<Result<BTreeMap<String, i64>, _>>()?;
    let events = tx.execute(include_str!("sql/import_reference_events.sql"), [])?;
    tx.execute(include_str!("sql/import_reference_jobs.sql"), [])?;
    tx.commit()?;
    Ok(ImportOutcome::Imported(ImportReport {
        reference_jobs,
        jobs_by_status,
        events: events as i64,
        forced_claims: claims,
    }))
}

/// `file:` URI of `path`, opened read-only: SQLite then never writes the Go registry's file.
fn read_only_uri(path: &Path) -> String {
    let path = path.to_string_lossy();
    let escaped = path
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    format!("file:{escaped}?mode=ro")
}

/// `reference_time(t)`: a timestamp as the Go registry stores it in SQLite (text such as
/// `2026-11-28 13:04:20.183206331+00:00`, or RFC 3339), as we store it: microseconds since the
/// Unix epoch. NULL stays NULL; anything else is an error that names the value.
fn reference_time(context: &Context) -> rusqlite::Result<Value> {
    let text = match context.get_raw(0) {
        ValueRef::Null => return Ok(Value::Null),
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
        other => return Err(unreadable(format!("{other:?}"))),
    };
    let go_format = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory]:[offset_minute]"
    );
    let time = OffsetDateTime::parse(&text, go_format)
        .or_else(|_| OffsetDateTime::parse(&text, &Rfc3339))
        .map_err(|_| unreadable(text))?;
    Ok(Value::Integer((time.unix_timestamp_nanos() / 1_000) as i64))
}

fn unreadable(value: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(
        format!("the Go registry's file holds a timestamp we cannot read: {value}").into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> rusqlite::Result<Value> {
        let db = Connection::open_in_memory()?;
        db.create_scalar_function(
            "reference_time",
            1,
            FunctionFlags::SQLITE_UTF8,
            reference_time,
        )?;
        db.query_row("SELECT reference_time(?1)", [text], |row| row.get(0))
    }

    #[test]
    fn the_go_registrys_timestamps_are_read_to_the_microsecond() {
        assert_eq!(
            micros("2026-11-28 13:04:20.183206331+00:00").unwrap(),
            Value::Integer(1_795_871_060_183_206)
        );
        assert_eq!(
            micros("2026-11-28 13:09:25.39050094+00:00").unwrap(),
            Value::Integer(1_795_871_365_390_500)
        );
        assert_eq!(
            micros("2026-11-28 15:04:20+02:00").unwrap(),
            Value::Integer(1_795_871_060_000_000),
            "an offset is honoured"
        );
        assert_eq!(
            micros("2026-11-28T13:04:20Z").unwrap(),
            Value::Integer(1_795_871_060_000_000)
        );
        assert!(micros("yesterday").is_err());
    }

    #[test]
    fn the_uri_keeps_odd_paths_apart_from_its_query() {
        assert_eq!(
            read_only_uri(Path::new("/data/a?b#c%d.db")),
            "file:/data/a%3fb%23c%25d.db?mode=ro"
        );
    }
}
