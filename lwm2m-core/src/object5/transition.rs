//! The Object 5 state machine as one pure function, so the device (which runs it) and the server
//! (which predicts and checks it) agree on every step.
//!
//! Sources: the State, Update Result and Cancel texts of the Object 5 definition (LwM2M 1.1), the
//! state diagram of LwM2M TS 1.0.2 §E.6.1 (figure 29) and the reboot rule of LwM2M 1.0 App. E.
//! Where the texts leave a choice, the rule below says which one was taken:
//!
//! | State                        | Event                         | Outcome                      |
//! |------------------------------|-------------------------------|------------------------------|
//! | Idle                         | Package URI written           | Downloading, Result 0        |
//! | Idle                         | Package write started         | Downloading, Result 0        |
//! | Downloading                  | Package write started         | Downloading, Result 0 (restart, see below) |
//! | Idle, Downloading, Downloaded | URI `""` or Package `'\0'`  | Idle, Result 0               |
//! | Downloading                  | download complete             | Downloaded, Result unchanged |
//! | Downloading                  | download failed (2-7, 9)      | Idle, that Result            |
//! | Downloaded                   | Execute Update                | Updating, Result 0           |
//! | Downloaded                   | user defers                   | Downloaded, Result 11        |
//! | Updating                     | update succeeded              | Idle, Result 1               |
//! | Updating                     | update failed, package kept   | Downloaded, Result 8         |
//! | Updating                     | update failed, package gone   | Idle, Result 8               |
//! | Updating                     | integrity failure             | Idle, Result 5               |
//! | Downloading, Downloaded      | Cancel                        | Idle, Result 10              |
//! | any                          | reboot, valid package staged  | Downloaded, Result unchanged |
//! | Downloading                  | reboot, resumable download    | Downloading, Result unchanged |
//! | any                          | reboot, nothing staged        | Idle, Result unchanged       |
//!
//! Every other pair is refused. A device-side event that cannot happen in a state (download
//! complete while Idle, ...) is a bug in the caller and maps to 5.00.
//!
//! Refusals and the CoAP code the client answers with:
//! - Execute Update outside Downloaded: **4.05** (the object says "executable only when State =
//!   Downloaded"; Anjay answers 4.05).
//! - Cancel while Updating: **4.05** (required by the Cancel text). Cancel in Idle: 4.05 as well,
//!   there is nothing to cancel.
//! - Any write to Package or Package URI while Updating: **4.05** (Anjay: "cannot set ... while
//!   updating").
//! - A new Package URI while Downloading/Downloaded, or a new Package while Downloaded: **4.00**.
//!   The spec names no code; Anjay answers 4.00 Bad Request to a non-empty URI outside Idle and to
//!   a Package write that is not `'\0'` outside Idle. The server must reset first.
//!
//! A Package write that starts again (Block1 NUM=0) while Downloading restarts the push instead of
//! being refused: a server that retries a timed-out push would otherwise be locked out until it
//! resets (zephyrproject-rtos/zephyr#70589 made the same choice).
//!
//! "Update failed" goes to Downloaded or to Idle: figure 29 draws both arrows (discussed in
//! OpenMobileAlliance/OMA_LwM2M_for_Developers#393 and #136), so the caller says whether the
//! package is still installable.

use super::{State, UpdateResult};
use core::fmt;

/// What is staged in the download slot when the device boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Staged {
    /// Nothing usable.
    Nothing,
    /// An unfinished download that can be resumed (URI, ETag and offset persisted).
    PartialDownload,
    /// A complete, verified package that has not been installed.
    ValidPackage,
}

/// Something that happens to Object 5: a server request or device progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A non-empty URI was written to Package URI (/5/0/1).
    PackageUriWritten,
    /// The empty string was written to Package URI (/5/0/1).
    PackageUriReset,
    /// The first block (NUM=0) of a Write to Package (/5/0/0) arrived.
    PackageWriteStarted,
    /// A single `'\0'` byte or an empty payload was written to Package (/5/0/0).
    PackageReset,
    /// The whole package is stored and its integrity checked.
    DownloadComplete,
    /// The download ended with this result (2, 3, 4, 5, 6, 7 or 9).
    DownloadFailed(UpdateResult),
    /// Update (/5/0/2) was executed and the update starts.
    UpdateExecuted,
    /// Update was executed but the user deferred it.
    UpdateDeferred,
    /// The new image booted and confirmed itself.
    UpdateSucceeded,
    /// The update failed (Result 8); `package_kept` if the staged package can be installed again.
    UpdateFailed {
        /// The staged package is still valid and installable.
        package_kept: bool,
    },
    /// The package failed its integrity check while updating (Result 5).
    UpdateIntegrityFailed,
    /// Cancel (/5/0/10) was executed.
    Cancel,
    /// The device restarted with this in its download slot.
    Rebooted(Staged),
}

/// The state after an accepted event; `result: None` leaves Update Result as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// The new State.
    pub state: State,
    /// The new Update Result, or `None` to keep the current one.
    pub result: Option<UpdateResult>,
}

impl Outcome {
    /// The Update Result after this outcome, given the one before it.
    pub fn result_after(&self, before: UpdateResult) -> UpdateResult {
        self.result.unwrap_or(before)
    }
}

