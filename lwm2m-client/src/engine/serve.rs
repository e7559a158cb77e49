//! Requests from the server: the answers (Read, Discover, Write, Execute, Write-Attributes), the
//! duplicate cache, the observations of /5/0/3 and /5/0/5 and their notifications, and the
//! objects as an [`ObjectModel`].

use core::net::SocketAddr;

use heapless::{String, Vec};
use lwm2m_core::Path;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter, option};
use lwm2m_core::content::{self, Value};
use lwm2m_core::object5 as fw;

use super::limits::{
    DISCOVER_BODY, MAX_RESPONSE, MAX_TOKEN_LEN, NOTIFY_TEXT_LEN, OBSERVERS, READ_BODY,
};
use super::{Cached, Engine, Event, Outgoing};
use crate::exchange::Purpose;
use crate::objects::{ObjectModel, Resource, encode_discover, encode_read};
use crate::platform::Platform;
use crate::time::Instant;

pub(super) struct Observer {
    pub(super) peer: SocketAddr,
    pub(super) token: Vec<u8, MAX_TOKEN_LEN>,
    pub(super) resource: u16,
    pub(super) sequence: u32,
    /// The value changed and a notification is owed.
    pub(super) dirty: bool,
}

impl<P: Platform> Engine<P> {
    pub(super) fn send_notifications(&mut self, now: Instant) {
        for i in 0..OBSERVERS {
            let Some(Some(o)) = self.observers.get(i) else {
                continue;
            };
            if !o.dirty
                || self.exchanges.busy(Purpose::Notify(i as u8))
                || !self.exchanges.has_free_slot()
            {
                continue;
            }
            let (peer, token, resource, seq) = (
                o.peer,
                o.token.clone(),
                o.resource,
                o.sequence.wrapping_add(1),
            );
            let value = if resource == fw::STATE {
                self.fw.state as i64
            } else {
                self.fw.result as i64
            };
            let started =
                self.exchanges
                    .start(now, peer, Purpose::Notify(i as u8), |buf, mid, tok| {
                        let _ = tok; // notifications carry the observation's token, not a new one
                        let mut w = MessageWriter::new(
                            buf,
                            MessageType::Confirmable,
                            Code::CONTENT,
                            mid,
                            &token,
                        )
                        .ok()?;
                        w.uint_option(option::OBSERVE, seq & 0x00ff_ffff).ok()?;
                        w.uint_option(option::CONTENT_FORMAT, u32::from(content::TEXT_PLAIN))
                            .ok()?;
                        let mut text: String<NOTIFY_TEXT_LEN> = String::new();
                        use core::fmt::Write;
                        write!(text, "{value}").ok()?;
                        w.payload(text.as_bytes()).ok()
                    });
            if started.is_ok() {
                if let Some(Some(o)) = self.observers.get_mut(i) {
                    o.dirty = false;
                    o.sequence = seq;
                }
            }
        }
    }

    // Not inlined: its response buffers would otherwise sit in handle_datagram's frame under every
    // response the engine handles, the manifest's verification included (stack budget).
    #[inline(never)]
    pub(super) fn on_request(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        if self.cache.as_ref().is_some_and(|c| c.answers(from, msg)) {
            // A retransmitted request: the same answer again, without doing it twice.
            self.queue(Outgoing::Cached);
            return;
        }
        let ty = if msg.ty == MessageType::Confirmable {
            MessageType::Acknowledgement
        } else {
            MessageType::NonConfirmable
        };
        // The answer is written straight into the cache entry: one response buffer on this
        // frame, not two, under whatever the request starts (Execute Update stores the record:
        // the engine's deepest stack).
        let mut cached = Cached {
            peer: from,
            message_id: msg.message_id,
            len: 0,
            bytes: [0; MAX_RESPONSE],
        };
        cached.len = self
            .answer(now, from, msg, ty, &mut cached.bytes)
            .unwrap_or_else(|code| {
                MessageWriter::new(&mut cached.bytes, ty, code, msg.message_id, msg.token())
                    .map(|w| w.finish())
                    .unwrap_or(0)
            });
        self.cache = Some(cached);
        self.queue(Outgoing::Cached);
        self.drive(now);
    }

