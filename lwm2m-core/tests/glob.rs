//! The glob matcher against a naive recursive reference, on random patterns and names.

use lwm2m_core::glob::matches;
use proptest::prelude::*;

/// Exponential but obviously right: try every way a `*` can split the text.
fn reference(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
        Some((c, rest)) => match t.split_first() {
            Some((tc, trest)) => (*c == '?' || c == tc) && reference(rest, trest),
            None => false,
        },
    }
}

proptest! {
    #[test]
    fn agrees_with_the_reference(pattern in "[ab*?é]{0,8}", text in "[abé]{0,10}") {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        prop_assert_eq!(matches(&pattern, &text), reference(&p, &t), "{:?} vs {:?}", pattern, text);
    }
}
