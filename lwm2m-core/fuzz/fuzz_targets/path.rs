//! Path text and Uri-Path segments: never panic; a parsed path prints and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = Path::parse_bytes(data) {
        let text = path.to_string();
        assert_eq!(Path::parse(&text), Ok(path));
        // The canonical form is the only spelling: re-printing gives the input back.
        assert_eq!(text.as_bytes(), data);
        let segments: Vec<String> = path.ids().iter().map(|id| id.to_string()).collect();
        assert_eq!(Path::from_segments(&segments), Ok(path));
    }
    // The same bytes as Uri-Path segments split at '/'.
    if let Ok(path) = Path::from_segments(data.split(|b| *b == b'/')) {
        assert_eq!(Path::parse(&path.to_string()), Ok(path));
    }
    // As a SenML base name + name split anywhere.
    if let Ok(text) = std::str::from_utf8(data) {
        let cut = text
            .char_indices()
            .nth(data.len() / 2)
            .map_or(0, |(i, _)| i);
        let (a, b) = text.split_at(cut);
        assert_eq!(Path::parse_concat(a, b), Path::parse(text));
    }
});
