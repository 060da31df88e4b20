//! The flush half of the embedded group commit, on a thread of its own: it receives the
//! answers of each committed batch, flushes the file's WAL to disk (one fdatasync for every
//! batch that committed since the last one), and only then answers. The store thread meanwhile
//! runs the next batch, so the disk's latency and the next batch's work overlap.
//!
//! Order: answers go out in commit order, each after a flush that started after its commit,
//! so that flush covers its batch and all earlier ones (fdatasync flushes the file, whatever
//! descriptor wrote it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// How a caller is told its batch's fate: `Ok` once committed and on disk.
pub(super) type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(super) struct Syncer {
    batches: mpsc::Sender<Vec<Answer>>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread that flushes `<database>-wal` (SQLite's WAL file beside the database).
    pub(super) fn start(database: &Path) -> std::io::Result<Syncer> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (batches, committed) = mpsc::channel::<Vec<Answer>>();
        let thread = std::thread::Builder::new()
            .name("mesh-registry-syncer".into())
            .spawn(move || flush_and_answer(&wal, committed))?;
        Ok(Syncer { batches, thread })
    }

    /// Answers `answers` once the batch they belong to (committed just now) is on disk.
    pub(super) fn answer_when_durable(&self, answers: Vec<Answer>) {
        if let Err(mpsc::SendError(answers)) = self.batches.send(answers) {
            // The thread is gone (it cannot panic short of a bug): say so rather than hang.
            for answer in answers {
                answer(Err("the embedded store's syncer has stopped".into()));
            }
        }
    }

    /// Flushes and answers everything committed so far, then stops the thread.
    pub(super) fn finish(self) {
        drop(self.batches);
        let _ = self.thread.join();
    }
}

fn flush_and_answer(wal: &Path, committed: mpsc::Receiver<Vec<Answer>>) {
    let mut file: Option<File> = None;
    while let Ok(mut answers) = committed.recv() {
        // Every batch committed by now shares this flush.
        while let Ok(more) = committed.try_recv() {
            answers.extend(more);
        }
        let flushed = flush(wal, &mut file).map_err(|error| {
            tracing::error!(%error, wal = %wal.display(), "embedded store cannot flush its WAL");
            // Reopen next time: the descriptor may be what failed.
            file = None;
            format!("the write may not be on disk: {error}")
        });
        for answer in answers {
            answer(flushed.clone());
        }
    }
}

/// fdatasync of the WAL file (opened once; it keeps its inode for the life of the connection).
fn flush(wal: &Path, file: &mut Option<File>) -> std::io::Result<()> {
    let open = match file.take() {
        Some(open) => open,
        None => match File::open(wal) {
            Ok(open) => open,
            // No WAL yet: nothing was ever written through it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        },
    };
    open.sync_data()?;
    *file = Some(open);
    Ok(())
}
