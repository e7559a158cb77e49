//! Who may speak for an endpoint: the devices' DTLS credentials and OSCORE contexts (kept in the
//! store, cached here for the handshakes and the OSCORE layer), the server's security mode, and
//! the rule every registration request passes ([`Credentials::admit`]):
//!
//! * over DTLS, the PSK identity the peer authenticated with must be the endpoint's own;
//! * over OSCORE, the request's context (its identity `oscore:<kid>`) must be the endpoint's;
//! * over plain CoAP, the endpoint must have no credentials, and the server must not be in
//!   [`SecurityMode::Required`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::coap::dtls::PskLookup;
use crate::coap::oscore::{self, Context, OscoreContexts};
use crate::store::{CredentialRecord, OscoreRecord, Store, StoreError};

/// Whether plain CoAP devices may register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecurityMode {
    /// Devices without credentials register over plain CoAP (tests, the demo, NoSec fleets);
    /// devices with credentials only over DTLS or OSCORE.
    #[default]
    Optional,
    /// Only DTLS or OSCORE: every plain registration is refused.
    Required,
}

impl std::str::FromStr for SecurityMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "optional" => Ok(SecurityMode::Optional),
            "required" => Ok(SecurityMode::Required),
            other => Err(format!(
                "unknown security mode {other:?}: use optional or required"
            )),
        }
    }
}

/// An endpoint's credentials as shown to operators: never a key, secret or salt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub endpoint: String,
    /// Its DTLS PSK identity, if it has one.
    pub psk_identity: Option<String>,
    /// The server's OSCORE Sender and Recipient IDs for it (hex), if it has a context.
    pub oscore_sender_id: Option<String>,
    pub oscore_recipient_id: Option<String>,
    pub added_at_ms: i64,
}

/// Why a registration request is refused (answered 4.03 Forbidden with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this server requires DTLS or OSCORE: register over coaps:// or with OSCORE")]
    PlainNotAllowed,
    #[error("endpoint {0} has credentials: it must register over coaps://")]
    Secured(String),
    #[error("endpoint {0} has an OSCORE context: it must register with OSCORE")]
    SecuredOscore(String),
    #[error("the DTLS identity {identity} is not endpoint {endpoint}'s")]
    WrongIdentity { identity: String, endpoint: String },
    #[error("the OSCORE context {identity} is not endpoint {endpoint}'s")]
    WrongContext { identity: String, endpoint: String },
}

/// A bad provisioning request.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The credentials of every secured endpoint: the store's tables, cached for lookups by
/// identity (DTLS) and by kid (OSCORE).
pub struct Credentials {
    store: Arc<Store>,
    mode: SecurityMode,
    psks: RwLock<Psks>,
    oscore: OscoreContexts,
}

/// The DTLS PSKs, by identity (the handshake's lookup) and by endpoint (whether a device must use
/// DTLS, asked for every plain Register and firmware block): both lookups O(1), so 100 000
/// credentials cost nothing per request.
#[derive(Default)]
struct Psks {
    /// identity → (endpoint, key)
    by_identity: HashMap<String, (String, Vec<u8>)>,
    /// endpoint → identity
    identity_of: HashMap<String, String>,
}

impl Psks {
    fn insert(&mut self, endpoint: &str, identity: &str, key: Vec<u8>) {
        self.remove(endpoint);
        // An identity moved from another endpoint leaves that endpoint without a PSK.
        if let Some((was, _)) = self.by_identity.get(identity) {
            self.identity_of.remove(was);
        }
        self.by_identity
            .insert(identity.into(), (endpoint.into(), key));
        self.identity_of.insert(endpoint.into(), identity.into());
    }

    fn remove(&mut self, endpoint: &str) {
        if let Some(identity) = self.identity_of.remove(endpoint) {
            self.by_identity.remove(&identity);
        }
    }
}

/// An OSCORE context to provision, from the server's side: it sends with `sender_id` (the
/// device's Recipient ID) and the device's requests carry `recipient_id` as kid (the device's
/// Sender ID). AES-CCM-16-64-128 and HKDF-SHA-256, no ID Context.
#[derive(Clone)]
pub struct OscoreParams {
    pub sender_id: Vec<u8>,
    pub recipient_id: Vec<u8>,
    pub master_secret: Vec<u8>,
    pub master_salt: Vec<u8>,
}

