//! Events between the nodes of one PostgreSQL database: each node sends its events with
//! `NOTIFY otafleet_events` (batched, progress coalesced) and `LISTEN`s on the same dedicated
//! connection; what the other nodes sent goes to this node's event stream with their name.
//! A node hears its own NOTIFYs too: those are dropped, its subscribers had them already.
//!
//! NOTIFY is not a queue: while the connection is down, what the other nodes send is lost, and
//! so is what this node sends. The connection is opened again with back-off and the log says
//! that events may have been missed in between; the REST API reads the fleet from the
//! database, so a page reloaded afterwards is whole again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Client, Notification, Statement};

use super::coalesce::Coalescer;
use super::{ServerEvent, wire};

/// The channel every node of a database sends and listens on (channels are per database).
const CHANNEL: &str = "otafleet_events";
/// A device's download progress goes to the other nodes at most this often.
pub const PROGRESS_WINDOW: Duration = Duration::from_secs(1);
/// How many devices' progress reports a node sends per second at most, whatever the fleet.
pub const PROGRESS_PER_SECOND: usize = 500;
/// How often waiting progress is flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The wait before opening the connection again: doubled per failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Starts relaying this node's events (from `events`) to the other nodes of the database at
/// `url` and theirs to `events`' remote stream. Subscribed before it returns, so nothing
/// published afterwards is missed. Ends when the bus is gone (the server was dropped).
pub(crate) fn spawn(
    url: &str,
    node: String,
    events: &super::EventBus,
) -> tokio::task::JoinHandle<()> {
    let relay = Relay {
        node,
        local: events.subscribe(),
        remote: events.remote.clone(),
        coalescer: Coalescer::new(
            PROGRESS_WINDOW,
            PROGRESS_PER_SECOND * FLUSH_EVERY.as_millis() as usize / 1000,
        ),
    };
    let config = url.parse::<tokio_postgres::Config>();
    tokio::spawn(async move {
        match config {
            Ok(config) => relay.run(config).await,
            // The store parsed the same URL already: not expected, but never a panic.
            Err(e) => tracing::error!("events: bad PostgreSQL URL, no events between nodes: {e}"),
        }
    })
}

struct Relay {
    node: String,
    local: broadcast::Receiver<ServerEvent>,
    remote: broadcast::Sender<Arc<str>>,
    coalescer: Coalescer,
}

/// Why a session ended.
enum End {
    /// The server is gone.
    Closed,
    /// The connection broke (PostgreSQL restarted, the network...).
    Lost(String),
}

impl Relay {
    async fn run(mut self, mut config: tokio_postgres::Config) {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name(format!("otafleet events {}", self.node));
        let mut backoff = BACKOFF_MIN;
        // When the connection was lost (None: up, or never opened yet).
        let mut down_since: Option<Instant> = None;
        let mut first = true;
        loop {
            match Session::open(&config).await {
                Ok(session) => {
                    if let Some(since) = down_since.take() {
                        tracing::warn!(
                            "events: listening to the other nodes again after {:.1} s without: events sent between nodes in that time may have been missed",
                            since.elapsed().as_secs_f64()
                        );
                        // What this node published meanwhile is not sent late, out of order.
                        self.local = self.local.resubscribe();
                    } else if first {
                        tracing::info!("events: sending and hearing the other nodes' events");
                    }
                    first = false;
                    backoff = BACKOFF_MIN;
                    match self.serve(session).await {
                        End::Closed => return,
                        End::Lost(why) => {
                            tracing::warn!(
                                "events: the PostgreSQL connection for events between nodes was lost ({why}); events may be missed until it is back"
                            );
                            down_since = Some(Instant::now());
                            continue;
                        }
                    }
                }
                Err(e) => {
                    if down_since.is_none() {
                        tracing::warn!(
                            "events: cannot listen to the other nodes ({e}); trying again, events may be missed until then"
                        );
                        down_since = Some(Instant::now());
                    } else {
                        tracing::debug!("events: still cannot connect: {e}");
                    }
                }
            }
            if self.wait(backoff).await.is_err() {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Sleeps `d`, keeping up with the bus; an error when the server is gone.
    async fn wait(&mut self, d: Duration) -> Result<(), ()> {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                ev = self.local.recv() => if let Err(broadcast::error::RecvError::Closed) = ev {
                    return Err(());
                },
            }
        }
    }

    async fn serve(&mut self, mut session: Session) -> End {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outbox: Vec<ServerEvent> = Vec::new();
        loop {
            tokio::select! {
                ev = self.local.recv() => match ev {
                    Ok(ev) => outbox.extend(self.coalescer.offer(ev, Instant::now())),
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(
                        "events: {n} events of this node came faster than they could be sent to the other nodes; skipped"
                    ),
                    Err(broadcast::error::RecvError::Closed) => return End::Closed,
                },
                note = session.notes.recv() => match note {
                    Some(n) => self.deliver(&n),
                    None => return End::Lost(session.ended().await),
                },
                _ = flush.tick() => outbox.extend(self.coalescer.flush(Instant::now())),
            }
            if outbox.is_empty() {
                continue;
            }
            // Whatever else is ready goes in the same NOTIFYs.
            while let Ok(ev) = self.local.try_recv() {
                outbox.extend(self.coalescer.offer(ev, Instant::now()));
            }
            let json: Vec<String> = outbox.drain(..).map(|e| e.to_json(None)).collect();
            for payload in wire::encode(&self.node, &json) {
                if let Err(e) = session
                    .client
                    .execute(&session.notify, &[&CHANNEL, &payload])
                    .await
                {
                    if session.client.is_closed() {
                        return End::Lost(e.to_string());
                    }
                    tracing::warn!(
                        "events: PostgreSQL refused a NOTIFY of {} bytes: {e}",
                        payload.len()
                    );
                }
            }
        }
    }

    /// Passes another node's events on to this node's stream; a malformed payload is logged
    /// and skipped, one of this node's own is dropped (its subscribers had it).
    fn deliver(&self, n: &Notification) {
        if n.channel() != CHANNEL {
            return;
        }
        match wire::decode(n.payload()) {
            Ok(batch) if batch.node == self.node => {}
            Ok(batch) => {
                for ev in batch.events {
                    let _ = self.remote.send(ev);
                }
            }
            Err(e) => {
                let start: String = n.payload().chars().take(120).collect();
                tracing::warn!(
                    "events: skipped a malformed notification on {CHANNEL} (from PostgreSQL process {}): {e}: {start:?}",
                    n.process_id()
                );
            }
        }
    }
}

/// One connection: the client that sends NOTIFYs, and the notifications its driver hears.
struct Session {
    client: Client,
    /// `SELECT pg_notify($1, $2)`, prepared once.
    notify: Statement,
    notes: mpsc::UnboundedReceiver<Notification>,
    driver: Driver,
}

impl Session {
    async fn open(config: &tokio_postgres::Config) -> Result<Session, tokio_postgres::Error> {
        let (client, mut conn) = config.connect(tokio_postgres::NoTls).await?;
        // Unbounded: the driver must never wait on the relay, which may be waiting on a reply
        // the driver has to read; the relay only parses and forwards, so it keeps up.
        let (tx, notes) = mpsc::unbounded_channel();
        let driver = Driver(tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n).is_err() {
                            return "the relay stopped".to_string();
                        }
                    }
                    Some(Ok(_notice)) => {}
                    Some(Err(e)) => return e.to_string(),
                    None => return "the connection closed".to_string(),
                }
            }
        }));
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let notify = client.prepare("SELECT pg_notify($1, $2)").await?;
        Ok(Session {
            client,
            notify,
            notes,
            driver,
        })
    }

    /// Why the driver stopped.
    async fn ended(&mut self) -> String {
        (&mut self.driver.0)
            .await
            .unwrap_or_else(|e| format!("the connection's task failed: {e}"))
    }
}

