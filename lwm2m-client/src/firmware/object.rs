//! Object 5's resources on the device: State, Update Result, package name and version, the
//! Package URI, and the transitions, which are lwm2m-core's (one source of truth for both ends).

use heapless::String;
use lwm2m_core::object5::{self, Event, Outcome, Refusal, State, UpdateResult};

use crate::engine::limits::MAX_PKG_LEN;
use crate::time::Instant;
use crate::uri::UriString;

/// Object 5 as the device holds it.
#[derive(Clone, Debug)]
pub struct FirmwareObject {
    pub state: State,
    pub result: UpdateResult,
    pub pkg_name: String<MAX_PKG_LEN>,
    pub pkg_version: String<MAX_PKG_LEN>,
    /// The Package URI as last written (empty after a reset).
    pub package_uri: UriString,
    /// /5/0/11 Severity (0 critical, 1 mandatory, 2 optional).
    pub severity: u8,
    /// /5/0/13 Maximum Defer Period in seconds.
    pub max_defer_period: u32,
    /// When State last changed (/5/0/12), in the driver's clock.
    pub last_state_change: Instant,
}

/// A change of State or Update Result, which observers are told about (`default()`: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub state: bool,
    pub result: bool,
}

impl Changed {
    pub fn any(self) -> bool {
        self.state || self.result
    }
}

impl FirmwareObject {
    pub fn new(state: State, result: UpdateResult) -> Self {
        FirmwareObject {
            state,
            result,
            pkg_name: String::new(),
            pkg_version: String::new(),
            package_uri: UriString::new(),
            severity: 1,
            max_defer_period: 0,
            last_state_change: Instant(0),
        }
    }

    /// Applies `event` through the Object 5 transition rules.
    pub fn apply(&mut self, now: Instant, event: Event) -> Result<Changed, Refusal> {
        let Outcome { state, result } = object5::transition(self.state, event)?;
        let new_result = result.unwrap_or(self.result);
        let changed = Changed {
            state: state != self.state,
            result: new_result != self.result,
        };
        if changed.state {
            self.last_state_change = now;
        }
        self.state = state;
        self.result = new_result;
        Ok(changed)
    }

    /// Ends a download with `result` (2..7, 9): back to Idle.
    pub fn download_failed(&mut self, now: Instant, result: UpdateResult) -> Changed {
        // Not downloading any more (reset or cancelled meanwhile): nothing to report.
        self.apply(now, Event::DownloadFailed(result))
            .unwrap_or_default()
    }
}
