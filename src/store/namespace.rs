//! Our namespace in a database that other tools share (docs/operations.md#sharing-a-database):
//! the PostgreSQL schema that holds every object of ours, and how the Go registry's tables and
//! an earlier mesh-registry's layout are recognised, so that we never take either for our own.

use std::fmt;
use std::sync::Arc;

/// The schema that holds our tables, functions and migration history unless told otherwise.
pub const DEFAULT_DB_SCHEMA: &str = "mesh_registry";

/// PostgreSQL's identifier limit (63 bytes) less the longest channel suffix (`_events`).
const MAX_SCHEMA_BYTES: usize = 63 - "_events".len();

/// The PostgreSQL schema of ours (`--db-schema`): lowercase letters, digits and underscores,
/// starting with a letter or an underscore, so that it is written into statements without
/// quoting and means the same everywhere; at most 56 bytes, so that it also names our
/// notification channels (`<schema>_events`) within PostgreSQL's 63-byte identifier limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSchema(Arc<str>);

impl DbSchema {
    /// Checks a name as `--db-schema` / `MCP_MESH_DB_SCHEMA` gives it (empty: the default, as
    /// a deployment template renders an unset value); the error says why not.
    pub fn parse(name: &str) -> Result<DbSchema, String> {
        if name.is_empty() {
            return Ok(DbSchema::default());
        }
        let valid_bytes = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let starts_well = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        if !(valid_bytes && starts_well && name.len() <= MAX_SCHEMA_BYTES) {
            return Err(format!(
                "{name:?} is not a schema name: use 1 to {MAX_SCHEMA_BYTES} lowercase letters, \
                 digits and underscores, starting with a letter or an underscore"
            ));
        }
        // `public` is where the Go registry and its dashboard create their tables;
        // `pg_*` and `information_schema` belong to PostgreSQL.
        if name == "public" || name == "information_schema" || name.starts_with("pg_") {
            return Err(format!(
                "{name:?} cannot hold mesh-registry's tables: it is {}",
                if name == "public" {
                    "shared with the Go registry and its dashboard, which change the tables \
                     they find there"
                } else {
                    "reserved by PostgreSQL"
                }
            ));
        }
        Ok(DbSchema(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DbSchema {
    fn default() -> DbSchema {
        DbSchema(DEFAULT_DB_SCHEMA.into())
    }
}

impl fmt::Display for DbSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the Go registry (and `meshui`, which shares its model) keeps its tables on PostgreSQL.
pub(super) const REFERENCE_SCHEMA: &str = "public";

/// The Go registry's tables (its ent model). `agents`, `jobs` and `job_events` are names we
/// use too; the others are its own, and any of them marks a database it has used.
pub(super) const REFERENCE_TABLES: &[&str] = &[
    "agents",
    "capabilities",
    "dependency_resolutions",
    "jobs",
    "job_events",
    "llm_provider_resolutions",
    "llm_tool_resolutions",
    "registry_events",
    "schema_entries",
    "ent_types",
];
const SHARED_TABLE_NAMES: &[&str] = &["agents", "jobs", "job_events"];

/// The reference's tables among `tables`, when they show that the Go registry (or `meshui`)
/// has used the database: at least one of the tables only it creates is there.
pub(super) fn reference_tables<'a>(tables: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let found: Vec<String> = tables
        .into_iter()
        .filter(|table| REFERENCE_TABLES.contains(table))
        .map(str::to_owned)
        .collect();
    match found
        .iter()
        .any(|table| !SHARED_TABLE_NAMES.contains(&table.as_str()))
    {
        true => found,
        false => Vec::new(),
    }
}

/// The first migration every mesh-registry applies: a history that records it under this name
/// is ours (the Go registry keeps no refinery history).
pub(super) const OUR_FIRST_MIGRATION: (i64, &str) = (1, "jobs_and_events");

/// The job rules that migration V5 defines as SQL functions, which move with our tables.
pub(super) const RULE_FUNCTIONS: &[&str] = &["job_lease_window", "merged_recv_cursor"];

/// The one line that says the Go registry's tables were found, and that they stay as they are.
pub(super) fn reference_found_line(place: &str, tables: &[String], ours: &str) -> String {
    format!(
        "found the Go registry's tables in {place} ({}); mesh-registry never reads or changes \
         them and keeps its own in {ours}",
        tables.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["mesh_registry", "_m", "a1", &"x".repeat(56)] {
            assert_eq!(DbSchema::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(DbSchema::parse("").unwrap(), DbSchema::default());
        for bad in [
            "Mesh",
            "1mesh",
            "mesh-registry",
            "mesh registry",
            "me\"sh",
            "é",
            &"x".repeat(57),
            "public",
            "pg_mesh",
            "information_schema",
        ] {
            let error = DbSchema::parse(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn the_reference_is_told_by_a_table_only_it_creates() {
        assert!(reference_tables(["agents", "jobs", "job_events"]).is_empty());
        assert_eq!(
            reference_tables(["jobs", "capabilities", "mine"]),
            vec!["jobs".to_owned(), "capabilities".to_owned()]
        );
    }
}
