//! Waiting on conditions, never on clocks: `within` until something happens, `stays_for` to see
//! that something does not happen for a while, `parked` for a request that must wait.

use std::future::Future;
use std::time::{Duration, Instant};

use actix_web::rt::task::JoinHandle;
use actix_web::rt::time::sleep;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// How long a long-poll goes unanswered before a test takes it as parked (see `parked`).
const PARK_WINDOW: Duration = Duration::from_millis(300);

/// Polls `check` every 20 ms until it holds; fails after `limit`. Returns the time it took.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        sleep(POLL).await;
    }
    started.elapsed()
}

/// Asserts that `check` holds throughout `window`, checking it every 20 ms. Only for what must
/// NOT happen for a while (nothing reclaimed inside a grace period, a cleared drain that stays
/// cleared): an absence can only be observed over a window. Make the window just longer than
/// the period in question (a sweep tick, a lease, a flush) and say which in `what`.
pub async fn stays_for<F, Fut>(window: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        assert!(
            check().await,
            "{what}: no longer so after {:?}",
            started.elapsed()
        );
        if started.elapsed() >= window {
            return;
        }
        sleep(POLL).await;
    }
}

/// A request that was still unanswered after its park window.
pub struct Parked(JoinHandle<reqwest::Result<reqwest::Response>>);

/// Given a long-poll that is parked: sends `request` (one that must wait: a long-poll with
/// nothing to read) and returns once it has gone unanswered for 300 ms, asserting so. No
/// endpoint tells whether a long-poll has parked yet; going unanswered that long is how a test
/// knows it has (parking comes before its first read, within milliseconds).
pub async fn parked(request: reqwest::RequestBuilder) -> Parked {
    let waiting = actix_web::rt::spawn(request.send());
    stays_for(PARK_WINDOW, "the long-poll waits unanswered", || async {
        !waiting.is_finished()
    })
    .await;
    Parked(waiting)
}

impl Parked {
    /// The answer, once it comes.
    pub async fn response(self) -> reqwest::Response {
        self.0
            .await
            .expect("the request's task")
            .expect("the parked request was answered")
    }

    /// Whether it was answered already.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// The answer's JSON body.
    pub async fn json(self) -> serde_json::Value {
        self.response().await.json().await.expect("a JSON answer")
    }
}
