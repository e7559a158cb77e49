//! The NOTIFY payload between nodes: `{"node":"n1","events":[{...},...]}`, each event the event
//! stream's JSON without `node` (the batch names it once). PostgreSQL refuses payloads of 8000
//! bytes or more, so events are packed into payloads below [`MAX_PAYLOAD`] (several per NOTIFY:
//! fewer, larger notifications cost PostgreSQL less), and an event too large on its own (a
//! notification with a big value) goes without its large fields, marked `"truncated": true`.

use std::sync::Arc;

use serde_json::{Map, Value};

/// The largest payload sent (PostgreSQL's limit is 8000 bytes, exclusive).
pub(super) const MAX_PAYLOAD: usize = 7_900;
/// Fields longer than this (as JSON) are left out of an event that alone would not fit.
const MAX_FIELD: usize = 256;

/// A malformed payload: what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(super) enum BadPayload {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not an object with a \"node\" name")]
    NoNode,
    #[error("no \"events\" list")]
    NoEvents,
    #[error("event {0} of the batch is not an object with a \"type\"")]
    BadEvent(usize),
}

/// The events of one payload: the node that sent them, and each event's stream JSON with that
/// node named in it.
#[derive(Debug)]
pub(super) struct Batch {
    pub node: String,
    pub events: Vec<Arc<str>>,
}

/// Packs events (each its stream JSON without `node`) into payloads from `node`, in order.
/// An event that fits in no payload even shortened is logged and left out.
pub(super) fn encode(node: &str, events: &[String]) -> Vec<String> {
    let head = format!(
        "{{\"node\":{},\"events\":[",
        serde_json::to_string(node).unwrap_or_default()
    );
    let room = MAX_PAYLOAD.saturating_sub(head.len() + 2);
    let mut out = Vec::new();
    let mut cur = head.clone();
    for ev in events {
        let shortened;
        let ev = if ev.len() <= room {
            ev.as_str()
        } else {
            shortened = shorten(ev);
            if shortened.len() > room {
                tracing::warn!(
                    "events: an event of {} bytes is too large to send to the other nodes even shortened; left out",
                    ev.len()
                );
                continue;
            }
            shortened.as_str()
        };
        let first = cur.len() == head.len();
        if cur.len() + usize::from(!first) + ev.len() + 2 > MAX_PAYLOAD {
            cur.push_str("]}");
            out.push(std::mem::replace(&mut cur, head.clone()));
        } else if !first {
            cur.push(',');
        }
        cur.push_str(ev);
    }
    if cur.len() > head.len() {
        cur.push_str("]}");
        out.push(cur);
    }
    out
}

/// The event without its fields longer than [`MAX_FIELD`], marked `"truncated": true`.
fn shorten(ev: &str) -> String {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(ev) else {
        return String::new();
    };
    let mut kept: Map<String, Value> = map
        .into_iter()
        .filter(|(_, v)| v.to_string().len() <= MAX_FIELD)
        .collect();
    kept.insert("truncated".into(), true.into());
    Value::Object(kept).to_string()
}

/// Reads a payload; all of it or nothing (a batch with one bad event is refused whole).
pub(super) fn decode(payload: &str) -> Result<Batch, BadPayload> {
    let v: Value = serde_json::from_str(payload).map_err(|e| BadPayload::Json(e.to_string()))?;
    let node = v
        .get("node")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or(BadPayload::NoNode)?;
    let list = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or(BadPayload::NoEvents)?;
    let mut events = Vec::with_capacity(list.len());
    for (i, ev) in list.iter().enumerate() {
        let mut ev = match ev {
            Value::Object(m) if m.get("type").is_some_and(Value::is_string) => m.clone(),
            _ => return Err(BadPayload::BadEvent(i)),
        };
        ev.insert("node".into(), node.into());
        events.push(Arc::from(Value::Object(ev).to_string()));
    }
    Ok(Batch {
        node: node.to_string(),
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize, pad: usize) -> String {
        format!(
            "{{\"type\":\"updated\",\"endpoint\":\"ep-{i}\",\"address\":\"{}\"}}",
            "a".repeat(pad)
        )
    }

    #[test]
    fn a_batch_comes_back_with_its_node_named_in_every_event() {
        let sent = vec![event(1, 3), event(2, 3)];
        let payloads = encode("n\"1", &sent);
        assert_eq!(payloads.len(), 1);
        let b = decode(&payloads[0]).unwrap();
        assert_eq!(b.node, "n\"1");
        assert_eq!(b.events.len(), 2);
        let v: Value = serde_json::from_str(&b.events[1]).unwrap();
        assert_eq!(v["node"], "n\"1");
        assert_eq!(v["endpoint"], "ep-2");
        assert_eq!(v["type"], "updated");
    }

    #[test]
    fn many_events_are_split_over_payloads_below_the_limit_in_order() {
        let sent: Vec<String> = (0..200).map(|i| event(i, 100)).collect();
        let payloads = encode("n1", &sent);
        assert!(payloads.len() > 1, "{}", payloads.len());
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<String> = payloads
            .iter()
            .flat_map(|p| decode(p).unwrap().events)
            .map(|e| serde_json::from_str::<Value>(&e).unwrap()["endpoint"].to_string())
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("\"ep-{i}\"")).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_notification_carries_about_thirty_progress_reports() {
        let ev = crate::events::ServerEvent::Download {
            endpoint: "device-000123".into(),
            release_id: "61df61ef6839d9cb".into(),
            block: 200,
            block_size: 1024,
            bytes_done: 204_800,
            bytes_total: 262_144,
            requests: 203,
            started_at_ms: 1_796_218_841_306,
            rate_bps: Some(12_345.678),
            eta_s: Some(4.65),
        };
        let sent = vec![ev.to_json(None); 300];
        let payloads = encode("node-a", &sent);
        // The README's volume figures (500 reports a second: under 20 NOTIFYs) rest on this.
        assert!(payloads.len() <= 300 / 28, "{} payloads", payloads.len());
    }

    #[test]
    fn an_event_too_large_alone_goes_without_its_large_fields() {
        let big = event(7, 10_000);
        let payloads = encode("n1", &[big, event(8, 3)]);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let events: Vec<Value> = payloads
            .iter()
            .flat_map(|p| decode(p).unwrap().events)
            .map(|e| serde_json::from_str(&e).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["endpoint"], "ep-7");
        assert_eq!(events[0]["truncated"], true);
        assert!(events[0].get("address").is_none());
        assert!(events[1].get("truncated").is_none());
    }

    #[test]
    fn malformed_payloads_are_refused_with_the_reason() {
        assert!(matches!(decode("{not json"), Err(BadPayload::Json(_))));
        assert_eq!(decode("[1]").unwrap_err(), BadPayload::NoNode);
        assert_eq!(
            decode(r#"{"node":"","events":[]}"#).unwrap_err(),
            BadPayload::NoNode
        );
        assert_eq!(
            decode(r#"{"node":"n1","events":{}}"#).unwrap_err(),
            BadPayload::NoEvents
        );
        assert_eq!(
            decode(r#"{"node":"n1","events":[{"type":"updated"},{"endpoint":"x"}]}"#).unwrap_err(),
            BadPayload::BadEvent(1)
        );
        assert_eq!(
            decode(r#"{"node":"n1","events":[3]}"#).unwrap_err(),
            BadPayload::BadEvent(0)
        );
    }
}
