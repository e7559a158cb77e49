//! The admin REST API (axum) under `/api`, behind a bearer token: clients and device management,
//! releases, update jobs, and a server-sent event stream. Errors are JSON `{"error": "..."}` with
//! a status that says whose fault it was (4xx: the request, 502: the device, 504: no answer).
//!
//! - this module: the router, authentication, errors, and the handlers of devices, releases, jobs
//!   and campaigns;
//! - `devices`: device credentials (DTLS PSK identity and key);
//! - `models`: the object models (list, show, add) and Discover answers annotated with them;
//! - `downloads`: the progress of downloads under way, from the server's record of blocks served.

mod devices;
mod downloads;
mod forward;
mod models;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lwm2m_core::{Path, content, glob};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::campaign::{CampaignError, CampaignRequest, DevicePage};
use crate::content::WriteFormat;
use crate::dm::DmError;
use crate::jobs::JobError;
use crate::repository::AddError;
use crate::server::Server;
use crate::store::ReleaseRecord;

/// An API error: status and message.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<DmError> for ApiError {
    fn from(e: DmError) -> Self {
        let status = match &e {
            DmError::UnknownClient(_) => StatusCode::NOT_FOUND,
            // 421: the request went to a node that cannot answer it; the text names the one.
            DmError::Elsewhere { .. } => StatusCode::MISDIRECTED_REQUEST,
            DmError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            DmError::Asleep | DmError::Timeout | DmError::Coap(_) => StatusCode::GATEWAY_TIMEOUT,
            DmError::Device { .. } | DmError::Content(_) => StatusCode::BAD_GATEWAY,
            DmError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DmError::NoSecureChannel(_) => StatusCode::SERVICE_UNAVAILABLE,
            DmError::OscoreOnly(_) => StatusCode::NOT_IMPLEMENTED,
            DmError::Oscore(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let status = match &e {
            JobError::UnknownRelease(_) | JobError::UnknownJob(_) | JobError::UnknownClient(_) => {
                StatusCode::NOT_FOUND
            }
            JobError::NoEndpoints => StatusCode::BAD_REQUEST,
            JobError::Busy(..) => StatusCode::CONFLICT,
            JobError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        let status = match &e {
            CampaignError::Invalid(_) => StatusCode::BAD_REQUEST,
            CampaignError::Unknown(_) => StatusCode::NOT_FOUND,
            CampaignError::Conflict(_) => StatusCode::CONFLICT,
            CampaignError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        let status = match &e {
            AddError::Collision { .. } => StatusCode::CONFLICT,
            AddError::Store(_) | AddError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError(status, e.to_string())
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) server: Arc<Server>,
    token: Arc<str>,
    /// Largest request body (a release upload), in bytes.
    max_upload: usize,
}

/// The router, with every `/api` route behind `Authorization: Bearer <token>`, and the dashboard
/// (static files, no token) at `/`.
pub fn router(server: Arc<Server>, token: &str, max_upload: usize) -> Router {
    let api = Api {
        server,
        token: token.into(),
        max_upload,
    };
    let routes = Router::new()
        .route("/clients", get(clients))
        .route("/fleet", get(fleet))
        .route("/clients/{ep}", get(client))
        .route("/clients/{ep}/read/{*path}", get(read))
        .route("/clients/{ep}/discover/{*path}", get(models::discover))
        .route("/clients/{ep}/download", get(downloads::of_client))
        .route("/clients/{ep}/write/{*path}", post(write))
        .route("/clients/{ep}/execute/{*path}", post(execute))
        .route("/clients/{ep}/attributes/{*path}", post(attributes))
        .route("/clients/{ep}/create/{*path}", post(create))
        .route("/clients/{ep}/delete/{*path}", post(delete))
        .route(
            "/clients/{ep}/observe/{*path}",
            post(observe).delete(cancel_observe),
        )
        .route("/devices", get(devices::list).post(devices::add))
        .route("/devices/{ep}", axum::routing::delete(devices::remove))
        .route("/models", get(models::list).post(models::add))
        .route("/models/{id}", get(models::show))
        .route("/downloads", get(downloads::all))
        .route("/releases", get(releases).post(add_release))
        .route("/releases/{id}", get(release))
        .route("/jobs", get(jobs).post(start_job))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/audit", get(job_audit))
        .route("/campaigns", get(campaigns).post(create_campaign))
        .route("/campaigns/{id}", get(campaign))
        .route("/campaigns/{id}/pause", post(pause_campaign))
        .route("/campaigns/{id}/resume", post(resume_campaign))
        .route("/campaigns/{id}/abort", post(abort_campaign))
        .route("/events", get(events))
        // Inside the token check: only an authorized request is forwarded.
        .layer(middleware::from_fn_with_state(
            api.clone(),
            forward::to_owner,
        ))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(DefaultBodyLimit::max(max_upload))
        .with_state(api);
    Router::new()
        .nest("/api", routes)
        .merge(crate::dashboard::router())
}

async fn authorize(
    State(api): State<Api>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    // Compare without an early exit, so the time taken does not tell how much of it was right.
    let want = api.token.as_bytes();
    let same = given.len() == want.len()
        && given
            .bytes()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer ...)".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` work too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// A refused upload: 413 when it is over the limit, else 400 with the parser's reason.
fn upload_error(api: &Api, e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(api)
    } else {
        bad(format!("bad upload: {}", e.body_text()))
    }
}

fn too_large(api: &Api) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than this server takes ({} MiB; raise it with `serve --max-upload-mib`)",
            api.max_upload >> 20
        ),
    )
}

