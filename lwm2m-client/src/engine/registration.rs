//! Registration (LwM2M Register and Update): the requests, when the next Update is due, and the
//! back-off after a refused or lost registration.

use heapless::String;
use lwm2m_core::coap::{Code, MessageType, MessageWriter, option};

use super::Engine;
use super::limits::MAX_QUERY_LEN;
use crate::exchange::Purpose;
use crate::objects::format;
use crate::platform::Platform;
use crate::time::{Duration, Instant};

impl<P: Platform> Engine<P> {
    pub(super) fn send_register(&mut self, now: Instant) {
        let (endpoint, lifetime, queue) = (
            self.cfg.endpoint.clone(),
            self.lifetime_s,
            self.cfg.queue_mode,
        );
        let started = self.exchanges.start(
            now,
            self.cfg.server,
            Purpose::Register,
            |buf, mid, token| {
                let mut w =
                    MessageWriter::new(buf, MessageType::Confirmable, Code::POST, mid, token)
                        .ok()?;
                w.option(option::URI_PATH, b"rd").ok()?;
                w.uint_option(option::CONTENT_FORMAT, u32::from(format::LINK))
                    .ok()?;
                let mut q: String<MAX_QUERY_LEN> = String::new();
                use core::fmt::Write;
                write!(q, "ep={endpoint}").ok()?;
                w.option(option::URI_QUERY, q.as_bytes()).ok()?;
                q.clear();
                write!(q, "lt={lifetime}").ok()?;
                w.option(option::URI_QUERY, q.as_bytes()).ok()?;
                w.option(option::URI_QUERY, b"lwm2m=1.1").ok()?;
                w.option(option::URI_QUERY, b"b=U").ok()?;
                if queue {
                    w.option(option::URI_QUERY, b"Q").ok()?;
                }
                w.payload(b"</1/0>,</3/0>,</5/0>").ok()
            },
        );
        if started.is_err() {
            self.register_at = Some(now + Duration::from_secs(1));
        }
    }

    pub(super) fn send_update(&mut self, now: Instant) {
        let Some(location) = self.location.clone() else {
            self.register_at = Some(now);
            return;
        };
        let started =
            self.exchanges
                .start(now, self.cfg.server, Purpose::Update, |buf, mid, token| {
                    let mut w =
                        MessageWriter::new(buf, MessageType::Confirmable, Code::POST, mid, token)
                            .ok()?;
                    w.path(&location).ok()?;
                    Some(w.finish())
                });
        if started.is_err() {
            self.next_update = Some(now + Duration::from_secs(1));
        }
    }

    /// When the next Update is due: well before the lifetime ends, leaving room for retransmissions.
    pub(super) fn update_due(&self, now: Instant) -> Instant {
        let lifetime = Duration::from_secs(u64::from(self.lifetime_s));
        let margin = Duration::from_secs(u64::from(self.lifetime_s / 4).clamp(1, 93));
        now + Duration(
            lifetime
                .as_millis()
                .saturating_sub(margin.as_millis())
                .max(1000),
        )
    }

    pub(super) fn retry_register(&mut self, now: Instant) {
        self.location = None;
        self.register_at = Some(now + self.register_backoff);
        self.register_backoff = Duration((self.register_backoff.as_millis() * 2).min(60_000));
    }
}
