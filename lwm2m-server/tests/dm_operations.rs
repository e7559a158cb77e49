//! What device management puts on the wire: a raw CoAP "device" records every request the server
//! sends for Discover, Write-Attributes, Create, Delete, Execute with arguments and an instance
//! Write, and the test checks method, path, options and payload byte for byte. Also the event
//! stream of the REST API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::Path;
use serde_json::json;
use testkit::TestServer;
use tokio::net::UdpSocket;

#[derive(Clone, Debug)]
struct Seen {
    method: RequestType,
    path: String,
    query: Vec<String>,
    content_format: Option<Vec<u8>>,
    accept: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn opt_strings(p: &Packet, o: CoapOption) -> Vec<String> {
    p.get_option(o)
        .map(|l| {
            l.iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Registers as `raw-dev` (LwM2M 1.0, so instance writes use TLV) and answers what it is asked.
async fn raw_device(server: SocketAddr, lwm2m: &str) -> Arc<Mutex<Vec<Seen>>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut reg = Packet::new();
    reg.header.set_type(MessageType::Confirmable);
    reg.header.code = MessageClass::Request(RequestType::Post);
    reg.header.message_id = 1;
    reg.set_token(vec![9]);
    reg.add_option(CoapOption::UriPath, b"rd".to_vec());
    for q in [
        "ep=raw-dev".to_string(),
        "lt=300".into(),
        format!("lwm2m={lwm2m}"),
    ] {
        reg.add_option(CoapOption::UriQuery, q.into_bytes());
    }
    reg.payload = b"</1/0>,</3/0>,</3303>".to_vec();
    socket
        .send_to(&reg.to_bytes().unwrap(), server)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).await.unwrap();
    assert_eq!(
        u8::from(Packet::from_bytes(&buf[..n]).unwrap().header.code),
        0x41
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            let MessageClass::Request(method) = req.header.code else {
                continue;
            };
            let path = format!("/{}", opt_strings(&req, CoapOption::UriPath).join("/"));
            log.lock().unwrap().push(Seen {
                method,
                path: path.clone(),
                query: opt_strings(&req, CoapOption::UriQuery),
                content_format: req.get_first_option(CoapOption::ContentFormat).cloned(),
                accept: req.get_first_option(CoapOption::Accept).cloned(),
                payload: req.payload.clone(),
            });
            let mut resp = Packet::new();
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = req.header.message_id;
            resp.set_token(req.get_token().to_vec());
            let code = match (method, path.as_str()) {
                (RequestType::Get, "/3/0") => {
                    resp.add_option(CoapOption::ContentFormat, vec![40]);
                    resp.payload = b"</3/0>,</3/0/0>,</3/0/3>;dim=1".to_vec();
                    ResponseType::Content
                }
                (RequestType::Post, "/3303") => {
                    resp.add_option(CoapOption::LocationPath, b"3303".to_vec());
                    resp.add_option(CoapOption::LocationPath, b"1".to_vec());
                    ResponseType::Created
                }
                (RequestType::Delete, _) => ResponseType::Deleted,
                _ => ResponseType::Changed,
            };
            resp.header.code = MessageClass::Response(code);
            let _ = socket.send_to(&resp.to_bytes().unwrap(), from).await;
        }
    });
    seen
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

#[tokio::test]
async fn each_operation_sends_the_lwm2m_request_it_should() {
    let s = TestServer::start(|_| {}).await;
    let seen = raw_device(s.coap_addr(), "1.0").await;
    let dm = &s.server.dm;

    let a = dm.discover("raw-dev", &p("/3/0")).await.unwrap();
    assert_eq!(a.links.as_deref(), Some("</3/0>,</3/0/0>,</3/0/3>;dim=1"));

    dm.write_attributes(
        "raw-dev",
        &p("/3/0/13"),
        &[
            ("pmin".into(), Some("10".into())),
            ("pmax".into(), Some("60".into())),
        ],
    )
    .await
    .unwrap();

    let mut values = serde_json::Map::new();
    values.insert("5700".into(), json!(21.5));
    let created = dm.create("raw-dev", &p("/3303"), &values).await.unwrap();
    assert_eq!(created.location.as_deref(), Some("/3303/1"));

    dm.delete("raw-dev", &p("/3303/1")).await.unwrap();
    dm.execute("raw-dev", &p("/3/0/4"), Some("0='now'"))
        .await
        .unwrap();

    let mut lifetime = serde_json::Map::new();
    lifetime.insert("1".into(), json!(600));
    dm.write("raw-dev", &p("/1/0"), &json!(lifetime), false)
        .await
        .unwrap();
    dm.write("raw-dev", &p("/1/0/1"), &json!(900), true)
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7, "{seen:#?}");
    // Discover: GET with Accept: application/link-format (40).
    assert_eq!(
        (
            seen[0].method,
            seen[0].path.as_str(),
            seen[0].accept.as_deref()
        ),
        (RequestType::Get, "/3/0", Some(&[40u8][..]))
    );
    // Write-Attributes: PUT with the attributes as Uri-Query and no payload.
    assert_eq!(
        (seen[1].method, seen[1].query.clone(), seen[1].payload.len()),
        (
            RequestType::Put,
            vec!["pmin=10".into(), "pmax=60".into()],
            0
        )
    );
    // Create: POST on the object with a TLV resource 5700 (16-bit id) = 21.5, which a 4-byte float
    // holds exactly: type 0b11_1_00_100 = 0xE4 (resource, 16-bit id, length 4 in the type byte),
    // id 0x1644, then 21.5 as an IEEE 754 single, 0x41AC0000.
    let tlv = vec![0xe4, 0x16, 0x44, 0x41, 0xac, 0x00, 0x00];
    assert_eq!(
        (seen[2].method, seen[2].path.as_str(), &seen[2].payload),
        (RequestType::Post, "/3303", &tlv)
    );
    assert_eq!(
        seen[2].content_format.as_deref(),
        Some(&[0x2d, 0x16][..]),
        "11542 = 0x2D16"
    );
    assert_eq!(
        (seen[3].method, seen[3].path.as_str()),
        (RequestType::Delete, "/3303/1")
    );
    // Execute with arguments: POST with a text payload.
    assert_eq!(
        (seen[4].method, seen[4].payload.as_slice()),
        (RequestType::Post, &b"0='now'"[..])
    );
    // Partial update of an instance: POST with TLV resource 1 = 600 (2 bytes: C2 01 02 58).
    assert_eq!(
        (
            seen[5].method,
            seen[5].path.as_str(),
            seen[5].payload.as_slice()
        ),
        (RequestType::Post, "/1/0", &[0xc2, 0x01, 0x02, 0x58][..])
    );
    // A single resource: PUT in plain text.
    assert_eq!(
        (
            seen[6].method,
            seen[6].payload.as_slice(),
            seen[6].content_format.as_deref()
        ),
        (RequestType::Put, &b"900"[..], Some(&[][..]))
    );
}