/// Master Secret lengths accepted, in bytes (at least 128 bits of secret).
pub const MASTER_SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// Longest Master Salt accepted, in bytes.
pub const MAX_MASTER_SALT_LEN: usize = 64;

/// Longest PSK identity accepted (RFC 4279 §5.3 allows 2^16 − 1 bytes; devices send short ones).
pub const MAX_IDENTITY_LEN: usize = 128;
/// Key lengths accepted, in bytes (RFC 4279 §5.3: up to 64; at least 128 bits of secret).
pub const PSK_KEY_LEN: std::ops::RangeInclusive<usize> = 16..=64;

impl Credentials {
    pub fn load(store: Arc<Store>, mode: SecurityMode) -> Result<Self, StoreError> {
        let mut psks = Psks::default();
        for r in store.credentials()? {
            psks.insert(&r.endpoint, &r.psk_identity, r.psk_key);
        }
        let oscore = OscoreContexts::new(store.clone());
        for r in store.oscore_contexts()? {
            match Context::new(
                &r.master_secret,
                &r.master_salt,
                &r.sender_id,
                &r.recipient_id,
            ) {
                // Loaded at a start: the replay window is gone, so freshness comes from Echo.
                Ok(ctx) => oscore.insert(&r.endpoint, ctx, r.seq_reserved, false),
                Err(e) => tracing::error!("the OSCORE context of {} is unusable: {e}", r.endpoint),
            }
        }
        Ok(Credentials {
            store,
            mode,
            psks: RwLock::new(psks),
            oscore,
        })
    }

    /// The OSCORE contexts, for the layer that unprotects requests.
    pub fn oscore(&self) -> &OscoreContexts {
        &self.oscore
    }

    /// Sets `endpoint`'s OSCORE context (replacing an earlier one). Its sender sequence number
    /// continues from any earlier reservation, so the same keys never reuse a nonce.
    pub fn add_oscore(
        &self,
        endpoint: &str,
        p: &OscoreParams,
        now_ms: i64,
    ) -> Result<(), CredentialError> {
        let ctx = Self::check_oscore(endpoint, p)?;
        let reserved = self.store.put_oscore(&OscoreRecord {
            endpoint: endpoint.into(),
            sender_id: p.sender_id.clone(),
            recipient_id: p.recipient_id.clone(),
            master_secret: p.master_secret.clone(),
            master_salt: p.master_salt.clone(),
            seq_reserved: 0,
            added_at_ms: now_ms,
        })?;
        self.oscore.insert(endpoint, ctx, reserved, true);
        Ok(())
    }

    /// The context `p` describes, if it is acceptable (checked before anything is stored).
    pub fn check_oscore(endpoint: &str, p: &OscoreParams) -> Result<Context, CredentialError> {
        if endpoint.is_empty() {
            return Err(CredentialError::Invalid(
                "the endpoint name is empty".into(),
            ));
        }
        if !MASTER_SECRET_LEN.contains(&p.master_secret.len()) {
            return Err(CredentialError::Invalid(format!(
                "an OSCORE Master Secret has {} to {} bytes, not {}",
                MASTER_SECRET_LEN.start(),
                MASTER_SECRET_LEN.end(),
                p.master_secret.len()
            )));
        }
        if p.master_salt.len() > MAX_MASTER_SALT_LEN {
            return Err(CredentialError::Invalid(format!(
                "an OSCORE Master Salt has at most {MAX_MASTER_SALT_LEN} bytes"
            )));
        }
        if p.sender_id == p.recipient_id {
            return Err(CredentialError::Invalid(
                "the OSCORE Sender and Recipient IDs must differ (RFC 8613 §3.3)".into(),
            ));
        }
        Context::new(
            &p.master_secret,
            &p.master_salt,
            &p.sender_id,
            &p.recipient_id,
        )
        .map_err(|e| CredentialError::Invalid(e.to_string()))
    }

