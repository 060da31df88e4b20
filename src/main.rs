use std::process::ExitCode;

use clap::Parser;
use mesh_registry::cli::{Cli, Command};
use mesh_registry::{migrate, operator, startup};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Serve(args)) => startup::serve(args),
        None => startup::serve(&cli.serve),
        Some(Command::Registry {
            command,
            connection,
        }) => operator::registry(command, connection),
        Some(Command::Migrate {
            command,
            database_url,
            db_schema,
        }) => migrate::run(command.clone(), database_url.as_deref(), db_schema),
        Some(Command::Job {
            command,
            connection,
        }) => operator::job(command, connection),
    }
}
