//! What `lwm2m-client swarm` decides before any device starts (feature `std`): the endpoint names
//! of N devices, which class id each one is built for (`--class-id-for PATTERN=CLASS`), and how
//! the devices are shared out over the worker threads. The devices themselves run the same
//! per-device boot loop as `lwm2m-client` alone.

extern crate std;

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use lwm2m_core::glob;

/// One `--class-id-for PATTERN=CLASS`: devices whose endpoint name matches `pattern` are built
/// for `class` instead of `--class-id`. The pattern is a glob (`*`, `?`) matched by
/// [`lwm2m_core::glob::matches`], the one matcher for endpoint-name globs (campaign targets too).
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
        .find(|r| glob::matches(&r.pattern, endpoint))
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
    index.checked_rem(threads).unwrap_or(0)
}
