//! What `lwm2m-client swarm` decides before any device starts (feature `std`): the endpoint names
//! of N devices, which class id each one is built for (`--class-id-for PATTERN=CLASS`), and how
//! the devices are shared out over the worker threads. The devices themselves run the same
//! per-device boot loop as `lwm2m-client` alone.

extern crate std;

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// `name` matches the glob `pattern`: `*` is any run of characters (also none), `?` exactly one;
/// everything else stands for itself. The same globs as the server's campaign targets.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy with one backtrack point: the last `*` seen and where in `name` it stands.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// One `--class-id-for PATTERN=CLASS`: devices whose endpoint name matches `pattern` are built
/// for `class` instead of `--class-id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRule {
    pub pattern: String,
    pub class: String,
}

impl ClassRule {
    /// Parses `PATTERN=CLASS` (both non-empty; the class may itself contain `=`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some((pattern, class)) if !pattern.is_empty() && !class.is_empty() => Ok(ClassRule {
                pattern: pattern.into(),
                class: class.into(),
            }),
            _ => Err(format!(
                "{text:?} is not PATTERN=CLASS (e.g. 'sw-2??=sensor-rev-c')"
            )),
        }
    }
}

/// The class id a device is built for: the first rule whose pattern matches its endpoint name,
/// else `default`.
pub fn class_for<'a>(rules: &'a [ClassRule], endpoint: &str, default: &'a str) -> &'a str {
    rules
        .iter()
        .find(|r| glob_match(&r.pattern, endpoint))
        .map_or(default, |r| r.class.as_str())
}

/// The endpoint names of `count` devices: `prefix` and the index from 0, zero-padded to the width
/// of the largest index, so that name order is index order (`sw-000` .. `sw-199`).
pub fn endpoint_names(prefix: &str, count: usize) -> Vec<String> {
    let width = count.saturating_sub(1).to_string().len();
    (0..count).map(|i| format!("{prefix}{i:0width$}")).collect()
}

/// Device `i` of the swarm runs on thread `i % threads`: neighbours in name order (which are
/// often in the same campaign wave) land on different threads.
pub fn thread_of(index: usize, threads: usize) -> usize {
    index % threads.max(1)
}