    /// Handles a request and writes the response into `out`; Err is a bare response code.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        const KNOWN: &[u16] = &[
            option::URI_HOST,
            option::ETAG,
            option::OBSERVE,
            option::URI_PORT,
            option::URI_PATH,
            option::CONTENT_FORMAT,
            option::URI_QUERY,
            option::ACCEPT,
            option::BLOCK2,
            option::BLOCK1,
            option::SIZE2,
            option::SIZE1,
        ];
        if msg.unknown_critical_option(KNOWN).is_some() {
            return Err(Code::BAD_OPTION);
        }
        let path = Path::from_segments(msg.path()).map_err(|_| Code::NOT_FOUND)?;
        let accept = msg
            .uint_option(option::ACCEPT)
            .map_err(|_| Code::BAD_OPTION)?
            .map(|a| a as u16);
        let cf = msg
            .uint_option(option::CONTENT_FORMAT)
            .map_err(|_| Code::BAD_OPTION)?
            .map(|c| c as u16);
        let id = msg.message_id;
        let token = msg.token();
        let simple = |out: &mut [u8], code: Code| -> Result<usize, Code> {
            MessageWriter::new(out, ty, code, id, token)
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR)
        };
        match msg.code {
            Code::GET if accept == Some(content::LINK_FORMAT) => {
                let object = path.object_id().ok_or(Code::NOT_FOUND)?;
                if self.resources(object).is_empty() {
                    return Err(Code::NOT_FOUND);
                }
                let mut body = [0u8; DISCOVER_BODY];
                let n = encode_discover(self, object, &mut body)?;
                let mut w = MessageWriter::new(out, ty, Code::CONTENT, id, token)
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.uint_option(option::CONTENT_FORMAT, u32::from(content::LINK_FORMAT))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.payload(body.get(..n).unwrap_or(&[]))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)
            }
            Code::GET => {
                let observe = msg
                    .uint_option(option::OBSERVE)
                    .map_err(|_| Code::BAD_OPTION)?;
                let mut sequence = None;
                if let (
                    Some(0),
                    Some(fw::OBJECT_ID),
                    Some(0),
                    Some(res @ (fw::STATE | fw::UPDATE_RESULT)),
                ) = (
                    observe,
                    path.object_id(),
                    path.instance_id(),
                    path.resource_id(),
                ) {
                    sequence = self.add_observer(from, token, res);
                } else if observe == Some(1) {
                    self.remove_observer(from, token);
                }
                let mut body = [0u8; READ_BODY];
                let (fmt, n) = encode_read(self, &path, accept, &mut body)?;
                let mut w = MessageWriter::new(out, ty, Code::CONTENT, id, token)
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                if let Some(s) = sequence {
                    w.uint_option(option::OBSERVE, s)
                        .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                }
                w.uint_option(option::CONTENT_FORMAT, u32::from(fmt))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.payload(body.get(..n).unwrap_or(&[]))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)
            }
            Code::PUT | Code::POST => {
                let ids = (path.object_id(), path.instance_id(), path.resource_id());
                match (msg.code, ids) {
                    // Write-Attributes: accepted (notifications are sent on every change).
                    (Code::PUT, _) if msg.payload.is_empty() && msg.queries().next().is_some() => {
                        simple(out, Code::CHANGED)
                    }
                    (_, (Some(fw::OBJECT_ID), Some(0), Some(fw::PACKAGE_URI))) => {
                        let code = self.write_package_uri(now, msg.payload, cf)?;
                        simple(out, code)
                    }
                    (_, (Some(fw::OBJECT_ID), Some(0), Some(fw::PACKAGE))) => {
                        self.write_package(now, msg, ty, out)
                    }
                    (Code::POST, (Some(fw::OBJECT_ID), Some(0), Some(fw::UPDATE))) => {
                        let code = self.execute_update(now)?;
                        simple(out, code)
                    }
                    (Code::POST, (Some(fw::OBJECT_ID), Some(0), Some(fw::CANCEL))) => {
                        let code = self.cancel(now)?;
                        simple(out, code)
                    }
                    (Code::POST, (Some(3), Some(0), Some(4))) => {
                        self.event(Event::Reboot);
                        simple(out, Code::CHANGED)
                    }
                    (Code::POST, (Some(1), Some(0), Some(8))) => {
                        self.next_update = Some(now);
                        simple(out, Code::CHANGED)
                    }
                    (
                        Code::PUT,
                        (
                            Some(fw::OBJECT_ID),
                            Some(0),
                            Some(res @ (fw::SEVERITY | fw::MAX_DEFER_PERIOD)),
                        ),
                    ) => {
                        let text =
                            core::str::from_utf8(msg.payload).map_err(|_| Code::BAD_REQUEST)?;
                        let v = lwm2m_core::ascii::parse_u32(text).ok_or(Code::BAD_REQUEST)?;
                        if res == fw::SEVERITY {
                            self.fw.severity = u8::try_from(v)
                                .ok()
                                .filter(|s| *s <= 2)
                                .ok_or(Code::BAD_REQUEST)?;
                        } else {
                            self.fw.max_defer_period = v;
                        }
                        simple(out, Code::CHANGED)
                    }
                    (Code::PUT, (Some(1), Some(0), Some(1))) => {
                        let text =
                            core::str::from_utf8(msg.payload).map_err(|_| Code::BAD_REQUEST)?;
                        let lt = lwm2m_core::ascii::parse_u32(text).ok_or(Code::BAD_REQUEST)?;
                        if lt == 0 {
                            return Err(Code::BAD_REQUEST);
                        }
                        self.lifetime_s = lt;
                        self.next_update = Some(now);
                        simple(out, Code::CHANGED)
                    }
                    (_, (Some(0 | 1 | 3 | 5), _, _)) => Err(Code::METHOD_NOT_ALLOWED),
                    _ => Err(Code::NOT_FOUND),
                }
            }
            Code::DELETE => Err(Code::METHOD_NOT_ALLOWED),
            _ => Err(Code::METHOD_NOT_ALLOWED),
        }
    }

    pub(super) fn add_observer(
        &mut self,
        peer: SocketAddr,
        token: &[u8],
        resource: u16,
    ) -> Option<u32> {
        let tok = Vec::from_slice(token).ok()?;
        // Re-registration of the same observation replaces it (RFC 7641 §4.1).
        let slot = self
            .observers
            .iter()
            .position(|o| {
                o.as_ref()
                    .is_some_and(|o| o.peer == peer && o.resource == resource)
            })
            .or_else(|| self.observers.iter().position(Option::is_none))?;
        let o = self.observers.get_mut(slot)?;
        *o = Some(Observer {
            peer,
            token: tok,
            resource,
            sequence: 1,
            dirty: false,
        });
        Some(1)
    }

    pub(super) fn remove_observer(&mut self, peer: SocketAddr, token: &[u8]) {
        for o in self.observers.iter_mut() {
            if o.as_ref()
                .is_some_and(|x| x.peer == peer && x.token.as_slice() == token)
            {
                *o = None;
            }
        }
    }
}

