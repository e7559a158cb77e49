//! The statuses of update jobs and campaigns: one enum each, as the store keeps them, the REST
//! API and the event stream show them and the CLI reads them back.
//!
//! Every value has one spelling, given once in its `status_enum!` declaration below; `as_str`,
//! [`FromStr`], [`Display`](fmt::Display), serde and the SQL conversions all read it from there.
//! The spellings are stored in the database and are part of the REST API, so changing one is a
//! migration and an API change, not a rename.
//!
//! The enums compare equal to their spelling (`status == "failed"`), so code that holds the
//! JSON view of a job or a campaign can be checked against the API's strings.
//!
//! A leaf module: the store, the job and campaign modules and the event stream all use it, and it
//! uses none of them.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// A text that is not one of an enum's spellings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {text:?}")]
pub struct UnknownStatus {
    /// What was parsed, e.g. `job status`.
    pub kind: &'static str,
    pub text: String,
}

/// Declares a status enum with its spellings and every conversion to and from them, and, after
/// `final:`, its end states ([`JobDeviceStatus::FINAL`] and `is_final`).
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $name:ident($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
        final: [$($end:ident),+ $(,)?]
    ) => {
        status_enum! {
            $(#[$meta])*
            $name($kind) {
                $($(#[$vmeta])* $variant = $text,)+
            }
        }

        impl $name {
            /// The end states: nothing more happens to what is in one.
            pub const FINAL: [$name; [$($name::$end),+].len()] = [$($name::$end),+];

            pub fn is_final(self) -> bool {
                Self::FINAL.contains(&self)
            }
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The spelling: in the database, in the REST API and in the event stream.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that `{:<11}` lines up as it does for a `&str`.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, UnknownStatus> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| UnknownStatus {
                        kind: $kind,
                        text: text.into(),
                    })
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_str().as_bytes())))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

status_enum! {
    /// Where one device is in its update job (`job_devices.status`; `devices[].status` of a job).
    JobDeviceStatus("job device status") {
        Pending = "pending", Downloading = "downloading", Downloaded = "downloaded",
        Updating = "updating", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled",
    }
    final: [Succeeded, Failed, Cancelled]
}

status_enum! {
    /// Where the job's Object 5 procedure is for a device (`job_devices.step`), so that it
    /// resumes after a restart.
    JobStep("job step") {
        Start = "start", Deliver = "deliver", Downloading = "downloading", Execute = "execute",
        Updating = "updating", Done = "done",
    }
}

status_enum! {
    /// A whole job (`status` of a job), from its devices by [`JobStatus::of`]; not stored.
    JobStatus("job status") {
        Running = "running", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled",
    }
}

impl JobStatus {
    /// The status of a job whose devices are in `devices`.
    pub fn of(devices: impl IntoIterator<Item = JobDeviceStatus>) -> JobStatus {
        let (mut running, mut failed, mut cancelled) = (false, false, false);
        for d in devices {
            running |= !d.is_final();
            failed |= d == JobDeviceStatus::Failed;
            cancelled |= d == JobDeviceStatus::Cancelled;
        }
        if running {
            JobStatus::Running
        } else if failed {
            JobStatus::Failed
        } else if cancelled {
            JobStatus::Cancelled
        } else {
            JobStatus::Succeeded
        }
    }
}

status_enum! {
    /// A campaign's state (`campaigns.state`; `state` of a campaign): created (not started,
    /// `start: false`), running a wave, soaking between two waves, paused by the operator
    /// (resumable), halted by the failure threshold, aborted by the operator, or completed.
    CampaignState("campaign state") {
        Created = "created", Running = "running", Soaking = "soaking", Paused = "paused",
        Halted = "halted", Aborted = "aborted", Completed = "completed",
    }
    final: [Halted, Aborted, Completed]
}

status_enum! {
    /// A target device of a campaign (`campaign_devices.status`; the wave counts are named after
    /// these): queued (for its wave, a free slot or to wake up), running its update job, or an
    /// outcome. Only `failed` counts against the wave's threshold: `unreachable` (the job ended
    /// because the device stayed out of reach) and `skipped` (never started: asleep past the
    /// wake timeout, busy, or the campaign ended) say nothing about the release.
    CampaignDeviceStatus("campaign device status") {
        Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed",
        Unreachable = "unreachable", Cancelled = "cancelled", Skipped = "skipped",
    }
    final: [Succeeded, Failed, Unreachable, Cancelled, Skipped]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each spelling goes the same way through `as_str`, `Display`, `FromStr`, serde and SQL.
    fn round_trips<T>(all: &[T])
    where
        T: Copy + fmt::Debug + fmt::Display + PartialEq + FromStr + Serialize + ToSql + FromSql,
        T: serde::de::DeserializeOwned,
        <T as FromStr>::Err: fmt::Debug,
    {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        for &v in all {
            let text = v.to_string();
            assert_eq!(text.parse::<T>().unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(text));
            assert_eq!(
                serde_json::from_value::<T>(serde_json::json!(text)).unwrap(),
                v
            );
            let stored: String = db.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
            assert_eq!(stored, text);
            let back: T = db.query_row("SELECT ?1", [&text], |r| r.get(0)).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn every_spelling_round_trips() {
        round_trips(JobDeviceStatus::ALL);
        round_trips(JobStep::ALL);
        round_trips(JobStatus::ALL);
        round_trips(CampaignState::ALL);
        round_trips(CampaignDeviceStatus::ALL);
    }

    #[test]
    fn the_spellings_are_the_ones_the_api_and_the_database_use() {
        let names = |all: &[&str]| all.join(" ");
        let job: Vec<&str> = JobDeviceStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names(&job),
            "pending downloading downloaded updating succeeded failed cancelled"
        );
        let step: Vec<&str> = JobStep::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names(&step),
            "start deliver downloading execute updating done"
        );
        let state: Vec<&str> = CampaignState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names(&state),
            "created running soaking paused halted aborted completed"
        );
        let device: Vec<&str> = CampaignDeviceStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            names(&device),
            "queued running succeeded failed unreachable cancelled skipped"
        );
        assert_eq!(format!("[{:<9}]", JobStatus::Running), "[running  ]");
        assert_eq!(
            "bogus".parse::<JobStep>().unwrap_err().to_string(),
            "unknown job step \"bogus\""
        );
    }

    #[test]
    fn the_end_states() {
        use CampaignDeviceStatus::{Queued, Running};
        let ended = |all: &[CampaignDeviceStatus]| all.iter().filter(|s| s.is_final()).count();
        assert_eq!(ended(CampaignDeviceStatus::ALL), 5);
        assert!(!Queued.is_final() && !Running.is_final());
        assert_eq!(JobDeviceStatus::FINAL.len(), 3);
        assert!(!JobDeviceStatus::Updating.is_final() && JobDeviceStatus::Cancelled.is_final());
        assert!(!CampaignState::Paused.is_final() && CampaignState::Halted.is_final());
    }

    #[test]
    fn a_job_is_running_until_every_device_ends_then_failed_over_cancelled_over_succeeded() {
        use JobDeviceStatus::*;
        assert_eq!(JobStatus::of([Succeeded, Pending]), JobStatus::Running);
        assert_eq!(
            JobStatus::of([Succeeded, Cancelled, Failed]),
            JobStatus::Failed
        );
        assert_eq!(JobStatus::of([Succeeded, Cancelled]), JobStatus::Cancelled);
        assert_eq!(JobStatus::of([Succeeded, Succeeded]), JobStatus::Succeeded);
        assert_eq!(JobStatus::of([]), JobStatus::Succeeded);
    }
}