/// A connection's driver task, aborted when dropped (with its session, or on a failed open).
struct Driver(tokio::task::JoinHandle<String>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::events::EventBus;
    use crate::store::pg_cluster::PgCluster;

    fn progress(ep: &str, bytes_done: u64) -> ServerEvent {
        ServerEvent::Download {
            endpoint: ep.into(),
            release_id: "r".into(),
            block: 0,
            block_size: 512,
            bytes_done,
            bytes_total: 2_000,
            requests: bytes_done / 10,
            started_at_ms: 0,
            rate_bps: None,
            eta_s: None,
        }
    }

    /// The next event `heard` within `limit`, as JSON.
    async fn next(heard: &mut broadcast::Receiver<Arc<str>>, limit: Duration) -> Option<Value> {
        let json = tokio::time::timeout(limit, heard.recv()).await.ok()?.ok()?;
        Some(serde_json::from_str(&json).expect("the relay passes JSON on"))
    }

    /// Two relays on one real database: a burst of 200 progress reports of a device crosses as
    /// one or two, ending with the latest, and the device's state change after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_progress_crosses_coalesced_and_before_the_state_change() {
        let Some(pg) = PgCluster::start() else { return };
        let url = pg.new_database();
        let (a, b) = (EventBus::default(), EventBus::default());
        let _relays = (spawn(&url, "a".into(), &a), spawn(&url, "b".into(), &b));
        let mut heard = b.subscribe_remote();
        // Until both listen, what a sends may be lost: a says hello until b hears it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "b never heard a");
            a.publish(ServerEvent::Expired {
                endpoint: "hello".into(),
            });
            if let Some(v) = next(&mut heard, Duration::from_millis(300)).await {
                assert_eq!(v["node"], "a");
                break;
            }
        }
        while next(&mut heard, Duration::from_millis(600)).await.is_some() {}

        for i in 1..=200 {
            a.publish(progress("dev", i * 10));
        }
        a.publish(ServerEvent::Deregistered {
            endpoint: "dev".into(),
        });
        let mut downloads = Vec::new();
        loop {
            let v = next(&mut heard, Duration::from_secs(10))
                .await
                .expect("the state change crossed");
            assert_eq!(v["node"], "a", "{v}");
            match v["type"].as_str() {
                Some("download") => downloads.push(v["bytes_done"].as_u64().unwrap()),
                Some("deregistered") => break,
                _ => {}
            }
        }
        assert!((1..=2).contains(&downloads.len()), "{downloads:?}");
        assert_eq!(downloads.last(), Some(&2_000), "{downloads:?}");
    }
}
