//! The embedded backend: one SQLite file, one process, no server to install.
//!
//! One thread owns the connection and runs every call; calls that arrive together share one
//! transaction (group commit), each inside a savepoint of its own so that a failing call undoes
//! only itself. A caller is answered only after the transaction committed and the file's WAL
//! was flushed to disk (fdatasync): an acknowledged write survives a crash, a kill -9 or a
//! power cut. Because calls run one at a time, a call may read a row and then write it: nothing
//! can come between the two.
//!
//! The flush is pipelined: SQLite commits without waiting for the disk (`synchronous =
//! NORMAL`, which in WAL mode keeps the file consistent and syncs at checkpoints), and a second
//! thread (`syncer`) flushes the WAL and then answers the batch's callers, while the store
//! thread already runs the next batch. Every answer, reads included, goes out after a flush
//! that covers its batch and every batch before it, so nobody ever sees a write that a power cut
//! could still take back.
//!
//! The file is locked for the life of the store: a second registry on it refuses to start
//! instead of corrupting the first one's view. Cross-replica features (the fleet-wide drain,
//! LISTEN/NOTIFY) do not exist here and say so.

mod admin;
mod agents;
mod events;
mod file;
mod import;
mod jobs;
mod schema;
mod sweep;
mod syncer;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Backend, ConnectError, Storage, StoreError};
use crate::domain::jobs::lease_window;
use crate::wire::{RawJson, Timestamp};

/// Calls waiting for the store thread, at most; past it callers wait (back-pressure).
const QUEUE: usize = 4096;
/// Calls sharing one transaction, at most.
const BATCH_MAX: usize = 128;
/// How long a statement waits for a lock held by another connection (a test fixture or an
/// operator's `sqlite3` shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection: more than the backend has (`sql/*.sql`), so every
/// statement is parsed once.
const STATEMENT_CACHE: usize = 64;

/// What a call did inside the shared transaction: whether to keep its writes, and how to
/// answer its caller once the transaction's fate is known.
struct Settled {
    keep: bool,
    answer: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// A call that runs inside a batch's transaction.
type SharedCall = Box<dyn FnOnce(&Connection) -> Settled + Send>;

enum Work {
    Shared(SharedCall),
    /// Runs alone, outside any transaction (schema changes manage their own).
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the file and release its lock, then answer.
    Close(oneshot::Sender<()>),
}

pub(in crate::store) struct EmbeddedStore {
    /// The file's path, for messages.
    target: String,
    work: mpsc::Sender<Work>,
}

impl EmbeddedStore {
    /// Opens (creating it if needed) and locks the file named by the URL: a plain path,
    /// `sqlite://path`, or nothing for `mesh_registry.db` in the working directory (see
    /// `file`). The Go registry's file is refused.
    pub(in crate::store) fn open(database_url: &str) -> Result<EmbeddedStore, ConnectError> {
        let path = file_path(database_url)?;
        let target = path.display().to_string();
        let file_error = |reason: String| ConnectError::File {
            target: target.clone(),
            reason,
        };
        file::refuse_reference_file(&path).map_err(file_error)?;
        // The lock is on the database file itself (flock, which SQLite's own fcntl locks do not
        // touch), held by the store thread until the connection is closed.
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| file_error(e.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ConnectError::Locked {
                    target: target.clone(),
                })
            }
            Err(TryLockError::Error(error)) => return Err(file_error(error.to_string())),
        }
        let connection = connect(&path).map_err(|e| file_error(e.to_string()))?;
        let syncer = syncer::Syncer::start(&path)
            .map_err(|e| file_error(format!("cannot start the syncer thread: {e}")))?;
        let (work, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("mesh-registry-store".into())
            .spawn(move || serve(connection, queue, lock, syncer))
            .map_err(|e| file_error(format!("cannot start the store thread: {e}")))?;
        Ok(EmbeddedStore { target, work })
    }

