//! CoRE Link Format: never panic; a payload that parses completely is rewritten by the writer and
//! parses to the same links, parameters and (unescaped) values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::content::link::{LinkParser, LinkWriter};

#[derive(Debug, PartialEq)]
struct L {
    target: String,
    params: Vec<(String, Option<(bool, String)>)>,
}

fn collect(parser: LinkParser<'_>) -> Option<Vec<L>> {
    let mut links = Vec::new();
    for link in parser {
        let link = link.ok()?;
        let _ = link.path();
        links.push(L {
            target: link.target.to_string(),
            params: link
                .params()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        v.map(|v| (v.is_quoted(), v.unescaped().collect())),
                    )
                })
                .collect(),
        });
    }
    Some(links)
}

fuzz_target!(|data: &[u8]| {
    let Ok(parser) = LinkParser::from_bytes(data) else {
        return;
    };
    let Some(links) = collect(parser) else { return };
    let mut w = LinkWriter::new(String::new());
    for l in &links {
        w.target(&l.target).expect("parsed target is writable");
        for (name, value) in &l.params {
            match value {
                None => w.param(name),
                Some((true, v)) => w.param_quoted(name, v),
                Some((false, v)) => w.param_token(name, v),
            }
            .expect("parsed parameter is writable");
        }
    }
    let out = w.into_inner();
    let again = collect(LinkParser::new(&out)).expect("rewritten payload parses");
    assert_eq!(again, links);
});