pub(crate) fn lwm2m_path(p: &str) -> ApiResult<Path> {
    Path::parse(&format!("/{}", p.trim_start_matches('/')))
        .map_err(|e| bad(format!("bad LwM2M path {p:?}: {e}")))
}

async fn clients(State(api): State<Api>) -> Json<Value> {
    // On PostgreSQL, every node's devices (with their owner), not only this node's.
    Json(json!(api.server.registry.fleet()))
}

async fn client(State(api): State<Api>, UrlPath(ep): UrlPath<String>) -> ApiResult<Json<Value>> {
    let reg = api
        .server
        .registry
        .lookup(&ep)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no client {ep:?}")))?;
    Ok(Json(json!(reg)))
}

#[derive(Deserialize)]
struct ReadQuery {
    /// tlv, senml-cbor, text, opaque (default: the client chooses).
    format: Option<String>,
}

fn format_number(f: &str) -> ApiResult<u16> {
    Ok(match f {
        "tlv" => content::LWM2M_TLV,
        "senml-cbor" | "senml" => content::SENML_CBOR,
        "text" => content::TEXT_PLAIN,
        "opaque" => content::OCTET_STREAM,
        "link" => content::LINK_FORMAT,
        other => {
            return Err(bad(format!(
                "unknown format {other:?}: tlv, senml-cbor, text, opaque"
            )));
        }
    })
}

async fn read(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    let accept = q.format.as_deref().map(format_number).transpose()?;
    let answer = api.server.dm.read(&ep, &lwm2m_path(&path)?, accept).await?;
    // A read that returned the model (/3/0/1) or the firmware version (/3/0/3) fills the cache
    // that campaign filters and the fleet view use, so a look at a device is not wasted.
    crate::device_info::remember(&api.server, &ep, &answer.values);
    Ok(Json(json!(answer)))
}

/// `GET /fleet?filter=&limit=`: what the dashboard's fleet view shows. The counts cover every
/// registration; the device rows only those whose endpoint contains `filter` (a glob when it has
/// `*` or `?`), at most `limit` (default 1000), in name order.
#[derive(Deserialize)]
struct FleetQuery {
    filter: Option<String>,
    limit: Option<usize>,
}