impl<P: Platform> ObjectModel for Engine<P> {
    fn resources(&self, object: u16) -> &'static [u16] {
        match object {
            0 => &[0, 1, 2, 10],
            1 => &[0, 1, 6, 7],
            3 => &[0, 1, 2, 3, 11, 16],
            fw::OBJECT_ID => &[
                fw::PACKAGE_URI,
                fw::STATE,
                fw::UPDATE_RESULT,
                fw::PKG_NAME,
                fw::PKG_VERSION,
                fw::PROTOCOL_SUPPORT,
                fw::DELIVERY_METHOD,
                fw::SEVERITY,
                fw::LAST_STATE_CHANGE_TIME,
                fw::MAX_DEFER_PERIOD,
            ],
            _ => &[],
        }
    }

    fn read(&self, object: u16, resource: u16) -> Option<Resource<'_>> {
        const PROTOCOLS: &[(u16, Value<'static>)] =
            &[(0, Value::Integer(fw::ProtocolSupport::Coap as i64))];
        const PROTOCOLS_SECURE: &[(u16, Value<'static>)] =
            &[(0, Value::Integer(fw::ProtocolSupport::Coaps as i64))];
        const NO_ERROR: &[(u16, Value<'static>)] = &[(0, Value::Integer(0))];
        Some(Resource::Single(match (object, resource) {
            (0, 0) => Value::String(""),
            (0, 1) => Value::Boolean(false),
            (0, 2) => Value::Integer(3), // NoSec
            (0, 10) | (1, 0) => Value::Integer(1),
            (1, 1) => Value::Integer(i64::from(self.lifetime_s)),
            (1, 6) => Value::Boolean(false),
            (1, 7) => Value::String(if self.cfg.queue_mode { "UQ" } else { "U" }),
            (3, 0) => Value::String(&self.cfg.manufacturer),
            (3, 1) => Value::String(&self.cfg.model),
            (3, 2) => Value::String(&self.cfg.serial),
            (3, 3) => Value::String(&self.running_version),
            (3, 11) => return Some(Resource::Multiple(NO_ERROR)),
            (3, 16) => Value::String("U"),
            (fw::OBJECT_ID, fw::PACKAGE_URI) => Value::String(&self.fw.package_uri),
            (fw::OBJECT_ID, fw::STATE) => Value::Integer(self.fw.state as i64),
            (fw::OBJECT_ID, fw::UPDATE_RESULT) => Value::Integer(self.fw.result as i64),
            (fw::OBJECT_ID, fw::PKG_NAME) => Value::String(if self.fw.pkg_version.is_empty() {
                ""
            } else {
                "otafleet"
            }),
            (fw::OBJECT_ID, fw::PKG_VERSION) => Value::String(&self.fw.pkg_version),
            (fw::OBJECT_ID, fw::PROTOCOL_SUPPORT) => {
                let protocols = if self.cfg.secure {
                    PROTOCOLS_SECURE
                } else {
                    PROTOCOLS
                };
                return Some(Resource::Multiple(protocols));
            }
            (fw::OBJECT_ID, fw::DELIVERY_METHOD) => Value::Integer(2), // pull and push
            (fw::OBJECT_ID, fw::SEVERITY) => Value::Integer(i64::from(self.fw.severity)),
            (fw::OBJECT_ID, fw::LAST_STATE_CHANGE_TIME) => {
                Value::Integer((self.fw.last_state_change.0 / 1000) as i64)
            }
            (fw::OBJECT_ID, fw::MAX_DEFER_PERIOD) => {
                Value::Integer(i64::from(self.fw.max_defer_period))
            }
            _ => return None,
        }))
    }
}
