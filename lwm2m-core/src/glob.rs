//! Shell-style name globs, the one matcher for everything that selects devices by endpoint name
//! (campaign targets on the server, `--class-id-for` in the client's swarm): `*` matches any run of
//! characters (also none), `?` exactly one character, everything else stands for itself; there
//! are no escapes or classes. No allocation: it walks both strings by `char`.

/// Whether `text` matches the glob `pattern` as a whole.
///
/// The classic linear-time wildcard match with one backtrack point (the last `*` seen): when a
/// literal fails after a `*`, the `*` takes one more character and matching resumes.
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut p = pattern.chars();
    let mut t = text.chars();
    // After the last `*`: the pattern just past it, and the text where that `*`'s run ends.
    let mut star: Option<(core::str::Chars<'_>, core::str::Chars<'_>)> = None;
    loop {
        let (p_here, t_here) = (p.clone(), t.clone());
        match (p.next(), t.next()) {
            (Some('*'), _) => {
                // Let the `*` match nothing for now; remember where to widen it.
                star = Some((p.clone(), t_here.clone()));
                t = t_here;
            }
            (Some(pc), Some(tc)) if pc == '?' || pc == tc => {}
            (None, None) => return true,
            (_, None) => return p_here.clone().all(|c| c == '*'),
            _ => match &mut star {
                Some((after_star, run_end)) => {
                    // Widen the `*` by one character and retry from just past it.
                    if run_end.next().is_none() {
                        return false;
                    }
                    p = after_star.clone();
                    t = run_end.clone();
                }
                None => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_stars_and_question_marks() {
        assert!(matches("sensor-1", "sensor-1"));
        assert!(!matches("sensor-1", "sensor-10"));
        assert!(matches("sensor-*", "sensor-10"));
        assert!(matches("sensor-*", "sensor-"));
        assert!(!matches("sensor-*", "valve-1"));
        assert!(matches("*", ""));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("s?n*r-?", "sensor-1"));
        assert!(!matches("?", ""));
        assert!(matches("*-1", "sensor-1"));
        assert!(!matches("*-1", "sensor-10"));
        assert!(matches("**a**", "xxaxx"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        assert!(
            matches("*ab", "aab"),
            "the star must widen past a false start"
        );
    }

    #[test]
    fn characters_not_bytes() {
        assert!(matches("cap?eur", "capteur"));
        assert!(matches("s?nsor", "sénsor"));
        assert!(matches("*ü?", "grün"));
        assert!(!matches("*ü", "grün"));
    }
}
