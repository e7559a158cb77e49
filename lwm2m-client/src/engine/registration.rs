//! Registration (LwM2M Register and Update): the requests, when the next Update is due, and the
//! back-off after a refused or lost registration.

use heapless::String;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter, option, params};
use lwm2m_core::content;

use super::limits::{MAX_LOCATION_LEN, MAX_QUERY_LEN};
use super::{Engine, Event};
use crate::exchange::Purpose;
use crate::platform::Platform;
use crate::time::{Duration, Instant};

/// The first wait before registering again after a refused or unanswered Register: RFC 7252's
/// ACK_TIMEOUT. It doubles at each further failure, up to [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_core(params::ACK_TIMEOUT);
/// The longest wait between two Register attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The least time between an Update and the next.
const MIN_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

impl<P: Platform> Engine<P> {
    /// The answer to Register: 2.01 Created with the location, or a refusal (try again later).
    pub(super) fn on_register_response(&mut self, now: Instant, msg: &Message<'_>) {
        if msg.code != Code::CREATED {
            return self.retry_register(now);
        }
        let mut loc: String<MAX_LOCATION_LEN> = String::new();
        for seg in msg.option_values(option::LOCATION_PATH) {
            let _ = loc.push('/');
            let _ = loc.push_str(core::str::from_utf8(seg).unwrap_or(""));
        }
        self.location = Some(loc);
        self.register_backoff = FIRST_BACKOFF;
        self.next_update = Some(self.update_due(now));
        self.event(Event::Registered);
    }

    /// The answer to Update: 2.04 Changed, or the server forgot us (4.04) or refuses the update,
    /// and the device registers again.
    pub(super) fn on_update_response(&mut self, now: Instant, msg: &Message<'_>) {
        if msg.code == Code::CHANGED {
            self.next_update = Some(self.update_due(now));
        } else {
            self.register_again(now);
        }
    }

    /// The registration is gone (or may be): register again now.
    pub(super) fn register_again(&mut self, now: Instant) {
        self.location = None;
        self.register_at = Some(now);
    }

    pub(super) fn send_register(&mut self, now: Instant) {
        let (endpoint, lifetime, queue, oscore) = (
            self.cfg.endpoint.clone(),
            self.lifetime_s,
            self.cfg.queue_mode,
            self.cfg.oscore,
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
                w.uint_option(option::CONTENT_FORMAT, u32::from(content::LINK_FORMAT))
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
                // Object 21 (OSCORE) instance 0 is listed when the driver protects the
                // exchanges; it is never readable (a Read gets 4.04, like any unknown object).
                w.payload(if oscore {
                    b"</1/0>,</3/0>,</5/0>,</21/0>".as_slice()
                } else {
                    b"</1/0>,</3/0>,</5/0>".as_slice()
                })
                .ok()
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

    /// When the next Update is due: before the lifetime ends by a quarter of it, but by no more
    /// than MAX_TRANSMIT_WAIT (RFC 7252: the time an Update's retransmissions may take).
    pub(super) fn update_due(&self, now: Instant) -> Instant {
        let lifetime = Duration::from_secs(u64::from(self.lifetime_s));
        let margin = Duration::from_secs(u64::from(self.lifetime_s / 4)).clamp(
            Duration::from_secs(1),
            Duration::from_core(params::MAX_TRANSMIT_WAIT),
        );
        now + Duration(
            lifetime
                .as_millis()
                .saturating_sub(margin.as_millis())
                .max(MIN_UPDATE_INTERVAL.as_millis()),
        )
    }

    pub(super) fn retry_register(&mut self, now: Instant) {
        self.location = None;
        self.register_at = Some(now + self.register_backoff);
        self.register_backoff = Duration(
            self.register_backoff
                .as_millis()
                .saturating_mul(2)
                .min(MAX_BACKOFF.as_millis()),
        );
    }
}
