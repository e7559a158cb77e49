//! Paths: the accepted text forms, every refusal, Uri-Path segments, and round trips.

use lwm2m_core::path::{Level, MAX_DEPTH};
use lwm2m_core::{Path, PathError};
use proptest::prelude::*;

#[test]
fn parses_each_level() {
    let cases: [(&str, &[u16], Level); 5] = [
        ("/", &[], Level::Root),
        ("/5", &[5], Level::Object),
        ("/5/0", &[5, 0], Level::Instance),
        ("/5/0/3", &[5, 0, 3], Level::Resource),
        ("/5/0/8/1", &[5, 0, 8, 1], Level::ResourceInstance),
    ];
    for (text, ids, level) in cases {
        let p = Path::parse(text).unwrap();
        assert_eq!(p.ids(), ids, "{text}");
        assert_eq!(p.level(), level);
        assert_eq!(p.depth(), ids.len());
        assert_eq!(p.to_string(), text);
    }
}

#[test]
fn accessors_name_each_level() {
    let p = Path::parse("/5/0/8/1").unwrap();
    assert_eq!(p.object_id(), Some(5));
    assert_eq!(p.instance_id(), Some(0));
    assert_eq!(p.resource_id(), Some(8));
    assert_eq!(p.resource_instance_id(), Some(1));
    let root = Path::root();
    assert!(root.is_root());
    assert_eq!(root.object_id(), None);
    assert_eq!(Path::parse("/3").unwrap().instance_id(), None);
}

#[test]
fn largest_id_is_65534() {
    assert_eq!(
        Path::parse("/65534/65534/65534/65534").unwrap().ids(),
        &[65534; 4]
    );
}

#[test]
fn refusals_name_the_reason() {
    let cases = [
        ("", PathError::MissingLeadingSlash),
        ("5/0", PathError::MissingLeadingSlash),
        (" /5", PathError::MissingLeadingSlash),
        ("//5", PathError::EmptySegment),
        ("/5/", PathError::EmptySegment),
        ("/5//0", PathError::EmptySegment),
        ("/05", PathError::LeadingZero),
        ("/5/00", PathError::LeadingZero),
        ("/5a", PathError::NotADigit),
        ("/-1", PathError::NotADigit),
        ("/+1", PathError::NotADigit),
        ("/ 5", PathError::NotADigit),
        ("/5 ", PathError::NotADigit),
        ("/٣", PathError::NotADigit), // Arabic-Indic digit three: not ASCII
        ("/65535", PathError::ReservedId),
        ("/65536", PathError::Overflow),
        ("/99999999999999999999", PathError::Overflow),
        ("/1/2/3/4/5", PathError::TooDeep),
        ("/1/2/3/4/", PathError::EmptySegment), // the empty fifth segment is seen first
    ];
    for (text, err) in cases {
        assert_eq!(Path::parse(text), Err(err), "{text:?}");
    }
    assert_eq!(Path::parse("/0").unwrap().ids(), &[0]);
}

#[test]
fn uri_path_segments() {
    assert_eq!(
        Path::from_segments(["5", "0", "3"]).unwrap().to_string(),
        "/5/0/3"
    );
    let bytes: [&[u8]; 2] = [b"3", b"0"];
    assert_eq!(Path::from_segments(bytes).unwrap().to_string(), "/3/0");
    assert_eq!(Path::from_segments(Vec::<&str>::new()), Ok(Path::root()));
    assert_eq!(Path::from_segments([""]), Err(PathError::EmptySegment));
    assert_eq!(Path::from_segments(["5", ""]), Err(PathError::EmptySegment));
    assert_eq!(Path::from_segments(["05"]), Err(PathError::LeadingZero));
    assert_eq!(Path::from_segments(["5/0"]), Err(PathError::NotADigit));
    assert_eq!(Path::from_segments(["65535"]), Err(PathError::ReservedId));
    assert_eq!(Path::from_segments(["70000"]), Err(PathError::Overflow));
    assert_eq!(
        Path::from_segments(["1", "2", "3", "4", "5"]),
        Err(PathError::TooDeep)
    );
}

