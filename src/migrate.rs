//! `mesh-registry migrate status|up|prune|import-reference`: the operator's view of schema
//! reconciliation, and the switch from the Go registry. `prune --yes` is the only path that
//! drops anything.

use std::process::ExitCode;

use crate::cli::MigrateCommand;
use crate::store::{
    Backend, DbSchema, ImportOutcome, ImportReport, SchemaReport, Store, StoreError,
};

pub fn run(command: MigrateCommand, database_url: Option<&str>, schema: &DbSchema) -> ExitCode {
    // No URL: the same file as `serve` picks in the working directory.
    let database_url = database_url.unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, database_url, schema)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("Error: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(
    command: MigrateCommand,
    database_url: &str,
    schema: &DbSchema,
) -> Result<(), String> {
    let store = Store::open(database_url, schema).map_err(|e| e.to_string())?;
    let fail = |error| store.connect_error(error).to_string();
    match command {
        MigrateCommand::Status => {
            let report = store.schema_report().await.map_err(fail)?;
            let target = match store.backend() {
                Backend::Postgres => format!("{}, schema {schema}", store.target()),
                Backend::Embedded => store.target().to_owned(),
            };
            print_status(&target, &report);
        }
        MigrateCommand::Up { to } => {
            let applied = store.migrate_up(to).await.map_err(fail)?;
            if applied.is_empty() {
                println!("Nothing to apply: {} is up to date.", store.target());
            }
            for migration in applied {
                println!("Applied {migration}");
            }
        }
        MigrateCommand::Prune { yes: false } => {
            let report = store.schema_report().await.map_err(fail)?;
            if report.unknown.is_empty() {
                println!("Nothing to prune: every piece of the schema is known to this binary.");
                return Ok(());
            }
            println!("`migrate prune --yes` would drop, from {}:", store.target());
            for piece in &report.unknown {
                println!("  {piece}");
            }
            println!("Nothing was dropped. Data in those columns and tables is lost for good once dropped.");
        }
        MigrateCommand::ImportReference { force, from } => {
            let places = match store.backend() {
                Backend::Postgres => ImportPlaces {
                    source: format!(
                        "its tables (jobs, job_events in schema public) in {}",
                        store.target()
                    ),
                    into: format!("{}, schema {schema}", store.target()),
                },
                Backend::Embedded => ImportPlaces {
                    source: format!(
                        "its SQLite file {}",
                        from.as_deref()
                            .unwrap_or(std::path::Path::new("mcp_mesh_registry.db"))
                            .display()
                    ),
                    into: store.target().to_owned(),
                },
            };
            let outcome =
                store
                    .import_reference(force, from)
                    .await
                    .map_err(|error| match error {
                        StoreError::Unsupported(why) => why.to_owned(),
                        error => fail(error),
                    })?;
            return report_import(&places, outcome);
        }
        MigrateCommand::Prune { yes: true } => {
            let dropped = store.prune().await.map_err(fail)?;
            if dropped.is_empty() {
                println!("Nothing to prune.");
            }
            for piece in dropped {
                println!("Dropped {piece}");
            }
        }
    }
    Ok(())
}

/// Where an import reads from and writes to, as the operator is told.
struct ImportPlaces {
    source: String,
    into: String,
}

fn report_import(places: &ImportPlaces, outcome: ImportOutcome) -> Result<(), String> {
    match outcome {
        ImportOutcome::NoReference => Err(format!(
            "no tables of the Go registry to import: looked for {}",
            places.source
        )),
        ImportOutcome::LiveClaims(claims) => {
            let listed: Vec<String> = claims
                .iter()
                .map(|c| {
                    format!(
                        "  {} owned by {} until {}",
                        c.job_id, c.owner_instance_id, c.lease_expires_at
                    )
                })
                .collect();
            Err(format!(
                "the Go registry still holds {} live claim(s); drain it first \
                 (`meshctl registry drain --wait`), stop it, then import again (or pass --force \
                 to carry the claims over: their owners' writes to the Go registry after now \
                 are lost):\n{}",
                claims.len(),
                listed.join("\n")
            ))
        }
        ImportOutcome::Imported(report) => {
            print_import(places, &report);
            Ok(())
        }
    }
}

fn print_import(places: &ImportPlaces, report: &ImportReport) {
    let by_status: Vec<String> = report
        .jobs_by_status
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    let skipped = report.reference_jobs - report.jobs();
    println!(
        "Imported from the Go registry ({}) into {}:",
        places.source, places.into
    );
    match by_status.is_empty() {
        true => println!("  jobs:   0"),
        false => println!("  jobs:   {} ({})", report.jobs(), by_status.join(", ")),
    }
    println!("  events: {}", report.events);
    println!("  already imported, skipped: {skipped} job(s)");
    for claim in &report.forced_claims {
        println!(
            "  live claim carried over (--force): {} owned by {} until {}",
            claim.job_id, claim.owner_instance_id, claim.lease_expires_at
        );
    }
    println!("The Go registry's tables were only read; they are unchanged.");
}

fn print_status(target: &str, report: &SchemaReport) {
    let list = |migrations: &[&(i64, String)]| -> String {
        match migrations {
            [] => "none".to_owned(),
            _ => migrations
                .iter()
                .map(|(version, name)| format!("V{version}__{name}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    };
    let known: Vec<_> = report.known.iter().collect();
    let applied: Vec<_> = report.applied.iter().collect();
    println!("Database:              {target}");
    println!("Known to this binary:  {}", list(&known));
    println!("Applied:               {}", list(&applied));
    println!("Pending:               {}", list(&report.pending()));
    println!("Unknown to this binary: {}", list(&report.ahead()));
    let pending = !report.pending().is_empty();
    let verdict = match (
        pending,
        report.missing.is_empty(),
        report.ahead().is_empty(),
    ) {
        (true, _, _) => "behind: the registry applies the pending migrations when it starts",
        (false, false, _) => "MISSING pieces this binary needs: it will refuse to start",
        (false, true, false) => {
            "ahead of this binary: it runs with what it knows and drops nothing"
        }
        (false, true, true) => "up to date",
    };
    println!("Schema:                {verdict}");
    if !pending {
        for piece in &report.missing {
            println!("  missing: {piece}");
        }
    }
    for piece in &report.unknown {
        println!("  not used by this binary: {piece}");
    }
    for note in &report.notes {
        println!("Note: {note}");
    }
}