#[tokio::test]
async fn lwm2m_1_1_clients_get_senml_cbor_for_instances() {
    let s = TestServer::start(|_| {}).await;
    let seen = raw_device(s.coap_addr(), "1.1").await;
    let mut lifetime = serde_json::Map::new();
    lifetime.insert("1".into(), json!(600));
    s.server
        .dm
        .write("raw-dev", &p("/1/0"), &json!(lifetime), true)
        .await
        .unwrap();
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (s.method, s.content_format.as_deref()),
        (RequestType::Put, Some(&[112u8][..]))
    );
    let models = lwm2m_server::model::Models::builtin();
    let items = lwm2m_server::content::decode(&p("/1/0"), Some(112), &s.payload, &models).unwrap();
    assert_eq!(
        (items[0].path.as_str(), &items[0].value),
        ("/1/0/1", &json!(600))
    );
}

// Multi-threaded: `events()` waits for the in-process server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_registrations() {
    let s = TestServer::start(|_| {}).await;
    // Subscribed once it returns.
    let events = s.events();
    let _seen = raw_device(s.coap_addr(), "1.1").await;
    let v = tokio::task::spawn_blocking(move || events.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v["type"].as_str(), v["endpoint"].as_str()),
        (Some("registered"), Some("raw-dev"))
    );
}

