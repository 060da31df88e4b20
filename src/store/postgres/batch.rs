//! Group commit: concurrent calls of one kind are gathered and applied in one statement, and each
//! caller is answered only after that statement committed (nothing is acknowledged before it is
//! durable).
//!
//! Nothing waits for company: a call that finds a free slot goes at once, alone; calls that
//! arrive while every slot is busy ride together in the next statement. Batches therefore grow
//! with the load and stay at one when the registry is quiet.
//!
//! A shared statement is atomic, so one row the database refuses fails it for everyone in it.
//! When that happens (an error that blames a row, not the connection), each call is applied
//! again alone: only the caller whose row is at fault gets the error.

use std::future::Future;
use std::sync::Arc;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::StoreError;

/// Calls waiting for a slot, at most; past it callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

struct Pending<Req, Resp> {
    request: Req,
    reply: oneshot::Sender<Result<Resp, StoreError>>,
}

pub(super) struct Batcher<Req, Resp> {
    sender: mpsc::Sender<Pending<Req, Resp>>,
}

impl<Req: Clone + Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the gathering task: at most `slots` statements in flight, at most `max` calls each.
    /// `apply` answers every request of a batch, in order; `sizes` learns how many calls each
    /// statement carried.
    pub(super) fn start<F, Fut>(slots: usize, max: usize, sizes: Histogram, apply: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, StoreError>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<Pending<Req, Resp>>(QUEUE);
        let apply = Arc::new(apply);
        let slots = Arc::new(Semaphore::new(slots));
        tokio::spawn(async move {
            loop {
                // Take a slot first: while all are busy, calls pile up into the next batch.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = receiver.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                sizes.observe(batch.len() as f64);
                let apply = apply.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|p| (p.request, p.reply)).unzip();
                    let retry = (requests.len() > 1).then(|| requests.clone());
                    match (apply(requests).await, retry) {
                        (Ok(responses), _) => {
                            for (reply, response) in replies.into_iter().zip(responses) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        (Err(error), Some(requests)) if error.blames_a_row() => {
                            tracing::debug!(%error, calls = requests.len(),
                                "a shared statement failed; applying its calls one by one");
                            for (request, reply) in requests.into_iter().zip(replies) {
                                let alone = apply(vec![request]).await;
                                let _ = reply.send(alone.and_then(only_answer));
                            }
                        }
                        (Err(error), _) => {
                            let message = error.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(StoreError::Batch(message.clone())));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Batcher { sender }
    }

    /// Applies `request` with whatever else is waiting; the answer comes after the commit.
    /// (The rare retry of a failed shared statement, alone, is `only_answer`'s business.)
    pub(super) async fn call(&self, request: Req) -> Result<Resp, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Batch("the store is shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Batch("the store is shutting down".into()))?
    }
}

/// The one answer of a batch of one.
fn only_answer<Resp>(mut responses: Vec<Resp>) -> Result<Resp, StoreError> {
    responses
        .pop()
        .ok_or_else(|| StoreError::Batch("a statement answered no call".into()))
}
