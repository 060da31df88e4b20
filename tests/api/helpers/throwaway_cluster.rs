//! A PostgreSQL cluster of the test process's own, started from the machine's binaries
//! (`initdb`, `pg_ctl`, `postgres` on `PATH` or under `/usr/lib/postgresql/*/bin`).
//!
//! It lives in a temporary directory, listens on a free port of 127.0.0.1 only (its unix socket
//! stays inside that directory), trusts every local connection, and is stopped and removed when
//! the test process ends, however it ends: a watchdog process waits for the end of a pipe only
//! this process holds (the kernel closes it on exit, panic, abort or SIGKILL alike, and the test
//! harness runs no destructors of statics), then stops the server and deletes the directory.
//! `initdb` refuses to run as root, so under root (as in CI) the cluster runs as the unprivileged
//! `postgres` user (`nobody` when there is none).
//!
//! Shared by the API tests and the chaos harness, which includes this file with `#[path]`.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};

/// A PostgreSQL cluster of this process's own, removed when the process ends.
pub struct ThrowawayCluster {
    /// `postgres://postgres@127.0.0.1:<port>`.
    url: String,
    /// Holds the data directory, the socket directory and the server log.
    directory: PathBuf,
    /// The directory of `pg_ctl` and `postgres`.
    binaries: PathBuf,
    /// The unprivileged user the server runs as when this process is root.
    run_as: Option<User>,
    /// The write end of the watchdog's pipe: it is closed, and the cluster removed, when this
    /// is dropped or the process ends.
    _watchdog: ChildStdin,
}

struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster; `Ok(None)` when no PostgreSQL binaries are installed.
    pub fn start() -> Result<Option<ThrowawayCluster>, String> {
        let Some(binaries) = binaries() else {
            return Ok(None);
        };
        let run_as = if running_as_root()? {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-postgres-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let sockets = directory.join("socket");
        std::fs::create_dir_all(&sockets)
            .map_err(|e| format!("create {}: {e}", sockets.display()))?;
        if let Some(user) = &run_as {
            for path in [&directory, &sockets] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(|e| format!("hand {} to {}: {e}", path.display(), user.name))?;
            }
        }
        // The watchdog first, so that a failure below leaves nothing behind either.
        let watchdog = watchdog(&binaries, &directory, run_as.as_ref())?;
        let mut cluster = ThrowawayCluster {
            url: String::new(),
            directory,
            binaries,
            run_as,
            _watchdog: watchdog,
        };
        cluster.init()?;
        // A free port can be taken by someone else before the server binds it: try again.
        let mut attempts = 0;
        let port = loop {
            attempts += 1;
            let port = free_port()?;
            cluster.configure(&[("port", port.to_string())])?;
            match cluster.pg_ctl_start() {
                Ok(()) => break port,
                Err(reason) if attempts < 3 && reason.contains("already in use") => continue,
                Err(reason) => return Err(reason),
            }
        };
        cluster.url = format!("postgres://postgres@127.0.0.1:{port}");
        Ok(Some(cluster))
    }

    /// `postgres://postgres@127.0.0.1:<port>` (no database): trust authentication.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves TLS with `certificate` and `key` (PEM files), checks client certificates against
    /// `client_ca`, and replaces `pg_hba.conf` with `hba` (the local socket stays trusted);
    /// restarts the server so that all of it holds for the next connection.
    #[allow(dead_code, reason = "only the API tests' TLS cluster serves TLS")]
    pub fn serve_tls(
        &self,
        certificate: &Path,
        key: &Path,
        client_ca: &Path,
        hba: &str,
    ) -> Result<(), String> {
        let data = self.data();
        for (from, to) in [
            (certificate, "server.crt"),
            (key, "server.key"),
            (client_ca, "client-ca.crt"),
        ] {
            let to = data.join(to);
            std::fs::copy(from, &to).map_err(|e| format!("copy {}: {e}", from.display()))?;
            // The server refuses a key that others may read.
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| format!("chmod {}: {e}", to.display()))?;
            if let Some(user) = &self.run_as {
                std::os::unix::fs::chown(&to, Some(user.uid), Some(user.gid))
                    .map_err(|e| format!("hand {} to {}: {e}", to.display(), user.name))?;
            }
        }
        let hba_file = data.join("pg_hba.conf");
        std::fs::write(&hba_file, format!("local all all trust\n{hba}\n"))
            .map_err(|e| format!("write {}: {e}", hba_file.display()))?;
        self.configure(&[
            ("ssl", "on".into()),
            ("ssl_cert_file", "'server.crt'".into()),
            ("ssl_key_file", "'server.key'".into()),
            ("ssl_ca_file", "'client-ca.crt'".into()),
        ])?;
        self.restart()
    }

    /// Stops the server (fast: sessions are cut, as a real restart does) and starts it again.
    #[allow(
        dead_code,
        reason = "the chaos harness restarts its server, the API tests its TLS"
    )]
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])?;
        self.pg_ctl_start()
    }

    fn init(&self) -> Result<(), String> {
        let data = self.data();
        run(self
            .command(&self.binaries.join("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", "postgres", "--auth", "trust"])
            .args(["--encoding", "UTF8", "--locale", "C"]))?;
        let sockets = self.directory.join("socket");
        self.configure(&[
            ("listen_addresses", "'127.0.0.1'".into()),
            (
                "unix_socket_directories",
                format!("'{}'", sockets.display()),
            ),
            // Tests run many registries at once, each with a pool, a fixture and replicas.
            ("max_connections", "300".into()),
            // A throwaway cluster need not survive a machine crash; clean restarts still flush.
            ("fsync", "off".into()),
            ("full_page_writes", "off".into()),
        ])
    }

    /// Appends settings to `postgresql.conf` (a later line wins over an earlier one).
    fn configure(&self, settings: &[(&str, String)]) -> Result<(), String> {
        use std::io::Write;
        let path = self.data().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        for (name, value) in settings {
            writeln!(file, "{name} = {value}").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.directory.join("postgres.log");
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log.display().to_string()])
            .map_err(|reason| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                format!("{reason}\nserver log:\n{log}")
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(self
            .command(&self.binaries.join("pg_ctl"))
            .arg("--pgdata")
            .arg(self.data())
            .args(args))
    }

    fn data(&self) -> PathBuf {
        self.directory.join("data")
    }

    /// `program`, as the unprivileged user when this process is root, in the cluster's directory.
    fn command(&self, program: &Path) -> Command {
        let mut command = as_user(self.run_as.as_ref(), program);
        command.current_dir(&self.directory);
        command
    }
}

