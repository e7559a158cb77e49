//! The object models over the API: `GET /models` (a summary of each), `GET /models/{id}` (one
//! with its resources), `POST /models` (an XML definition to add), and Discover answers with
//! each link named and typed by the models, so a client needs no model of its own to show them.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use lwm2m_core::content::link::LinkParser;
use serde_json::{Value, json};

use super::{Api, ApiError, ApiResult, bad, lwm2m_path};
use crate::model::{Models, ObjectModel};

fn summary(o: &ObjectModel) -> Value {
    json!({
        "id": o.id,
        "name": o.name,
        "urn": o.urn,
        "object_version": o.object_version,
        "multiple": o.multiple,
        "mandatory": o.mandatory,
        "resources": o.resources.len(),
        "source": o.source,
    })
}

/// `GET /models`: every object the server has a model of, without the resources.
pub(super) async fn list(State(api): State<Api>) -> Json<Value> {
    let list: Vec<Value> = api
        .server
        .models
        .list()
        .iter()
        .map(|o| summary(o))
        .collect();
    Json(json!(list))
}

/// `GET /models/{id}`: one object with its resources.
pub(super) async fn show(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let id: u16 = id
        .parse()
        .map_err(|_| bad(format!("{id:?} is not an object id (0 to 65535)")))?;
    let model = api.server.models.get(id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no model of object {id}: add its XML definition with `lwm2m-server models add FILE.xml`"),
        )
    })?;
    Ok(Json(json!(*model)))
}

/// `POST /models` with an XML definition as the body: checked, stored, and used at once.
pub(super) async fn add(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        bad(format!(
            "the definition is not UTF-8 (byte {}): save the XML as UTF-8",
            e.valid_up_to()
        ))
    })?;
    let models = api.server.models.clone();
    let text = text.to_string();
    let added = tokio::task::spawn_blocking(move || models.add(&text))
        .await
        .map_err(super::internal)?;
    let (model, replaced) = added.map_err(|e| match e {
        crate::model::ModelError::Store(_) => super::internal(e),
        other => bad(format!("not added: {other}")),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": model.id, "replaced": replaced, "model": summary(&model) })),
    ))
}

/// Each link of a Discover answer with what the models say of it: for an object or instance its
/// name, for a resource its name, type, operations, units and whether it has instances; and the
/// link's attributes (`dim`, `pmin`...).
pub fn annotate(models: &Models, links: &str) -> Vec<Value> {
    LinkParser::new(links)
        .filter_map(Result::ok)
        .filter_map(|link| {
            let path = link.path().ok()?;
            let attributes: serde_json::Map<String, Value> = link
                .params()
                .map(|(k, v)| {
                    let v = v.map_or(Value::Null, |v| json!(v.unescaped().collect::<String>()));
                    (k.to_string(), v)
                })
                .collect();
            let object = path.object_id().and_then(|o| models.get(o));
            let mut entry = json!({ "path": path.to_string(), "attributes": attributes });
            match (path.resource_id(), &object) {
                (None, Some(o)) => {
                    entry["name"] = json!(o.name);
                }
                (Some(r), Some(o)) => {
                    if let Some(m) = o.resource(r) {
                        entry["name"] = json!(m.name);
                        entry["type"] = json!(m.kind);
                        entry["operations"] = json!(m.operations);
                        entry["units"] = json!(m.units);
                        entry["multiple"] = json!(m.multiple);
                    }
                }
                _ => {}
            }
            Some(entry)
        })
        .collect()
}

/// `GET /clients/{ep}/discover/{path}`: `{code, links, resources}`.
pub(super) async fn discover(
    State(api): State<Api>,
    UrlPath((ep, path)): UrlPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let answer = api.server.dm.discover(&ep, &lwm2m_path(&path)?).await?;
    let resources = annotate(&api.server.models, answer.links.as_deref().unwrap_or(""));
    let mut v = json!(answer);
    v["resources"] = json!(resources);
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_links_are_named_and_typed_by_the_models() {
        let m = Models::builtin();
        let a = annotate(
            &m,
            "</3/0>,</3/0/1>,</3/0/7>;dim=2,</3/0/4>,</32769/0/1>;pmin=\"10\"",
        );
        assert_eq!(a[0]["name"], "Device");
        assert_eq!(
            (&a[1]["name"], &a[1]["type"], &a[1]["operations"]),
            (&json!("Model Number"), &json!("string"), &json!("R"))
        );
        assert_eq!(
            (&a[2]["multiple"], &a[2]["attributes"]["dim"]),
            (&json!(true), &json!("2"))
        );
        assert_eq!(a[3]["operations"], "E");
        assert_eq!(a[4]["name"], Value::Null, "no model: by number only");
        assert_eq!(a[4]["attributes"]["pmin"], "10");
    }
}
