//! Which file the embedded store opens (docs/configuration.md#the-embedded-file): ours has a
//! name of its own, `mesh_registry.db`, because the Go registry and its dashboard default to
//! `mcp_mesh_registry.db` in the working directory, and their auto-migration changes the tables
//! it finds there. A file an earlier mesh-registry made under that older name is still ours,
//! and is kept in use; the Go registry's file is never opened for writing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::store::namespace::{reference_found_line, reference_tables, OUR_FIRST_MIGRATION};
use crate::store::schema::HISTORY_TABLE;
use crate::store::DEFAULT_EMBEDDED_FILE;

/// The Go registry's default file, and ours before we took a name of our own.
pub(super) const REFERENCE_DEFAULT_FILE: &str = "mcp_mesh_registry.db";

/// Who made an existing SQLite file, read without writing a byte to it.
struct Found {
    /// Our migration history is in it.
    ours: bool,
    /// The Go registry's tables in it (empty when it has none).
    reference_tables: Vec<String>,
}

/// Opens read-only (no journal mode or other pragma is set), so a file that turns out not to be
/// ours is left exactly as it was. A file that is not an SQLite database is nobody's we know.
fn inspect(path: &Path) -> Found {
    let read = || -> rusqlite::Result<Found> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let ours = tables.iter().any(|t| t == HISTORY_TABLE)
            && db
                .prepare(&format!(
                    "SELECT 1 FROM {HISTORY_TABLE} WHERE version = ?1 AND name = ?2"
                ))?
                .exists((OUR_FIRST_MIGRATION.0, OUR_FIRST_MIGRATION.1))?;
        Ok(Found {
            ours,
            reference_tables: reference_tables(tables.iter().map(String::as_str)),
        })
    };
    read().unwrap_or(Found {
        ours: false,
        reference_tables: Vec::new(),
    })
}

/// The file to use when no `DATABASE_URL` is given: `mesh_registry.db`, unless only the older
/// shared name exists here and it is ours (an earlier mesh-registry made it): then that one,
/// with its data. Says so in the log when the Go registry's file is here.
pub(super) fn default_file() -> PathBuf {
    let ours = Path::new(DEFAULT_EMBEDDED_FILE);
    let shared = Path::new(REFERENCE_DEFAULT_FILE);
    if !shared.exists() {
        return ours.into();
    }
    let found = inspect(shared);
    if !found.reference_tables.is_empty() {
        tracing::info!(
            "{}",
            reference_found_line(
                &format!("the file {REFERENCE_DEFAULT_FILE}"),
                &found.reference_tables,
                &format!("the file {DEFAULT_EMBEDDED_FILE}")
            )
        );
    }
    if found.ours && !ours.exists() {
        tracing::info!(
            "using {REFERENCE_DEFAULT_FILE}, the file an earlier mesh-registry made here; the \
             default name is now {DEFAULT_EMBEDDED_FILE}, away from the Go registry's and \
             meshui's default (rename the file, with the registry stopped, to switch)"
        );
        return shared.into();
    }
    ours.into()
}

/// Refuses a file that holds the Go registry's tables and not ours: migrating it would change
/// them. The reason, for the start-up error.
pub(super) fn refuse_reference_file(path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    let found = inspect(path);
    if found.ours || found.reference_tables.is_empty() {
        return Ok(());
    }
    Err(format!(
        "it holds the Go registry's tables ({}), which mesh-registry never changes; give \
         DATABASE_URL another file (without one, mesh-registry uses {DEFAULT_EMBEDDED_FILE})",
        found.reference_tables.join(", ")
    ))
}