#[tokio::test]
async fn writes_are_typed_by_the_model_and_a_value_that_does_not_fit_never_reaches_the_device() {
    let s = TestServer::start(|_| {}).await;
    let seen = raw_device(s.coap_addr(), "1.0").await;
    let write = |path: &str, body: serde_json::Value| {
        let url = format!("/clients/raw-dev/write/{path}");
        let s = &s;
        async move { s.api("POST", &url, Some(body)).await }
    };
    // Refused by the server, each with the resource, its type and the reason: nothing is sent.
    for (path, body, want) in [
        (
            "1/0/1",
            json!({"value": "abc"}),
            "/1/0/1 (Lifetime, Unsigned Integer): \"abc\" is not an integer",
        ),
        (
            "3/0/13",
            json!({"value": "noon"}),
            "(Current Time, Time): \"noon\" is not a time",
        ),
        (
            "3/0/3",
            json!({"value": "2.0"}),
            "/3/0/3 (Firmware Version) cannot be written: its operations are R",
        ),
        (
            "1/0/1",
            json!({"value": "1", "format": "xml"}),
            "unknown format \"xml\"",
        ),
    ] {
        let (status, v) = write(path, body).await;
        assert_eq!(status, 400, "{path}: {v}");
        let err = v["error"].as_str().unwrap();
        assert!(err.contains(want), "{path}: {err}");
    }
    let (status, v) = s
        .api("POST", "/clients/raw-dev/execute/3/0/3", Some(json!({})))
        .await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            400,
            "/3/0/3 (Firmware Version) cannot be executed: its operations are R"
        )
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused request went out"
    );

    // Accepted, each in its type: text by default, TLV or SenML-CBOR when asked, and an object
    // without a model by the JSON's own type.
    for (path, body) in [
        ("1/0/1", json!({"value": "600"})),
        ("1/0/1", json!({"value": "600", "format": "tlv"})),
        ("3/0/13", json!({"value": "2013-05-02T10:40:15Z"})),
        (
            "3311/0/5850",
            json!({"value": "true", "format": "senml-cbor"}),
        ),
        ("32769/0/1", json!({"value": "hello"})),
    ] {
        let (status, v) = write(path, body).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    let seen = seen.lock().unwrap().clone();
    /// Path, Content-Format option, payload.
    type Sent<'a> = (&'a str, Option<&'a [u8]>, &'a [u8]);
    let got: Vec<Sent> = seen
        .iter()
        .map(|r| {
            (
                r.path.as_str(),
                r.content_format.as_deref(),
                r.payload.as_slice(),
            )
        })
        .collect();
    assert_eq!(got[0], ("/1/0/1", Some(&[][..]), &b"600"[..]));
    assert_eq!(
        got[1],
        (
            "/1/0/1",
            Some(&[0x2d, 0x16][..]),
            &[0xc2, 0x01, 0x02, 0x58][..]
        )
    );
    assert_eq!(got[2], ("/3/0/13", Some(&[][..]), &b"1367491215"[..]));
    assert_eq!((got[3].0, got[3].1), ("/3311/0/5850", Some(&[112u8][..])));
    let models = lwm2m_server::model::Models::builtin();
    let back =
        lwm2m_server::content::decode(&p("/3311/0/5850"), Some(112), got[3].2, &models).unwrap();
    assert_eq!((back[0].kind, &back[0].value), ("boolean", &json!(true)));
    assert_eq!(got[4], ("/32769/0/1", Some(&[][..]), &b"hello"[..]));
}
