//! Device management through any node: on a shared (PostgreSQL) store, a request under
//! `/api/clients/EP/<operation>/...` for a device another node holds is forwarded to that node's
//! admin API (its URL and heartbeat are in the `nodes` table), because only the owner's socket
//! reaches the device and only it knows the device's observations and awake window. The answer
//! comes back as the owner gave it. Forwarded once at most: a forwarded request carries
//! [`FORWARDED`], and the node it reaches answers it itself.
//!
//! When the owner has not sent a heartbeat lately (it died and the device has not spoken to
//! another node yet), the request is not forwarded, and the device manager answers 421 naming
//! the owner.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Api, ApiError};
use crate::server::HEARTBEAT_EVERY;

/// The header that marks a forwarded request.
pub(super) const FORWARDED: &str = "x-otafleet-forwarded-by";

/// The operations that need the device's owner (everything under `/clients/EP/` that talks to
/// the device).
const DM_OPERATIONS: &[&str] = &[
    "read",
    "discover",
    "write",
    "execute",
    "attributes",
    "create",
    "delete",
    "observe",
];

/// How long a request may wait for the owner's answer: the owner may wait for a sleeping device
/// (`serve --request-timeout` and the queue) before it answers.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) async fn to_owner(State(api): State<Api>, request: Request, next: Next) -> Response {
    let s = &api.server;
    if !s.registry.is_shared() || request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| request.uri().clone());
    let Some(endpoint) = dm_endpoint(uri.path()) else {
        return next.run(request).await;
    };
    if s.registry.get(&endpoint).is_some() {
        return next.run(request).await;
    }
    let Some(owner) = s.registry.lookup(&endpoint).and_then(|r| r.owner_node) else {
        return next.run(request).await;
    };
    if owner == s.config.node_id {
        return next.run(request).await;
    }
    // Three missed heartbeats: taken as dead.
    let since = s.clock.now_ms() - 3 * i64::try_from(HEARTBEAT_EVERY.as_millis()).unwrap_or(0);
    let base = match s.store.node_api(&owner, since) {
        Ok(Some(url)) => url,
        Ok(None) => return next.run(request).await,
        Err(e) => {
            tracing::error!("cannot look up the admin API of node {owner}: {e}");
            return next.run(request).await;
        }
    };
    let method = request.method().clone();
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match axum::body::to_bytes(request.into_body(), api.max_upload).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
            .into_response();
        }
    };
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let me = s.config.node_id.clone();
    let target = owner.clone();
    let answer = tokio::task::spawn_blocking(move || {
        forward(&url, method.as_str(), &auth, content_type, &body, &me)
    })
    .await;
    match answer {
        Ok(Ok((status, content_type, body))) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(ct) = content_type
                && let Ok(v) = ct.parse()
            {
                response.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            response
        }
        Ok(Err(e)) => ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "{endpoint:?} is held by node {target:?}, which did not answer at {base}: {e}; try again, or ask that node's admin API"
            ),
        )
        .into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("forwarding failed: {e}"))
            .into_response(),
    }
}

/// The endpoint of a device-management path (`/api/clients/EP/read/3/0/3`), percent-decoded.
fn dm_endpoint(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/api/clients/")
        .or_else(|| path.strip_prefix("/clients/"))?;
    let (ep, rest) = rest.split_once('/')?;
    let op = rest.split('/').next()?;
    if !DM_OPERATIONS.contains(&op) {
        return None;
    }
    percent_encoding::percent_decode_str(ep)
        .decode_utf8()
        .ok()
        .map(|ep| ep.into_owned())
}

/// One forwarded request: status, content type and body of the owner's answer.
fn forward(
    url: &str,
    method: &str,
    auth: &str,
    content_type: Option<String>,
    body: &[u8],
    me: &str,
) -> Result<(u16, Option<String>, Vec<u8>), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(FORWARD_TIMEOUT))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent
            .get(url)
            .header("Authorization", auth)
            .header(FORWARDED, me)
            .call()?,
        "DELETE" => agent
            .delete(url)
            .header("Authorization", auth)
            .header(FORWARDED, me)
            .call()?,
        _ => {
            let mut req = agent
                .post(url)
                .header("Authorization", auth)
                .header(FORWARDED, me);
            if let Some(ct) = content_type {
                req = req.content_type(ct);
            }
            req.send(body)?
        }
    };
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.body_mut().read_to_vec()?;
    Ok((response.status().as_u16(), content_type, body))
}

#[cfg(test)]
mod tests {
    use super::dm_endpoint;

    #[test]
    fn only_device_management_paths_name_an_endpoint() {
        assert_eq!(
            dm_endpoint("/api/clients/dev%2D1/read/3/0/3").as_deref(),
            Some("dev-1")
        );
        assert_eq!(
            dm_endpoint("/clients/d/observe/3/0/0").as_deref(),
            Some("d")
        );
        assert_eq!(dm_endpoint("/api/clients/d"), None);
        assert_eq!(dm_endpoint("/api/clients/d/download"), None);
        assert_eq!(dm_endpoint("/api/jobs/1"), None);
        // Not an escape: kept as written (no registration has that name, so it is answered here).
        assert_eq!(
            dm_endpoint("/api/clients/%zz/read/3").as_deref(),
            Some("%zz")
        );
        // Not UTF-8 once decoded: no endpoint.
        assert_eq!(dm_endpoint("/api/clients/%FF/read/3"), None);
    }
}