#[test]
fn base_name_and_name_concatenate() {
    assert_eq!(
        Path::parse_concat("/5/0/", "3").unwrap().to_string(),
        "/5/0/3"
    );
    assert_eq!(
        Path::parse_concat("/5/0", "/3").unwrap().to_string(),
        "/5/0/3"
    );
    assert_eq!(
        Path::parse_concat("", "/3/0/0").unwrap().to_string(),
        "/3/0/0"
    );
    assert_eq!(
        Path::parse_concat("/3/0/0", "").unwrap().to_string(),
        "/3/0/0"
    );
    assert_eq!(
        Path::parse_concat("/5/0/", ""),
        Err(PathError::EmptySegment)
    );
    // No separator between them: "/5/0" + "3" is "/5/03".
    assert_eq!(Path::parse_concat("/5/0", "3"), Err(PathError::LeadingZero));
    assert_eq!(
        Path::parse_concat("/5/1", "3"),
        Ok(Path::parse("/5/13").unwrap())
    );
}

#[test]
fn constructors_check_ids_and_depth() {
    assert_eq!(Path::resource(5, 0, 3).unwrap().to_string(), "/5/0/3");
    assert_eq!(
        Path::resource_instance(5, 0, 8, 1).unwrap().to_string(),
        "/5/0/8/1"
    );
    assert_eq!(Path::object(65535), Err(PathError::ReservedId));
    assert_eq!(Path::new(&[1, 2, 3, 4, 5]), Err(PathError::TooDeep));
    let r = Path::resource(5, 0, 8).unwrap();
    assert_eq!(r.child(0).unwrap().to_string(), "/5/0/8/0");
    assert_eq!(r.child(0).unwrap().child(0), Err(PathError::TooDeep));
    assert_eq!(r.parent(), Some(Path::instance(5, 0).unwrap()));
    assert_eq!(Path::root().parent(), None);
    assert!(r.starts_with(&Path::object(5).unwrap()));
    assert!(r.starts_with(&Path::root()));
    assert!(!r.starts_with(&Path::object(3).unwrap()));
    assert!(!Path::object(5).unwrap().starts_with(&r));
}

#[test]
fn order_is_by_ids_then_depth() {
    let mut paths: Vec<Path> = ["/5/1", "/5", "/3/0/0", "/5/0/3", "/", "/5/0"]
        .iter()
        .map(|t| Path::parse(t).unwrap())
        .collect();
    paths.sort();
    let sorted: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    assert_eq!(sorted, ["/", "/3/0/0", "/5", "/5/0", "/5/0/3", "/5/1"]);
}

fn any_path() -> impl Strategy<Value = Path> {
    prop::collection::vec(0u16..u16::MAX, 0..=MAX_DEPTH).prop_map(|ids| Path::new(&ids).unwrap())
}

proptest! {
    #[test]
    fn text_round_trip(p in any_path()) {
        prop_assert_eq!(Path::parse(&p.to_string()), Ok(p));
    }

    #[test]
    fn segment_round_trip(p in any_path()) {
        let segments: Vec<String> = p.ids().iter().map(|id| id.to_string()).collect();
        prop_assert_eq!(Path::from_segments(&segments), Ok(p));
    }

    #[test]
    fn parse_never_panics(s in "\\PC*") {
        let _ = Path::parse(&s);
    }

    #[test]
    fn parse_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(p) = Path::parse_bytes(&b) {
            // Only the canonical spelling is accepted.
            let text = p.to_string();
            prop_assert_eq!(text.as_bytes(), &b[..]);
        }
    }

    #[test]
    fn path_like_text_never_panics(s in "[/0-9]{0,30}") {
        if let Ok(p) = Path::parse(&s) {
            prop_assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn segments_never_panic(segs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..7)) {
        let _ = Path::from_segments(&segs);
    }
}
