//! CoRE Link Format: RFC 6690's examples, LwM2M registration and Discover payloads, quoting,
//! every refusal, and round trips.

use lwm2m_core::content::link::{Link, LinkError, LinkParser, LinkWriter};
use lwm2m_core::{Path, PathError, SliceWriter};
use proptest::prelude::*;

/// (target, [(name, value)]) with quoted values shown unescaped.
type Flat = Vec<(String, Vec<(String, Option<String>)>)>;

/// A parameter with its value's quoting: (name, Some((quoted, unescaped value))).
type Param = (String, Option<(bool, String)>);

fn flat(payload: &str) -> Flat {
    LinkParser::new(payload)
        .map(|l| {
            let l = l.unwrap();
            (
                l.target.to_string(),
                l.params()
                    .map(|(n, v)| (n.to_string(), v.map(|v| v.unescaped().collect())))
                    .collect(),
            )
        })
        .collect()
}

fn link(target: &str, params: &[(&str, Option<&str>)]) -> (String, Vec<(String, Option<String>)>) {
    (
        target.to_string(),
        params
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect(),
    )
}

fn first_error(payload: &str) -> LinkError {
    LinkParser::new(payload).find_map(Result::err).unwrap()
}

#[test]
fn rfc6690_section5_examples() {
    // The three examples of RFC 6690 §5, without the line breaks added there for readability.
    assert_eq!(
        flat(r#"</sensors/temp>;if="sensor",</sensors/light>;if="sensor""#),
        [
            link("/sensors/temp", &[("if", Some("sensor"))]),
            link("/sensors/light", &[("if", Some("sensor"))]),
        ]
    );
    assert_eq!(
        flat(concat!(
            r#"</sensors>;ct=40;title="Sensor Index","#,
            r#"</sensors/temp>;rt="temperature-c";if="sensor","#,
            r#"</sensors/light>;rt="light-lux";if="sensor","#,
            r#"<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel="describedby","#,
            r#"</t>;anchor="/sensors/temp";rel="alternate""#
        )),
        [
            link(
                "/sensors",
                &[("ct", Some("40")), ("title", Some("Sensor Index"))]
            ),
            link(
                "/sensors/temp",
                &[("rt", Some("temperature-c")), ("if", Some("sensor"))]
            ),
            link(
                "/sensors/light",
                &[("rt", Some("light-lux")), ("if", Some("sensor"))]
            ),
            link(
                "http://www.example.com/sensors/t123",
                &[
                    ("anchor", Some("/sensors/temp")),
                    ("rel", Some("describedby"))
                ]
            ),
            link(
                "/t",
                &[
                    ("anchor", Some("/sensors/temp")),
                    ("rel", Some("alternate"))
                ]
            ),
        ]
    );
}

#[test]
fn lwm2m_register_payload() {
    let payload = r#"</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,</5/0>;ver=1.1"#;
    let links: Vec<Link<'_>> = LinkParser::new(payload).map(Result::unwrap).collect();
    let paths: Vec<Path> = links.iter().map(|l| l.path().unwrap()).collect();
    assert_eq!(
        paths.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["/", "/1/0", "/3/0", "/5/0"]
    );
    assert_eq!(links[0].param("rt").unwrap().unwrap().raw(), "oma.lwm2m");
    assert!(links[0].param("rt").unwrap().unwrap().is_quoted());
    assert_eq!(links[0].param("ct").unwrap().unwrap().as_u64(), Some(11542));
    assert_eq!(links[3].param("ver").unwrap().unwrap().raw(), "1.1");
    assert_eq!(links[1].param("ver"), None);

    // The same payload written by the writer.
    let mut w = LinkWriter::new(String::new());
    w.lwm2m_root(Some(11542)).unwrap();
    for p in ["/1/0", "/3/0", "/5/0"] {
        w.path(&Path::parse(p).unwrap()).unwrap();
    }
    w.param_token("ver", "1.1").unwrap();
    assert_eq!(w.into_inner(), payload);
}

#[test]
fn alternate_root_and_non_paths() {
    let payload = r#"</lwm2m>;rt="oma.lwm2m",</lwm2m/5/0>,<coap://h/x>"#;
    let links: Vec<Link<'_>> = LinkParser::new(payload).map(Result::unwrap).collect();
    assert_eq!(links[0].path_under("/lwm2m"), Ok(Path::root()));
    assert_eq!(
        links[1].path_under("/lwm2m/"),
        Ok(Path::instance(5, 0).unwrap())
    );
    assert_eq!(
        links[1].path().map(|p| p.to_string()),
        Err(PathError::NotADigit)
    );
    assert_eq!(links[2].path(), Err(PathError::MissingLeadingSlash));
}

#[test]
fn discover_attributes() {
    let payload = "</5/0>;pmin=10;pmax=60,</5/0/3>,</5/0/8>;dim=2,</5/0/5>;gt=50;lt=42.2;st";
    let f = flat(payload);
    assert_eq!(
        f,
        [
            link("/5/0", &[("pmin", Some("10")), ("pmax", Some("60"))]),
            link("/5/0/3", &[]),
            link("/5/0/8", &[("dim", Some("2"))]),
            link(
                "/5/0/5",
                &[("gt", Some("50")), ("lt", Some("42.2")), ("st", None)]
            ),
        ]
    );
    let mut buf = [0u8; 128];
    let mut w = LinkWriter::new(SliceWriter::new(&mut buf));
    w.path(&Path::instance(5, 0).unwrap()).unwrap();
    w.param_uint("pmin", 10)
        .unwrap()
        .param_uint("pmax", 60)
        .unwrap();
    w.path(&Path::resource(5, 0, 3).unwrap()).unwrap();
    w.path(&Path::resource(5, 0, 8).unwrap())
        .unwrap()
        .param_uint("dim", 2)
        .unwrap();
    w.path(&Path::resource(5, 0, 5).unwrap()).unwrap();
    w.param_token("gt", "50")
        .unwrap()
        .param_token("lt", "42.2")
        .unwrap()
        .param("st")
        .unwrap();
    assert_eq!(w.into_inner().as_str(), payload);
}

#[test]
fn quoted_strings_hold_separators_and_escapes() {
    let payload = r#"</a>;title="x,y;z",</b>;t="say \"hi\" \\ ok""#;
    let links: Vec<Link<'_>> = LinkParser::new(payload).map(Result::unwrap).collect();
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].param("title").unwrap().unwrap().raw(), "x,y;z");
    let t = links[1].param("t").unwrap().unwrap();
    assert_eq!(t.raw(), r#"say \"hi\" \\ ok"#);
    assert_eq!(t.unescaped().collect::<String>(), r#"say "hi" \ ok"#);

    let mut w = LinkWriter::new(String::new());
    w.target("/b")
        .unwrap()
        .param_quoted("t", r#"say "hi" \ ok"#)
        .unwrap();
    assert_eq!(w.into_inner(), r#"</b>;t="say \"hi\" \\ ok""#);
}

#[test]
fn empty_payload_has_no_links() {
    assert_eq!(LinkParser::new("").count(), 0);
    assert_eq!(flat("<>"), [link("", &[])]);
}

#[test]
fn parser_errors() {
    let cases = [
        ("</1/0", LinkError::UnterminatedTarget),
        ("1/0>", LinkError::ExpectedTarget),
        ("</1/0>,", LinkError::ExpectedTarget),
        ("</1/0>,,</3/0>", LinkError::ExpectedTarget),
        ("</1/0>, </3/0>", LinkError::ExpectedTarget),
        ("</1/0> ;x", LinkError::ExpectedSeparator),
        ("</1/0>x", LinkError::ExpectedSeparator),
        ("</a>;x=a\"b\"", LinkError::ExpectedSeparator),
        ("</a b>", LinkError::InvalidTargetChar),
        ("<</a>", LinkError::InvalidTargetChar),
        ("</a>;", LinkError::InvalidParamName),
        ("</a>;=1", LinkError::InvalidParamName),
        ("</a>;a b", LinkError::ExpectedSeparator),
        ("</a>;x=", LinkError::InvalidToken),
        ("</a>;x=,</b>", LinkError::InvalidToken),
        ("</a>;x=\"abc", LinkError::UnterminatedQuote),
        ("</a>;x=\"abc\\\"", LinkError::UnterminatedQuote),
    ];
    for (payload, err) in cases {
        assert_eq!(first_error(payload), err, "{payload}");
    }
    // A good link before the error is still returned; nothing after it.
    let mut p = LinkParser::new("</1/0>,</3/0");
    assert!(p.next().unwrap().is_ok());
    assert_eq!(p.next(), Some(Err(LinkError::UnterminatedTarget)));
    assert_eq!(p.next(), None);
    assert_eq!(
        LinkParser::from_bytes(&[b'<', 0xff, b'>']).err(),
        Some(LinkError::NotUtf8)
    );
}

#[test]
fn writer_errors() {
    let mut w = LinkWriter::new(String::new());
    assert_eq!(w.param("x").err(), Some(LinkError::ExpectedTarget));
    assert_eq!(w.target("/a b").err(), Some(LinkError::InvalidTargetChar));
    w.target("/a").unwrap();
    assert_eq!(w.param("").err(), Some(LinkError::InvalidParamName));
    assert_eq!(w.param("a=b").err(), Some(LinkError::InvalidParamName));
    assert_eq!(w.param_token("x", "").err(), Some(LinkError::InvalidToken));
    assert_eq!(
        w.param_token("x", "a,b").err(),
        Some(LinkError::InvalidToken)
    );
    let mut buf = [0u8; 8];
    let mut w = LinkWriter::new(SliceWriter::new(&mut buf));
    assert_eq!(w.path(&Path::resource(5, 0, 3).unwrap()).err(), None);
    assert_eq!(
        w.path(&Path::resource(5, 0, 3).unwrap()).err(),
        Some(LinkError::BufferFull)
    );
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$&+.^_`|~-]{1,8}"
}

fn param() -> impl Strategy<Value = Param> {
    (
        name(),
        prop_oneof![
            Just(None),
            "[a-zA-Z0-9!#$%&'()*+./:<=>?@\\[\\]^_`{|}~-]{1,10}".prop_map(|v| Some((false, v))),
            "\\PC{0,12}".prop_map(|v| Some((true, v))),
        ],
    )
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(0u16..u16::MAX, 0..=4)
            .prop_map(|ids| Path::new(&ids).unwrap().to_string()),
        "[!#-;=?-~]{0,12}",
    ]
}