    /// Runs `call` on the store thread, inside the shared transaction; answers after commit.
    /// An error from `call` undoes what it wrote and nothing else.
    async fn run<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work = Work::Shared(Box::new(move |connection| {
            let outcome = call(connection);
            Settled {
                keep: outcome.is_ok(),
                answer: Box::new(move |committed| {
                    let _ = reply.send(match committed {
                        Ok(()) => outcome,
                        Err(error) => Err(StoreError::Batch(error)),
                    });
                }),
            }
        }));
        self.submit(work, answer).await?
    }

    /// Runs `call` on the store thread with the connection to itself (schema changes).
    async fn run_alone<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work = Work::Alone(Box::new(move |connection| {
            let _ = reply.send(call(connection));
        }));
        self.submit(work, answer).await?
    }

    /// Ends the store thread: what is queued before it still runs; the file is closed and
    /// unlocked before this returns.
    async fn shut_down(&self) {
        let (done, closed) = oneshot::channel();
        if self.work.send(Work::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    async fn submit<T>(&self, work: Work, answer: oneshot::Receiver<T>) -> Result<T, StoreError> {
        let gone = || StoreError::Batch("the embedded store has stopped".into());
        self.work.send(work).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

impl Storage for EmbeddedStore {
    fn alive(&self) -> bool {
        !self.work.is_closed()
    }

    fn backend(&self) -> Backend {
        Backend::Embedded
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn connect_error(&self, error: StoreError) -> ConnectError {
        ConnectError::Schema {
            target: self.target.clone(),
            reason: error.to_string(),
        }
    }
}

/// The file a URL names.
fn file_path(database_url: &str) -> Result<PathBuf, ConnectError> {
    let path = database_url
        .strip_prefix("sqlite://")
        .unwrap_or(database_url)
        .trim();
    if path.contains("://") {
        return Err(ConnectError::InvalidUrl(format!(
            "{:?} is neither a postgres:// or postgresql:// URL (lowercase) nor a database file \
             (a path or sqlite://path)",
            super::redact_url(database_url)
        )));
    }
    // A libpq key/value string would otherwise become a file of that name.
    let key_value = path.split_whitespace().any(|word| {
        [
            "host=",
            "hostaddr=",
            "dbname=",
            "user=",
            "password=",
            "port=",
            "sslmode=",
        ]
        .iter()
        .any(|key| word.to_ascii_lowercase().starts_with(key))
    });
    if key_value {
        return Err(ConnectError::InvalidUrl(format!(
            "{:?} looks like a key=value connection string; give a postgres:// URL instead",
            super::redact_url(database_url)
        )));
    }
    Ok(match path.is_empty() {
        true => file::default_file(),
        false => PathBuf::from(path),
    })
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (an operator's shell) never block the registry. NORMAL: a commit does not
    // wait for the disk; the syncer flushes the WAL before anyone is told it happened.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    register_rules(&connection)?;
    Ok(connection)
}

/// The rules that statements evaluate row by row, registered on the connection so that the SQL
/// calls the domain's one definition instead of restating it.
fn register_rules(connection: &Connection) -> rusqlite::Result<()> {
    // job_lease_window(max_duration): the lease window of the row's job, in microseconds (the
    // file's unit of time), for statements that pick their row themselves (claim_next.sql).
    connection.create_scalar_function(
        "job_lease_window",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| Ok(duration_micros(lease_window(context.get(0)?))),
    )
}

/// The store thread: batches of shared calls in one transaction each, lone calls in between.
/// Ends on `Close` or when every store handle is gone; the lock is released after the
/// connection closed.
fn serve(
    mut connection: Connection,
    mut queue: mpsc::Receiver<Work>,
    lock: File,
    syncer: syncer::Syncer,
) {
    let mut closed = None;
    let mut next = queue.blocking_recv();
    while let Some(first) = next.take() {
        let mut batch = Vec::new();
        let mut pending = Some(first);
        while let Some(work) = pending.take() {
            match work {
                Work::Shared(call) => batch.push(call),
                Work::Alone(call) => {
                    commit_batch(&connection, std::mem::take(&mut batch), &syncer);
                    // Schema changes answer from inside: their commits wait for the disk.
                    set_synchronous(&connection, "FULL");
                    call(&mut connection);
                    set_synchronous(&connection, "NORMAL");
                }
                Work::Close(done) => closed = Some(done),
            }
            if batch.len() < BATCH_MAX && closed.is_none() {
                pending = queue.try_recv().ok();
            }
        }
        commit_batch(&connection, batch, &syncer);
        if closed.is_some() {
            break;
        }
        next = queue.blocking_recv();
    }
    // Calls that arrive from now on are refused (their senders see a closed queue).
    queue.close();
    // Every committed batch is flushed and answered before the file is closed.
    syncer.finish();
    drop(connection);
    // Unlock explicitly rather than by closing: a child process forked elsewhere in this process
    // (its fork-to-exec window) holds a copy of the descriptor, and a lock on a shared
    // descriptor outlives our close, so a restart in this process could find the file locked.
    let _ = lock.unlock();
    drop(lock);
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

/// `PRAGMA synchronous` (FULL: a commit waits for the disk itself).
fn set_synchronous(connection: &Connection, mode: &str) {
    if let Err(error) = connection.pragma_update(None, "synchronous", mode) {
        tracing::error!(%error, mode, "embedded store cannot set PRAGMA synchronous");
    }
}

fn commit_batch(connection: &Connection, batch: Vec<SharedCall>, syncer: &syncer::Syncer) {
    if batch.is_empty() {
        return;
    }
    let control = |statement: &str| {
        connection
            .prepare_cached(statement)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
    };
    if let Err(error) = control("BEGIN IMMEDIATE") {
        // Dropping the calls answers each caller that the store failed them.
        tracing::error!(%error, "embedded store cannot begin a transaction");
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for call in batch {
        if let Err(error) = control("SAVEPOINT call") {
            tracing::error!(%error, "embedded store cannot open a savepoint");
            continue;
        }
        let settled = call(connection);
        let closed = if settled.keep {
            control("RELEASE call")
        } else {
            control("ROLLBACK TO call").and_then(|()| control("RELEASE call"))
        };
        if let Err(error) = closed {
            tracing::error!(%error, "embedded store cannot close a savepoint");
        }
        answers.push(settled.answer);
    }
    match control("COMMIT") {
        Ok(()) => syncer.answer_when_durable(answers),
        Err(error) => {
            tracing::error!(%error, "embedded store commit failed");
            let _ = control("ROLLBACK");
            let failed = format!("the write was not committed: {error}");
            for answer in answers {
                answer(Err(failed.clone()));
            }
        }
    }
}

// Conversions between stored values and the wire's types.

/// Now, as stored: microseconds since the Unix epoch.
fn now_micros() -> i64 {
    micros(SystemTime::now())
}

fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i64,
        Err(before) => -(before.duration().as_micros() as i64),
    }
}

/// A span of time, as stored: microseconds (saturating; no stored span comes near the limit).
fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A time span a statement measured, in microseconds; a clock stepped back reads as zero.
fn elapsed(micros: Option<i64>) -> Option<Duration> {
    micros.map(|micros| Duration::from_micros(micros.max(0) as u64))
}

fn time_of(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

fn timestamp(row: &Row, column: &str) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row
        .get::<_, Option<i64>>(column)?
        .map(|micros| Timestamp(time_of(micros))))
}

fn uuid(row: &Row, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.get(column)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}

fn json(row: &Row, column: &str) -> Result<Option<RawJson>, StoreError> {
    row.get::<_, Option<String>>(column)?
        .map(|text| {
            serde_json::value::RawValue::from_string(text)
                .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
        })
        .transpose()
}

fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_files() {
        assert_eq!(
            file_path("").unwrap(),
            PathBuf::from(crate::store::DEFAULT_EMBEDDED_FILE)
        );
        assert_eq!(
            file_path("sqlite:///var/lib/mesh.db").unwrap(),
            PathBuf::from("/var/lib/mesh.db")
        );
        assert_eq!(
            file_path("data/mesh.db").unwrap(),
            PathBuf::from("data/mesh.db")
        );
        assert!(file_path("mysql://db").is_err());
    }

    #[test]
    fn the_lease_window_in_sql_is_the_domain_rule() {
        let connection = Connection::open_in_memory().unwrap();
        register_rules(&connection).unwrap();
        for max_duration in [None, Some(-4), Some(0), Some(7), Some(86_400)] {
            let window: i64 = connection
                .query_row("SELECT job_lease_window(?1)", [max_duration], |row| {
                    row.get(0)
                })
                .unwrap();
            assert_eq!(
                window,
                lease_window(max_duration).as_micros() as i64,
                "max_duration {max_duration:?}"
            );
        }
    }

    #[test]
    fn times_round_trip_through_micros() {
        let now = SystemTime::now();
        let stored = micros(now);
        let back = time_of(stored);
        let drift = now.duration_since(back).unwrap_or_default();
        assert!(drift < Duration::from_micros(1));
        assert_eq!(
            time_of(-1_500_000),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
    }
}
