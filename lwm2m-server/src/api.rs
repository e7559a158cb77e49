//! The admin REST API (axum) under `/api`, behind a bearer token: clients and device management,
//! releases, update jobs, and a server-sent event stream. Errors are JSON `{"error": "..."}` with
//! a status that says whose fault it was (4xx: the request, 502: the device, 504: no answer).

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

use crate::campaign::target::DeviceInfo;
use crate::campaign::{CampaignError, CampaignRequest, DevicePage};
use crate::dm::DmError;
use crate::jobs::JobError;
use crate::paths::{DEVICE_FIRMWARE_VERSION, DEVICE_MODEL_NUMBER};
use crate::repository::AddError;
use crate::server::Server;

/// An API error: status and message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<DmError> for ApiError {
    fn from(e: DmError) -> Self {
        let status = match &e {
            DmError::UnknownClient(_) => StatusCode::NOT_FOUND,
            DmError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            DmError::Asleep | DmError::Timeout | DmError::Coap(_) => StatusCode::GATEWAY_TIMEOUT,
            DmError::Device { .. } | DmError::Content(_) => StatusCode::BAD_GATEWAY,
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
struct Api {
    server: Arc<Server>,
    token: Arc<str>,
}

/// The router, with every `/api` route behind `Authorization: Bearer <token>`, and the dashboard
/// (static files, no token) at `/`.
pub fn router(server: Arc<Server>, token: &str, max_upload: usize) -> Router {
    let api = Api {
        server,
        token: token.into(),
    };
    let routes = Router::new()
        .route("/clients", get(clients))
        .route("/fleet", get(fleet))
        .route("/clients/{ep}", get(client))
        .route("/clients/{ep}/read/{*path}", get(read))
        .route("/clients/{ep}/discover/{*path}", get(discover))
        .route("/clients/{ep}/write/{*path}", post(write))
        .route("/clients/{ep}/execute/{*path}", post(execute))
        .route("/clients/{ep}/attributes/{*path}", post(attributes))
        .route("/clients/{ep}/create/{*path}", post(create))
        .route("/clients/{ep}/delete/{*path}", post(delete))
        .route(
            "/clients/{ep}/observe/{*path}",
            post(observe).delete(cancel_observe),
        )
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
        .and_then(|v| v.strip_prefix("Bearer "))
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

fn lwm2m_path(p: &str) -> ApiResult<Path> {
    Path::parse(&format!("/{}", p.trim_start_matches('/')))
        .map_err(|e| bad(format!("bad LwM2M path {p:?}: {e:?}")))
}

async fn clients(State(api): State<Api>) -> Json<Value> {
    Json(json!(api.server.registry.all()))
}

async fn client(State(api): State<Api>, UrlPath(ep): UrlPath<String>) -> ApiResult<Json<Value>> {
    let reg = api
        .server
        .registry
        .get(&ep)
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
    remember_device_info(&api, &ep, &answer.values);
    Ok(Json(json!(answer)))
}

/// A read that returned the model (/3/0/1) or the firmware version (/3/0/3) fills the cache that
/// campaign filters and the fleet view use, so a look at a device is not wasted.
fn remember_device_info(api: &Api, ep: &str, values: &[crate::content::Item]) {
    let text = |path: Path| {
        let path = path.to_string();
        values
            .iter()
            .find(|i| i.path == path)
            .and_then(|i| i.value.as_str())
            .map(str::to_owned)
    };
    let info = DeviceInfo {
        model: text(DEVICE_MODEL_NUMBER),
        firmware_version: text(DEVICE_FIRMWARE_VERSION),
        read_at_ms: api.server.clock.now_ms(),
    };
    if info.model.is_none() && info.firmware_version.is_none() {
        return;
    }
    if let Err(e) = api.server.store.put_device_info(ep, &info) {
        tracing::warn!("{ep}: cannot cache the device info: {e}");
    }
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
    let mut regs = api.server.registry.all();
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

async fn discover(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        api.server.dm.discover(&ep, &lwm2m_path(&path)?).await?
    )))
}

#[derive(Deserialize)]
struct WriteBody {
    value: Value,
    /// PUT (replace, the default) or POST (partial update) for an instance.
    #[serde(default = "yes")]
    replace: bool,
}

fn yes() -> bool {
    true
}

async fn write(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
    Json(body): Json<WriteBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        api.server
            .dm
            .write(&ep, &lwm2m_path(&path)?, &body.value, body.replace)
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
    Ok(Json(json!(api.server.store.releases().map_err(internal)?)))
}

async fn release(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    let r = api.server.store.release(&id).map_err(internal)?;
    let r = r.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no release {id}")))?;
    Ok(Json(json!(r)))
}

/// Multipart upload: `envelope` + `image` (a SUIT release), or `image` + `version` (plain).
async fn add_release(
    State(api): State<Api>,
    mut form: Multipart,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (mut envelope, mut image, mut version) = (None, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("bad upload: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("bad upload: {e}")))?;
        match name.as_str() {
            "envelope" => envelope = Some(bytes),
            "image" => image = Some(bytes),
            "version" => version = Some(String::from_utf8_lossy(&bytes).into_owned()),
            other => return Err(bad(format!("unexpected form field {other:?}"))),
        }
    }
    let image = image.ok_or_else(|| bad("the form has no `image` field"))?;
    let now = api.server.clock.now_ms();
    let repo = api.server.repo.clone();
    let added = tokio::task::spawn_blocking(move || match (envelope, version) {
        (Some(env), None) => repo.add_suit(&env, &image, now),
        (None, Some(v)) => repo.add_plain(&image, &v, now),
        (Some(_), Some(_)) => Err(AddError::ImageMismatch(
            "give either an envelope or a version, not both".into(),
        )),
        (None, None) => Err(AddError::NoVersion),
    })
    .await
    .map_err(internal)??;
    let (record, new) = added;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "id": record.id, "new": new, "release": record })),
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
async fn events(State(api): State<Api>) -> impl IntoResponse {
    let rx = api.server.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    return Some((
                        Ok::<_, std::convert::Infallible>(Event::default().data(data)),
                        rx,
                    ));
                }
                // A slow reader skips what it missed rather than stalling the server.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
