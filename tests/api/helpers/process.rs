//! The registry binary as an operator starts it, for what only a process shows: its start-up
//! log, its working directory, its exit.

use std::time::Duration;

use serde_json::Value;

/// The real binary as an operator starts it: in a working directory, its log read line by line.
pub struct RegistryProcess {
    child: std::process::Child,
    pub base: String,
    http: reqwest::Client,
    /// What it logged before it listened.
    pub startup_log: Vec<String>,
    /// Kept so that the log keeps draining (a full pipe would stall the registry).
    _log: std::sync::mpsc::Receiver<String>,
}

impl RegistryProcess {
    /// Starts `mesh-registry --host 127.0.0.1 --port 0` in `directory` with `env` added (no
    /// `DATABASE_URL` unless `env` has one), and waits until it listens.
    pub fn start(directory: &std::path::Path, env: &[(&str, &str)]) -> RegistryProcess {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-registry"))
            .current_dir(directory)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env_remove("DATABASE_URL")
            .env_remove("MCP_MESH_DB_SCHEMA")
            .env_remove("RUST_LOG")
            .env("MCP_MESH_LOG_LEVEL", "INFO")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the registry");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let port = loop {
            let line = log
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the registry did not start: {seen:#?}"));
            if let Some((_, port)) = line.split_once("listening on 127.0.0.1:") {
                break port.trim().parse::<u16>().expect("port");
            }
            seen.push(line);
        };
        RegistryProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            startup_log: seen,
            _log: log,
        }
    }

    /// The start-up lines that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<&String> {
        self.startup_log
            .iter()
            .filter(|line| line.contains(text))
            .collect()
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the registry answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// SIGTERM, then waits for the graceful exit (what it flushes on the way out is out).
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM");
        self.child.wait().expect("reaped");
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed when this goes away, so a failing test leaves no process
/// behind.
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