/// Why an event is not accepted in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Execute Update while State is not Downloaded (4.05).
    NotDownloaded,
    /// A write to Package / Package URI, or Cancel, while Updating (4.05).
    Updating,
    /// Cancel while Idle: nothing to cancel (4.05).
    NothingToCancel,
    /// A new URI or package while one is downloading or downloaded; reset first (4.00).
    ResetFirst,
    /// `DownloadFailed` with a result that does not end a download (device bug, 5.00).
    NotADownloadFailure,
    /// A device-side event that cannot happen in this state (device bug, 5.00).
    UnexpectedEvent,
}

impl Refusal {
    /// The CoAP response code, encoded as `class << 5 | detail` (4.05 is 0x85).
    pub const fn coap_code(self) -> u8 {
        const BAD_REQUEST: u8 = 4 << 5;
        const METHOD_NOT_ALLOWED: u8 = (4 << 5) | 5;
        const INTERNAL_SERVER_ERROR: u8 = 5 << 5;
        match self {
            Refusal::NotDownloaded | Refusal::Updating | Refusal::NothingToCancel => {
                METHOD_NOT_ALLOWED
            }
            Refusal::ResetFirst => BAD_REQUEST,
            Refusal::NotADownloadFailure | Refusal::UnexpectedEvent => INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotDownloaded => "Update is executable only in State Downloaded",
            Refusal::Updating => "not allowed while updating",
            Refusal::NothingToCancel => "nothing to cancel",
            Refusal::ResetFirst => "a package is already downloading or downloaded; reset first",
            Refusal::NotADownloadFailure => "not a download failure result",
            Refusal::UnexpectedEvent => "event cannot happen in this state",
        })
    }
}

/// The next State and Update Result after `event` in `state`, or why the event is refused.
pub fn transition(state: State, event: Event) -> Result<Outcome, Refusal> {
    use Event as E;
    use State::{Downloaded, Downloading, Idle, Updating};
    let to = |state: State, result: Option<UpdateResult>| Ok(Outcome { state, result });
    match (state, event) {
        // Server writes to Package URI (/5/0/1) and Package (/5/0/0).
        (Idle, E::PackageUriWritten) => to(Downloading, Some(UpdateResult::Initial)),
        (Downloading | Downloaded, E::PackageUriWritten) => Err(Refusal::ResetFirst),
        (Idle | Downloading, E::PackageWriteStarted) => {
            to(Downloading, Some(UpdateResult::Initial))
        }
        (Downloaded, E::PackageWriteStarted) => Err(Refusal::ResetFirst),
        (Idle | Downloading | Downloaded, E::PackageUriReset | E::PackageReset) => {
            to(Idle, Some(UpdateResult::Initial))
        }
        (
            Updating,
            E::PackageUriWritten | E::PackageUriReset | E::PackageWriteStarted | E::PackageReset,
        ) => Err(Refusal::Updating),

        // Server executes Update (/5/0/2) and Cancel (/5/0/10).
        (Downloaded, E::UpdateExecuted) => to(Updating, Some(UpdateResult::Initial)),
        (Idle | Downloading | Updating, E::UpdateExecuted) => Err(Refusal::NotDownloaded),
        (Downloaded, E::UpdateDeferred) => to(Downloaded, Some(UpdateResult::Deferred)),
        (Downloading | Downloaded, E::Cancel) => to(Idle, Some(UpdateResult::Cancelled)),
        (Updating, E::Cancel) => Err(Refusal::Updating),
        (Idle, E::Cancel) => Err(Refusal::NothingToCancel),

        // Device progress.
        (Downloading, E::DownloadComplete) => to(Downloaded, None),
        (Downloading, E::DownloadFailed(result)) if result.is_download_failure() => {
            to(Idle, Some(result))
        }
        (Downloading, E::DownloadFailed(_)) => Err(Refusal::NotADownloadFailure),
        (Updating, E::UpdateSucceeded) => to(Idle, Some(UpdateResult::Success)),
        (Updating, E::UpdateFailed { package_kept: true }) => {
            to(Downloaded, Some(UpdateResult::UpdateFailed))
        }
        (
            Updating,
            E::UpdateFailed {
                package_kept: false,
            },
        ) => to(Idle, Some(UpdateResult::UpdateFailed)),
        (Updating, E::UpdateIntegrityFailed) => to(Idle, Some(UpdateResult::IntegrityFailure)),

        // Reboot: Downloaded if a valid package is staged, else Idle; a download in progress may
        // resume. Update Result keeps its value.
        (_, E::Rebooted(Staged::ValidPackage)) => to(Downloaded, None),
        (_, E::Rebooted(Staged::Nothing)) => to(Idle, None),
        (Downloading, E::Rebooted(Staged::PartialDownload)) => to(Downloading, None),

        (
            _,
            E::DownloadComplete
            | E::DownloadFailed(_)
            | E::UpdateDeferred
            | E::UpdateSucceeded
            | E::UpdateFailed { .. }
            | E::UpdateIntegrityFailed
            | E::Rebooted(Staged::PartialDownload),
        ) => Err(Refusal::UnexpectedEvent),
    }
}
