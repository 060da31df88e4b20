//! A Redis of the test's own: `redis-server` (the OS package) on a free port (and a TLS one when
//! asked), without persistence, in a directory of its own; killed when dropped. Never the
//! machine's Redis.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::certs::Issued;
use super::process::KilledOnDrop;

pub struct RedisServer {
    pub port: u16,
    /// The TLS port, when it serves TLS too.
    pub tls_port: Option<u16>,
    process: Option<KilledOnDrop>,
    directory: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(None, &[]).await
    }

    /// With `options` added to its command line (`--stream-node-max-entries 10`, …).
    pub async fn start_with_options(options: &[&str]) -> RedisServer {
        RedisServer::start_with(None, options).await
    }

    /// Serving TLS too, on `tls_port`: `certificate`, and only to clients whose certificate
    /// `client_ca` issued. The plain port stays, for the test's own connection.
    pub async fn start_tls(certificate: &Issued, client_ca: &Path) -> RedisServer {
        RedisServer::start_with(Some((certificate, client_ca)), &[]).await
    }

    async fn start_with(tls: Option<(&Issued, &Path)>, options: &[&str]) -> RedisServer {
        let port = free_port();
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory).expect("a directory for Redis");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(options)
            .arg("--dir")
            .arg(&directory);
        let tls_port = tls.map(|(certificate, client_ca)| {
            let tls_port = free_port();
            command
                .args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(&certificate.certificate)
                .arg("--tls-key-file")
                .arg(&certificate.key)
                .arg("--tls-ca-cert-file")
                .arg(client_ca)
                .args(["--tls-auth-clients", "yes"]);
            tls_port
        });
        let process = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (install it: apt-get install redis-server)");
        let server = RedisServer {
            port,
            tls_port,
            process: Some(KilledOnDrop(process)),
            directory,
        };
        let started = Instant::now();
        loop {
            let listening = server
                .tls_port
                .is_none_or(|port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
            if let (true, Ok(mut connection)) = (listening, server.try_connect().await) {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return server;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server did not start"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://` to the TLS port.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port.expect("a TLS port"))
    }

    async fn try_connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    pub async fn connection(&self) -> MultiplexedConnection {
        self.try_connect().await.expect("connect to the test Redis")
    }

    /// Kills it (a Redis that went away); it stays down.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