proptest! {
    #[test]
    fn round_trip(links in prop::collection::vec((target(), prop::collection::vec(param(), 0..4)), 0..5)) {
        let mut w = LinkWriter::new(String::new());
        for (t, params) in &links {
            w.target(t).unwrap();
            for (n, v) in params {
                match v {
                    None => w.param(n),
                    Some((true, v)) => w.param_quoted(n, v),
                    Some((false, v)) => w.param_token(n, v),
                }
                .unwrap();
            }
        }
        let out = w.into_inner();
        let back: Vec<(String, Vec<Param>)> = LinkParser::new(&out)
            .map(|l| {
                let l = l.unwrap();
                (
                    l.target.to_string(),
                    l.params()
                        .map(|(n, v)| (n.to_string(), v.map(|v| (v.is_quoted(), v.unescaped().collect()))))
                        .collect(),
                )
            })
            .collect();
        prop_assert_eq!(back, links);
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,60}") {
        for l in LinkParser::new(&s).flatten() {
            for (_, v) in l.params() {
                let _ = v.map(|v| v.unescaped().count());
            }
            let _ = l.path();
        }
    }

    #[test]
    fn link_like_text_never_panics(s in "[<>/;,=\"\\\\a-z0-9 ]{0,40}") {
        for l in LinkParser::new(&s).flatten() {
            let _ = l.params().count();
        }
    }

    #[test]
    fn bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(p) = LinkParser::from_bytes(&b) {
            for _ in p {}
        }
    }
}
