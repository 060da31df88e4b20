//! A Redis of the test's own: `redis-server` (the OS package) on a free port, without
//! persistence, in a directory of its own; killed when dropped. Never the machine's Redis.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::process::KilledOnDrop;

pub struct RedisServer {
    pub port: u16,
    process: Option<KilledOnDrop>,
    directory: std::path::PathBuf,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory).expect("a directory for Redis");
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&directory)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (install it: apt-get install redis-server)");
        let server = RedisServer {
            port,
            process: Some(KilledOnDrop(process)),
            directory,
        };
        let started = Instant::now();
        loop {
            if let Ok(mut connection) = server.try_connect().await {
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