async fn fleet(State(api): State<Api>, Query(q): Query<FleetQuery>) -> ApiResult<Json<Value>> {
    let mut regs = api.server.registry.fleet();
    regs.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    let infos = api.server.store.device_infos().map_err(internal)?;
    let filter = q.filter.unwrap_or_default();
    let matches = |ep: &str| {
        if filter.contains(['*', '?']) {
            glob::matches(&filter, ep)
        } else {
            ep.contains(filter.as_str())
        }
    };
    let limit = q.limit.unwrap_or(1000);
    let (mut queue_mode, mut asleep, mut matching) = (0, 0, 0);
    let mut versions: std::collections::BTreeMap<Option<String>, u64> = Default::default();
    let mut devices = Vec::new();
    for reg in &regs {
        let awake = api.server.registry.is_reachable(&reg.endpoint);
        queue_mode += u64::from(reg.queue_mode);
        asleep += u64::from(!awake);
        let info = infos.get(&reg.endpoint);
        let version = info.and_then(|i| i.firmware_version.clone());
        *versions.entry(version.clone()).or_default() += 1;
        if matches(&reg.endpoint) {
            matching += 1;
            if devices.len() < limit {
                devices.push(json!({
                    "endpoint": reg.endpoint,
                    "address": reg.address.to_string(),
                    "queue_mode": reg.queue_mode,
                    "awake": awake,
                    "lifetime_s": reg.lifetime_s,
                    "lwm2m_version": reg.lwm2m_version,
                    "binding": reg.binding,
                    "registered_at_ms": reg.registered_at_ms,
                    "updated_at_ms": reg.updated_at_ms,
                    "firmware_version": version,
                    "model": info.and_then(|i| i.model.clone()),
                }));
            }
        }
    }
    // Most devices first; `null` is "not known yet" (never read, never updated by a campaign).
    let mut versions: Vec<_> = versions.into_iter().collect();
    versions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|(version, count)| json!({ "version": version, "count": count }))
        .collect();
    Ok(Json(json!({
        "registered": regs.len(),
        "queue_mode": queue_mode,
        "asleep": asleep,
        "versions": versions,
        "matching": matching,
        "devices": devices,
    })))
}

#[derive(Deserialize)]
struct WriteBody {
    value: Value,
    /// PUT (replace, the default) or POST (partial update) for an instance.
    #[serde(default = "yes")]
    replace: bool,
    /// text, opaque, tlv or senml-cbor (default: plain text for one value, else the client's).
    format: Option<String>,
}

fn yes() -> bool {
    true
}

async fn write(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    body: Result<Json<WriteBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|e| bad(format!("bad write request: {}", e.body_text())))?;
    let format = match body.format.as_deref() {
        None => None,
        Some(f) => Some(WriteFormat::from_name(f).ok_or_else(|| {
            bad(format!(
                "unknown format {f:?}: text, opaque, tlv or senml-cbor"
            ))
        })?),
    };
    Ok(Json(json!(
        api.server
            .dm
            .write_as(&ep, &lwm2m_path(&path)?, &body.value, body.replace, format)
            .await?
    )))
}

#[derive(Deserialize, Default)]
struct ExecBody {
    args: Option<String>,
}

async fn execute(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    body: Option<Json<ExecBody>>,
) -> ApiResult<Json<Value>> {
    let args = body.map(|b| b.0).unwrap_or_default().args;
    Ok(Json(json!(
        api.server
            .dm
            .execute(&ep, &lwm2m_path(&path)?, args.as_deref())
            .await?
    )))
}

async fn attributes(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    Json(attrs): Json<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let list: Vec<(String, Option<String>)> = attrs
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, v)
        })
        .collect();
    Ok(Json(json!(
        api.server
            .dm
            .write_attributes(&ep, &lwm2m_path(&path)?, &list)
            .await?
    )))
}

async fn create(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    Json(values): Json<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        api.server
            .dm
            .create(&ep, &lwm2m_path(&path)?, &values)
            .await?
    )))
}

async fn delete(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        api.server.dm.delete(&ep, &lwm2m_path(&path)?).await?
    )))
}

async fn observe(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        api.server.dm.observe(&ep, &lwm2m_path(&path)?).await?
    )))
}

