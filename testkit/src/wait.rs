//! Bounded polling: every wait in a test ends, with a message naming what did not happen.

use std::time::Duration;

use tokio::time::Instant;

/// How often [`until`] looks.
pub const POLL: Duration = Duration::from_millis(20);

/// Calls `check` every [`POLL`] until it gives `Some`; panics naming `what` after `limit`.
pub async fn until<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
