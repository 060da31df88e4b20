//! Test harness: the real application, in-process on port 0, on a database of its own, on either
//! backend. A PostgreSQL database is cloned from a migrated template so that each test starts in
//! milliseconds and leaves nothing behind; an embedded one is a fresh SQLite file in a fresh
//! temporary directory, migrated by the registry at start and removed with the directory.
//!
//! Behaviour tests run on both backends through `on_both_backends!`; tests of what only
//! PostgreSQL has (several replicas, the fleet drain, schema reconciliation) use
//! `postgres_only!`. States the API cannot reach (a lease in the past, an exhausted retry budget)
//! are set up through the backend-neutral fixture methods of `TestApp` (`set_job`, `set_events`,
//! `set_agent`, `job_rows`, …), never through SQL in the tests.
//!
//! The parts: `database` (test databases, the template they are cloned from, and through
//! `postgres_server` the server itself, a `throwaway_cluster` when the machine runs none), `app` (the
//! registry under test and its HTTP helpers), `fixture` (the backend-neutral direct access to its
//! tables) and `wait` (waiting on conditions, never on clocks).
//!
//! `TEST_LOG=1 cargo test …` shows the registries' logs (`RUST_LOG` picks the levels); without it
//! the tests are quiet.

mod app;
mod browser;
pub mod certs;
mod database;
mod fixture;
mod otlp;
mod postgres_server;
mod process;
mod redis_server;
pub mod throwaway_cluster;
mod wait;

pub use app::{assert_error, now, spawn_app, spawn_app_with, start_app, test_config, TestApp};
pub use browser::browser;
pub use database::{connect, database_url, TestDatabase};
pub use fixture::Set;
pub use mesh_registry::store::Backend;
pub use otlp::{attribute as otlp_attribute, GrpcCollector, OtlpReceiver};
pub use process::{KilledOnDrop, RegistryProcess};
pub use redis_server::RedisServer;
pub use wait::{parked, stays_for, within, Parked};

/// Runs each named test once per backend, as `<name>::postgres` and `<name>::embedded`:
///
/// ```ignore
/// on_both_backends!(claim_takes_the_oldest_job);
/// async fn claim_takes_the_oldest_job(backend: Backend) {
///     let app = spawn_app(backend).await;
///     …
/// }
/// ```
///
/// The test is an ordinary `async fn` taking the backend (so rustfmt and the IDE see it as
/// code, and it is compiled once); attributes for the generated tests (`#[ignore]`, …) go before
/// the name: `on_both_backends!(#[ignore] name)`. A test fn nobody registers is dead code, which
/// clippy refuses.
macro_rules! on_both_backends {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([postgres => Postgres, embedded => Embedded] $($tests)*);
    };
}

/// Like `on_both_backends!`, for tests of what only PostgreSQL has (say why next to the test):
/// the test is `<name>::postgres`, so `cargo test postgres` / `cargo test embedded` still split
/// the suite by backend.
macro_rules! postgres_only {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([postgres => Postgres] $($tests)*);
    };
}

/// Like `on_both_backends!`, for tests of what only the embedded file has (`<name>::embedded`).
macro_rules! embedded_only {
    ($($tests:tt)*) => {
        $crate::helpers::on_backends!([embedded => Embedded] $($tests)*);
    };
}

/// The expansion behind the three above: a module per test, one `#[actix_web::test]` per
/// backend in it, calling the test fn of the same name with that backend (or passing at once
/// when the machine has no such backend, see `unavailable`).
macro_rules! on_backends {
    (@test [$($variant:ident => $kind:ident),+] $attrs:tt $name:ident) => {
        mod $name {
            $($crate::helpers::on_backends!(@variant $variant $kind $attrs $name);)+
        }
    };
    (@variant $variant:ident $kind:ident [$(#[$attr:meta])*] $name:ident) => {
        #[actix_web::test]
        $(#[$attr])*
        async fn $variant() {
            if $crate::helpers::unavailable($crate::helpers::Backend::$kind) {
                return;
            }
            super::$name($crate::helpers::Backend::$kind).await
        }
    };
    ($variants:tt $($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $($crate::helpers::on_backends!(@test $variants [$(#[$attr])*] $name);)+
    };
}

/// Runs an in-test `HttpServer` on a free port of 127.0.0.1, over TLS when `$tls` is
/// `Some(rustls::ServerConfig)`: `(scheme, port, handle)`. A macro because the server's type
/// parameters carry actix's service bounds, which a function would have to spell out again.
macro_rules! serve_in_test {
    ($server:expr, $tls:expr) => {{
        let server = $server;
        let (server, scheme) = match $tls {
            None => (server.bind(("127.0.0.1", 0)), "http"),
            Some(tls) => (server.bind_rustls_0_23(("127.0.0.1", 0), tls), "https"),
        };
        let server = server.expect("bind an in-test server");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (scheme, port, handle)
    }};
}

pub(crate) use {embedded_only, on_backends, on_both_backends, postgres_only, serve_in_test};

/// Whether the tests of this backend cannot run here: only PostgreSQL can be missing, when no
/// server is reachable and none is installed. Says so once, in one line on the terminal (past
/// the harness's output capture), with how to enable them.
pub fn unavailable(backend: Backend) -> bool {
    static TOLD: std::sync::Once = std::sync::Once::new();
    let missing = matches!(backend, Backend::Postgres) && postgres_server::server_url().is_none();
    if missing {
        TOLD.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL half of the tests skipped: no server on 127.0.0.1:5432 and no \
                 PostgreSQL installed (install it, e.g. apt-get install postgresql, or set \
                 TEST_POSTGRES_URL)"
            );
        });
    }
    missing
}

/// With `TEST_LOG` set, the registries' logs go to the test's output (shown for a failing test,
/// or for all with `--nocapture`); `RUST_LOG` picks the levels, INFO by default. Without it,
/// nothing is logged.
fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,actix_server=warn,refinery_core=warn")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init();
    });
}
