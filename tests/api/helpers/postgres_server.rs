//! The PostgreSQL server the tests run against, provisioned so that `cargo test` passes on a
//! fresh machine: `TEST_POSTGRES_URL` when it is set; else the server answering on
//! 127.0.0.1:5432; else a throwaway cluster started from the machine's PostgreSQL binaries
//! (`initdb`, `pg_ctl`, `postgres` on `PATH` or under `/usr/lib/postgresql/*/bin`); else none,
//! and the PostgreSQL tests are skipped.
//!
//! The throwaway cluster is `throwaway_cluster`'s, kept for the life of the test process.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use super::throwaway_cluster::ThrowawayCluster;

/// The server most machines with PostgreSQL already run (trust authentication assumed).
const LOCAL_SERVER_PORT: u16 = 5432;

/// The server the tests share, as `postgres://user@host:port` (no database), provisioned on first
/// use; `None` when no PostgreSQL is reachable or installed. Panics when PostgreSQL is installed
/// but a throwaway cluster cannot be started: that is a broken machine, not a skip.
pub fn server_url() -> Option<&'static str> {
    enum Server {
        Given(String),
        Throwaway(ThrowawayCluster),
        Missing,
    }
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
            return Ok(Server::Given(url));
        }
        if answers(LOCAL_SERVER_PORT) {
            return Ok(Server::Given(format!(
                "postgres://postgres@127.0.0.1:{LOCAL_SERVER_PORT}"
            )));
        }
        Ok(match ThrowawayCluster::start()? {
            Some(cluster) => Server::Throwaway(cluster),
            None => Server::Missing,
        })
    });
    match server {
        Ok(Server::Given(url)) => Some(url),
        Ok(Server::Throwaway(cluster)) => Some(cluster.url()),
        Ok(Server::Missing) => None,
        Err(reason) => panic!("cannot start a throwaway PostgreSQL for the tests: {reason}"),
    }
}

/// Whether something accepts TCP connections on this port of 127.0.0.1.
fn answers(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}