async fn cancel_observe(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let was = api
        .server
        .dm
        .cancel_observe(&ep, &lwm2m_path(&path)?)
        .await?;
    Ok(Json(json!({ "cancelled": was })))
}

async fn releases(State(api): State<Api>) -> ApiResult<Json<Value>> {
    let all = api.server.store.releases().map_err(internal)?;
    Ok(Json(Value::Array(
        all.iter().map(|r| release_json(r, &all)).collect(),
    )))
}

async fn release(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    let all = api.server.store.releases().map_err(internal)?;
    let r = all.iter().find(|r| r.id == id);
    let r = r.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no release {id}")))?;
    Ok(Json(release_json(r, &all)))
}

/// A release as the API shows it; a delta also names its precursor's version, when a release
/// of that image is known (`precursor_version`).
fn release_json(r: &ReleaseRecord, all: &[ReleaseRecord]) -> Value {
    let mut v = json!(r);
    if let Some(pre) = &r.precursor_sha256 {
        let version = all
            .iter()
            .find(|o| o.family_sha256() == pre && o.version.is_some())
            .and_then(|o| o.version.clone());
        v["precursor_version"] = json!(version);
    }
    v
}

/// Multipart upload: `envelope` + `image` (a SUIT release), or `image` + `version` (plain);
/// `max_block_size` caps the Block2 size the release is served in (also on a release that exists).
async fn add_release(
    State(api): State<Api>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Refused before a byte of the body is read when the client says how large it is.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > api.max_upload as u64) {
        return Err(too_large(&api));
    }
    let mut form = form.map_err(|e| bad(format!("bad upload: {}", e.body_text())))?;
    let (mut envelope, mut image, mut version, mut max_block) = (None, None, None, None);
    while let Some(field) = form.next_field().await.map_err(|e| upload_error(&api, e))? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| upload_error(&api, e))?;
        match name.as_str() {
            "envelope" => envelope = Some(bytes),
            "image" => image = Some(bytes),
            "version" => version = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "max_block_size" => {
                let text = String::from_utf8_lossy(&bytes);
                let n: u16 = text.trim().parse().map_err(|_| {
                    bad(format!(
                        "max_block_size {text:?}: give a power of two from 16 to 1024"
                    ))
                })?;
                max_block = Some(n);
            }
            other => return Err(bad(format!("unexpected form field {other:?}"))),
        }
    }
    let image = image.ok_or_else(|| bad("the form has no `image` field"))?;
    let now = api.server.clock.now_ms();
    let repo = api.server.repo.clone();
    let added = tokio::task::spawn_blocking(move || {
        if let Some(n) = max_block {
            // Checked before anything is stored.
            lwm2m_core::block::szx_for_size(usize::from(n))
                .map_err(|_| AddError::BadBlockSize(n))?;
        }
        let (mut record, new) = match (envelope, version) {
            (Some(env), None) => repo.add_suit(&env, &image, now),
            (None, Some(v)) => repo.add_plain(&image, &v, now),
            (Some(_), Some(_)) => Err(AddError::ImageMismatch(
                "give either an envelope or a version, not both".into(),
            )),
            (None, None) => Err(AddError::NoVersion),
        }?;
        if max_block.is_some() {
            repo.set_max_block_size(&record.id, max_block)?;
            record.max_block_size = max_block;
        }
        Ok::<_, AddError>((record, new))
    })
    .await
    .map_err(internal)??;
    let (record, new) = added;
    let all = api.server.store.releases().map_err(internal)?;
    let shown = release_json(&record, &all);
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "id": record.id, "new": new, "release": shown })),
    ))
}

async fn jobs(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.server.jobs.list().map_err(internal)?)))
}

#[derive(Deserialize)]
struct StartJob {
    release: String,
    endpoints: Vec<String>,
}

async fn start_job(
    State(api): State<Api>,
    Json(body): Json<StartJob>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = api.server.jobs.start(&body.release, &body.endpoints)?;
    let view = api.server.jobs.view(id).map_err(internal)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "job": view }))))
}

