//! Downloads under way, from the firmware server's own record of the blocks it served:
//! `GET /downloads` (all of them) and `GET /clients/{ep}/download` (one device's, `null` when it
//! downloads nothing).

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Api, ApiError, ApiResult};

/// `GET /downloads`: each transfer with the endpoint it belongs to (when the server knows the
/// address) and its progress.
pub(super) async fn all(State(api): State<Api>) -> Json<Value> {
    let list: Vec<Value> = api
        .server
        .downloads
        .all()
        .into_iter()
        .map(|(peer, release, progress)| {
            let endpoint = api.server.registry.by_address(peer).map(|r| r.endpoint);
            let mut v = json!(progress);
            v["endpoint"] = json!(endpoint);
            v["address"] = json!(peer.to_string());
            v["release_id"] = json!(release);
            v
        })
        .collect();
    Json(json!(list))
}

/// `GET /clients/{ep}/download`: the progress of the release the device's running job sends it
/// (or, with no job, of any transfer from its address), else `null`.
pub(super) async fn of_client(
    State(api): State<Api>,
    UrlPath(ep): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let s = &api.server;
    let reg = s
        .registry
        .get(&ep)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no client {ep:?}")))?;
    let running = s
        .store
        .unfinished_job_devices()
        .map_err(super::internal)?
        .into_iter()
        .find(|d| d.endpoint == ep);
    let release = match running {
        Some(d) => s
            .store
            .job(d.job_id)
            .map_err(super::internal)?
            .map(|(job, _)| job.release_id),
        None => s
            .downloads
            .all()
            .into_iter()
            .find(|(peer, _, _)| *peer == reg.address)
            .map(|(_, release, _)| release),
    };
    let Some(release) = release else {
        return Ok(Json(Value::Null));
    };
    Ok(Json(match s.downloads.progress(reg.address, &release) {
        Some(p) => {
            let mut v = json!(p);
            v["release_id"] = json!(release);
            v
        }
        None => Value::Null,
    }))
}