    pub fn mode(&self) -> SecurityMode {
        self.mode
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Psks> {
        self.psks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Psks> {
        self.psks.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `endpoint`'s PSK identity and key (replacing earlier ones).
    pub fn add(
        &self,
        endpoint: &str,
        identity: &str,
        key: &[u8],
        now_ms: i64,
    ) -> Result<(), CredentialError> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return Err(CredentialError::Invalid(format!(
                "a PSK identity has 1 to {MAX_IDENTITY_LEN} bytes"
            )));
        }
        if identity.starts_with(oscore::IDENTITY_PREFIX) {
            return Err(CredentialError::Invalid(format!(
                "a PSK identity may not start with {:?} (OSCORE's identities do)",
                oscore::IDENTITY_PREFIX
            )));
        }
        if !PSK_KEY_LEN.contains(&key.len()) {
            return Err(CredentialError::Invalid(format!(
                "a PSK key has {} to {} bytes ({} to {} hex digits), not {}",
                PSK_KEY_LEN.start(),
                PSK_KEY_LEN.end(),
                PSK_KEY_LEN.start() * 2,
                PSK_KEY_LEN.end() * 2,
                key.len()
            )));
        }
        if endpoint.is_empty() {
            return Err(CredentialError::Invalid(
                "the endpoint name is empty".into(),
            ));
        }
        let mut psks = self.write();
        self.store.put_credential(&CredentialRecord {
            endpoint: endpoint.into(),
            psk_identity: identity.into(),
            psk_key: key.to_vec(),
            added_at_ms: now_ms,
        })?;
        psks.insert(endpoint, identity, key.to_vec());
        Ok(())
    }

    /// Removes `endpoint`'s credentials, DTLS and OSCORE; false if it had none.
    pub fn remove(&self, endpoint: &str) -> Result<bool, StoreError> {
        let mut psks = self.write();
        let removed = self.store.delete_credential(endpoint)?;
        psks.remove(endpoint);
        let removed_oscore = self.store.delete_oscore(endpoint)?;
        self.oscore.remove(endpoint);
        Ok(removed || removed_oscore)
    }

    /// Every secured endpoint, without keys or secrets.
    pub fn list(&self) -> Result<Vec<CredentialInfo>, StoreError> {
        let mut by_ep: std::collections::BTreeMap<String, CredentialInfo> = Default::default();
        let blank = |endpoint: &str, added_at_ms| CredentialInfo {
            endpoint: endpoint.into(),
            psk_identity: None,
            oscore_sender_id: None,
            oscore_recipient_id: None,
            added_at_ms,
        };
        for r in self.store.credentials()? {
            let info = by_ep
                .entry(r.endpoint.clone())
                .or_insert_with(|| blank(&r.endpoint, r.added_at_ms));
            info.psk_identity = Some(r.psk_identity);
        }
        for r in self.store.oscore_contexts()? {
            let info = by_ep
                .entry(r.endpoint.clone())
                .or_insert_with(|| blank(&r.endpoint, r.added_at_ms));
            info.oscore_sender_id = Some(hex(&r.sender_id));
            info.oscore_recipient_id = Some(hex(&r.recipient_id));
            info.added_at_ms = info.added_at_ms.max(r.added_at_ms);
        }
        Ok(by_ep.into_values().collect())
    }

    /// Whether `endpoint` has credentials (so it is reached only over DTLS or OSCORE).
    pub fn is_secured(&self, endpoint: &str) -> bool {
        self.has_psk(endpoint) || self.oscore.has_endpoint(endpoint)
    }

    /// Whether `endpoint` has DTLS credentials.
    pub fn has_psk(&self, endpoint: &str) -> bool {
        self.read().identity_of.contains_key(endpoint)
    }

    /// Whether `endpoint` has an OSCORE context.
    pub fn has_oscore(&self, endpoint: &str) -> bool {
        self.oscore.has_endpoint(endpoint)
    }

    /// Whether a registration request for `endpoint` may go on, from a peer that authenticated
    /// as `identity` (None: plain CoAP).
    pub fn admit(&self, endpoint: &str, identity: Option<&str>) -> Result<(), Refusal> {
        match identity {
            Some(identity) if identity.starts_with(oscore::IDENTITY_PREFIX) => {
                if self.oscore.identity_owner(identity).as_deref() == Some(endpoint) {
                    Ok(())
                } else {
                    Err(Refusal::WrongContext {
                        identity: identity.into(),
                        endpoint: endpoint.into(),
                    })
                }
            }
            Some(identity) => {
                let owner = self
                    .read()
                    .by_identity
                    .get(identity)
                    .map(|(ep, _)| ep.clone());
                if owner.as_deref() == Some(endpoint) {
                    Ok(())
                } else {
                    Err(Refusal::WrongIdentity {
                        identity: identity.into(),
                        endpoint: endpoint.into(),
                    })
                }
            }
            None if self.mode == SecurityMode::Required => Err(Refusal::PlainNotAllowed),
            None if self.has_psk(endpoint) => Err(Refusal::Secured(endpoint.into())),
            None if self.has_oscore(endpoint) => Err(Refusal::SecuredOscore(endpoint.into())),
            None => Ok(()),
        }
    }
}

impl PskLookup for Credentials {
    fn psk(&self, identity: &str) -> Option<Vec<u8>> {
        self.read()
            .by_identity
            .get(identity)
            .map(|(_, key)| key.clone())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a PSK key given as hex (`--psk-key`, the REST API).
pub fn parse_hex_key(hex: &str) -> Result<Vec<u8>, String> {
    parse_hex(hex).map_err(|()| "the PSK key must be hex digits, two per byte".into())
}

/// Parses bytes given as hex (an OSCORE ID, secret or salt); `what` names it in the error.
pub fn parse_hex_field(what: &str, hex: &str) -> Result<Vec<u8>, String> {
    parse_hex(hex).map_err(|()| format!("the {what} must be hex digits, two per byte"))
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, ()> {
    let hex = hex.trim();
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| ()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(mode: SecurityMode) -> Credentials {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let c = Credentials::load(store, mode).unwrap();
        c.add("dev-a", "id-a", &[7; 16], 1).unwrap();
        c.add("dev-b", "id-b", &[8; 16], 1).unwrap();
        c
    }

    #[test]
    fn dtls_registrations_need_the_endpoints_own_identity() {
        let c = creds(SecurityMode::Optional);
        assert_eq!(c.admit("dev-a", Some("id-a")), Ok(()));
        assert!(matches!(
            c.admit("dev-a", Some("id-b")),
            Err(Refusal::WrongIdentity { .. })
        ));
        // An identity without an endpoint of that name cannot register a new one either.
        assert!(c.admit("dev-new", Some("id-a")).is_err());
        assert_eq!(c.psk("id-a"), Some(vec![7; 16]));
        assert_eq!(c.psk("id-x"), None);
    }

    #[test]
    fn plain_registrations_only_for_unsecured_endpoints_and_only_when_optional() {
        let c = creds(SecurityMode::Optional);
        assert_eq!(c.admit("nosec", None), Ok(()));
        assert_eq!(
            c.admit("dev-a", None),
            Err(Refusal::Secured("dev-a".into()))
        );
        let c = creds(SecurityMode::Required);
        assert_eq!(c.admit("nosec", None), Err(Refusal::PlainNotAllowed));
    }

    #[test]
    fn changing_or_removing_credentials_takes_effect_at_once() {
        let c = creds(SecurityMode::Optional);
        c.add("dev-a", "id-a2", &[9; 16], 2).unwrap();
        assert_eq!(c.psk("id-a"), None);
        assert_eq!(c.admit("dev-a", Some("id-a2")), Ok(()));
        assert!(c.remove("dev-a").unwrap());
        assert_eq!(c.psk("id-a2"), None);
        assert_eq!(c.admit("dev-a", None), Ok(()));
        let listed = c.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].endpoint, "dev-b");
        assert_eq!(listed[0].psk_identity.as_deref(), Some("id-b"));
    }

    #[test]
    fn the_endpoint_index_follows_adds_refusals_and_removals() {
        let c = creds(SecurityMode::Optional);
        assert!(c.has_psk("dev-a") && c.has_psk("dev-b") && !c.has_psk("dev-c"));
        // Another endpoint cannot take an identity in use: refused, nothing changes.
        assert!(c.add("dev-c", "id-a", &[5; 16], 3).is_err());
        assert!(c.has_psk("dev-a") && !c.has_psk("dev-c"));
        assert_eq!(c.psk("id-a"), Some(vec![7; 16]));
        // A new identity for dev-a frees the old one, which dev-c may then have.
        c.add("dev-a", "id-a3", &[6; 16], 4).unwrap();
        c.add("dev-c", "id-a", &[5; 16], 5).unwrap();
        assert_eq!(c.admit("dev-a", Some("id-a3")), Ok(()));
        assert_eq!(c.admit("dev-c", Some("id-a")), Ok(()));
        assert!(c.remove("dev-c").unwrap());
        assert!(!c.has_psk("dev-c") && c.has_psk("dev-a"));
        assert_eq!(c.psk("id-a"), None);
        assert_eq!(c.psk("id-a3"), Some(vec![6; 16]));
    }

    fn oscore_params(rid: u8) -> OscoreParams {
        OscoreParams {
            sender_id: vec![0x5e],
            recipient_id: vec![rid],
            master_secret: vec![3; 16],
            master_salt: vec![],
        }
    }

    #[test]
    fn oscore_registrations_need_the_endpoints_own_context() {
        let c = creds(SecurityMode::Optional);
        c.add_oscore("dev-o", &oscore_params(0xc1), 1).unwrap();
        c.add_oscore("dev-p", &oscore_params(0xc2), 1).unwrap();
        assert_eq!(c.admit("dev-o", Some("oscore:c1")), Ok(()));
        assert!(matches!(
            c.admit("dev-o", Some("oscore:c2")),
            Err(Refusal::WrongContext { .. })
        ));
        assert!(c.admit("dev-a", Some("oscore:c1")).is_err());
        assert_eq!(
            c.admit("dev-o", None),
            Err(Refusal::SecuredOscore("dev-o".into()))
        );
        assert!(c.is_secured("dev-o") && !c.has_psk("dev-o"));
        // Another endpoint's Recipient ID, equal IDs, a short secret, a long ID: refused.
        assert!(matches!(
            c.add_oscore("dev-q", &oscore_params(0xc1), 1),
            Err(CredentialError::Store(StoreError::Exists(_)))
        ));
        assert!(c.add_oscore("dev-q", &oscore_params(0x5e), 1).is_err());
        let mut p = oscore_params(0xc3);
        p.master_secret = vec![1; 8];
        assert!(
            c.add_oscore("dev-q", &p, 1)
                .unwrap_err()
                .to_string()
                .contains("16 to 64")
        );
        p.master_secret = vec![1; 16];
        p.recipient_id = vec![1; 8];
        assert!(
            c.add_oscore("dev-q", &p, 1)
                .unwrap_err()
                .to_string()
                .contains("at most 7")
        );
        assert!(c.add("dev-q", "oscore:c3", &[1; 16], 0).is_err());
        // Listed without secrets; removed with the rest.
        let listed = c.list().unwrap();
        let o = listed.iter().find(|i| i.endpoint == "dev-o").unwrap();
        assert_eq!(o.oscore_recipient_id.as_deref(), Some("c1"));
        assert_eq!(o.psk_identity, None);
        assert!(!serde_json::to_string(&listed).unwrap().contains("0303"));
        assert!(c.remove("dev-o").unwrap());
        assert_eq!(c.admit("dev-o", None), Ok(()));
        assert!(c.admit("dev-o", Some("oscore:c1")).is_err());
    }

    #[test]
    fn bad_keys_and_identities_are_refused_with_a_reason() {
        let c = creds(SecurityMode::Optional);
        assert!(c.add("x", "", &[1; 16], 0).is_err());
        assert!(
            c.add("x", "id", &[1; 8], 0)
                .unwrap_err()
                .to_string()
                .contains("16 to 64 bytes")
        );
        assert!(matches!(
            c.add("x", "id-a", &[1; 16], 0),
            Err(CredentialError::Store(StoreError::Exists(_)))
        ));
        assert_eq!(parse_hex_key("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(parse_hex_key("0g").is_err());
        assert!(parse_hex_key("abc").is_err());
        assert!(parse_hex_key("é1").is_err());
    }
}
