//! Device credentials (issue 14): `GET /devices` lists the endpoints that have DTLS credentials
//! or an OSCORE context (never their keys or secrets), `POST /devices` sets one endpoint's PSK
//! identity and key and/or its OSCORE context, `DELETE /devices/{ep}` removes them.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ApiResult, bad, internal};
use crate::security::{CredentialError, Credentials, OscoreParams, parse_hex_field, parse_hex_key};
use crate::store::StoreError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddDevice {
    endpoint: String,
    psk_identity: Option<String>,
    /// The key in hex.
    psk_key: Option<String>,
    /// The server's OSCORE Sender ID, Recipient ID, Master Secret and Master Salt, in hex.
    oscore_sender_id: Option<String>,
    oscore_recipient_id: Option<String>,
    oscore_master_secret: Option<String>,
    oscore_master_salt: Option<String>,
}

/// The OSCORE part of a request, if any; all of sender, recipient and secret or none.
fn oscore_params(req: &AddDevice) -> Result<Option<OscoreParams>, String> {
    match (
        &req.oscore_sender_id,
        &req.oscore_recipient_id,
        &req.oscore_master_secret,
    ) {
        (None, None, None) if req.oscore_master_salt.is_none() => Ok(None),
        (Some(s), Some(r), Some(m)) => Ok(Some(OscoreParams {
            sender_id: parse_hex_field("oscore_sender_id", s)?,
            recipient_id: parse_hex_field("oscore_recipient_id", r)?,
            master_secret: parse_hex_field("oscore_master_secret", m)?,
            master_salt: match &req.oscore_master_salt {
                Some(salt) => parse_hex_field("oscore_master_salt", salt)?,
                None => Vec::new(),
            },
        })),
        _ => Err(
            "an OSCORE context needs oscore_sender_id, oscore_recipient_id and \
             oscore_master_secret (oscore_master_salt is optional)"
                .into(),
        ),
    }
}

pub(super) async fn list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    let list = api.server.credentials.list().map_err(internal)?;
    Ok(Json(json!(list)))
}

/// Sets the credentials. A registration the endpoint holds from a peer that did not
/// authenticate with this identity is ended: from now on it registers over DTLS only.
pub(super) async fn add(
    State(api): State<Api>,
    Json(req): Json<AddDevice>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = &api.server;
    let psk = match (&req.psk_identity, &req.psk_key) {
        (Some(id), Some(key)) => Some((id.clone(), parse_hex_key(key).map_err(bad)?)),
        (None, None) => None,
        _ => return Err(bad("psk_identity and psk_key go together")),
    };
    let oscore = oscore_params(&req).map_err(bad)?;
    if psk.is_none() && oscore.is_none() {
        return Err(bad(
            "give psk_identity and psk_key, or an OSCORE context (oscore_sender_id, \
             oscore_recipient_id, oscore_master_secret), or both",
        ));
    }
    let refused = |e| match e {
        CredentialError::Invalid(m) => bad(m),
        CredentialError::Store(StoreError::Exists(m)) => {
            ApiError(StatusCode::CONFLICT, format!("{m} already exists"))
        }
        CredentialError::Store(e) => internal(e),
    };
    // Both parts are checked before either is stored.
    if let Some(p) = &oscore {
        Credentials::check_oscore(&req.endpoint, p).map_err(refused)?;
    }
    if let Some((identity, key)) = &psk {
        s.credentials
            .add(&req.endpoint, identity, key, s.clock.now_ms())
            .map_err(refused)?;
    }
    if let Some(p) = &oscore {
        s.credentials
            .add_oscore(&req.endpoint, p, s.clock.now_ms())
            .map_err(refused)?;
    }
    // A registration the endpoint holds from a peer that did not authenticate as it ends: from
    // now on it registers over DTLS or OSCORE only (an OSCORE registration, whose context was
    // just set, ends too: it registers again with the new one).
    if let Some(reg) = s.registry.get(&req.endpoint) {
        let identity = s.coaps.as_ref().and_then(|(_, d)| d.identity(reg.address));
        if psk.is_none() || identity.as_deref() != req.psk_identity.as_deref() {
            let _ = s.registry.deregister(&reg.reg_id);
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "endpoint": req.endpoint,
            "psk_identity": req.psk_identity,
            "oscore_sender_id": oscore.as_ref().map(|_| req.oscore_sender_id.clone()),
            "oscore_recipient_id": oscore.as_ref().map(|_| req.oscore_recipient_id.clone()),
        })),
    ))
}

pub(super) async fn remove(
    State(api): State<Api>,
    UrlPath(ep): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    if api.server.credentials.remove(&ep).map_err(internal)? {
        Ok(Json(json!({ "endpoint": ep, "removed": true })))
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("endpoint {ep:?} has no credentials"),
        ))
    }
}