async fn job(State(api): State<Api>, UrlPath(id): UrlPath<i64>) -> ApiResult<Json<Value>> {
    let v = api.server.jobs.view(id).map_err(internal)?;
    Ok(Json(json!(v.ok_or(JobError::UnknownJob(id))?)))
}

async fn cancel_job(State(api): State<Api>, UrlPath(id): UrlPath<i64>) -> ApiResult<Json<Value>> {
    api.server.jobs.cancel(id)?;
    Ok(Json(json!(api.server.jobs.view(id).map_err(internal)?)))
}

async fn job_audit(State(api): State<Api>, UrlPath(id): UrlPath<i64>) -> ApiResult<Json<Value>> {
    if !api.server.store.job_exists(id).map_err(internal)? {
        return Err(JobError::UnknownJob(id).into());
    }
    Ok(Json(json!(
        api.server.store.job_audit(id).map_err(internal)?
    )))
}

async fn campaigns(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.server.campaigns.list().map_err(internal)?)))
}

async fn create_campaign(
    State(api): State<Api>,
    body: Result<Json<CampaignRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // A malformed body is the request's fault like any other bad field: 400 with serde's reason.
    let Json(req) = body.map_err(|e| bad(format!("bad campaign request: {}", e.body_text())))?;
    let id = api.server.campaigns.create(&req).await?;
    // Without devices: a large campaign's rows are paged with GET /campaigns/{id}.
    let view = api.server.campaigns.view(id, None).map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "campaign": view })),
    ))
}

/// Devices of a campaign view: `?status=failed&limit=100&offset=0` (default: the first 10 000).
#[derive(Deserialize)]
struct DeviceQuery {
    status: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn campaign(
    State(api): State<Api>,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<Value>> {
    let page = DevicePage {
        status: q.status,
        limit: Some(q.limit.unwrap_or(10_000)),
        offset: q.offset.unwrap_or(0),
    };
    let v = api
        .server
        .campaigns
        .view(id, Some(&page))
        .map_err(internal)?;
    Ok(Json(json!(v.ok_or(CampaignError::Unknown(id))?)))
}

async fn pause_campaign(
    State(api): State<Api>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Json<Value>> {
    api.server.campaigns.pause(id)?;
    campaign_summary(&api, id)
}

async fn resume_campaign(
    State(api): State<Api>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Json<Value>> {
    api.server.campaigns.resume(id)?;
    campaign_summary(&api, id)
}

async fn abort_campaign(
    State(api): State<Api>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Json<Value>> {
    api.server.campaigns.abort(id)?;
    campaign_summary(&api, id)
}

fn campaign_summary(api: &Api, id: i64) -> ApiResult<Json<Value>> {
    let v = api.server.campaigns.view(id, None).map_err(internal)?;
    Ok(Json(json!(v.ok_or(CampaignError::Unknown(id))?)))
}

/// Server-sent events: one `data:` line of JSON per registration, notification or job change.
/// With a shared store, the other nodes' events too, and each names its node (`"node"`).
async fn events(State(api): State<Api>) -> impl IntoResponse {
    use tokio::sync::broadcast::error::RecvError;
    let node = api
        .server
        .registry
        .is_shared()
        .then(|| api.server.config.node_id.clone());
    let streams = (
        api.server.events.subscribe(),
        api.server.events.subscribe_remote(),
    );
    let stream = futures_util::stream::unfold(streams, move |(mut local, mut remote)| {
        let node = node.clone();
        async move {
            loop {
                // A slow reader skips what it missed rather than stalling the server.
                let data = tokio::select! {
                    ev = local.recv() => match ev {
                        Ok(ev) => ev.to_json(node.as_deref()),
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    },
                    ev = remote.recv() => match ev {
                        Ok(json) => json.to_string(),
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    },
                };
                let event = Ok::<_, std::convert::Infallible>(Event::default().data(data));
                return Some((event, (local, remote)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