/// Runs `program` as `user` (through `setpriv`, which execs without a login session), or as
/// this process's user.
fn as_user(user: Option<&User>, program: &Path) -> Command {
    match user {
        None => Command::new(program),
        Some(user) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(program);
            command
        }
    }
}

/// Starts the process that removes the cluster once the returned pipe end is closed: it reads
/// its stdin to the end, stops the server at once and deletes the directory. It runs in a
/// process group of its own, so that a Ctrl-C aimed at the tests does not stop it first.
fn watchdog(binaries: &Path, directory: &Path, user: Option<&User>) -> Result<ChildStdin, String> {
    const SCRIPT: &str = r#"cat >/dev/null
"$1/pg_ctl" --pgdata "$2/data" stop -m immediate -w >/dev/null 2>&1
rm -rf "$2""#;
    let mut child = as_user(user, Path::new("sh"))
        .args(["-c", SCRIPT, "postgres-watchdog"])
        .arg(binaries)
        .arg(directory)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the cluster's watchdog: {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the watchdog has no stdin".to_owned())
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: on `PATH` first, else the newest
/// version under `/usr/lib/postgresql` (where Debian installs them off `PATH`).
fn binaries() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    on_path
        .into_iter()
        .chain(versions.into_iter().map(|(_, bin)| bin))
        .find(|dir| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|binary| dir.join(binary).is_file())
        })
        // Through symlinks (as /usr/local/bin may hold), to where the server's files are.
        .and_then(|dir| Some(dir.join("initdb").canonicalize().ok()?.parent()?.to_owned()))
}

fn running_as_root() -> Result<bool, String> {
    Ok(id(&["-u"])? == 0)
}

fn unprivileged_user() -> Result<User, String> {
    ["postgres", "nobody"]
        .into_iter()
        .find_map(|name| {
            Some(User {
                name: name.to_owned(),
                uid: id(&["-u", name]).ok()?,
                gid: id(&["-g", name]).ok()?,
            })
        })
        .ok_or_else(|| "running as root, and neither a postgres nor a nobody user exists".into())
}

/// `id <args>` as a number.
fn id(args: &[&str]) -> Result<u32, String> {
    let output = Command::new("id")
        .args(args)
        .output()
        .map_err(|e| format!("id: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("id {args:?}: {}", String::from_utf8_lossy(&output.stderr)))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("find a free port: {e}"))
}

/// Runs a command to completion; its output is the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
