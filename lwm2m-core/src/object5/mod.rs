//! Object 5 (Firmware Update, LwM2M 1.1 object definition `urn:oma:lwm2m:oma:5:1.1`): resource
//! ids, the integer enumerations both ends read and write, the legal State transitions and the
//! Package URI check.

mod package_uri;
mod transition;

pub use package_uri::{MAX_PACKAGE_URI_LEN, Scheme, validate_package_uri};
pub use transition::{Event, Outcome, Refusal, Staged, transition};

use core::fmt;

/// Object id of Firmware Update.
pub const OBJECT_ID: u16 = 5;
/// Package (W, opaque): the firmware pushed with Block1; `'\0'` resets.
pub const PACKAGE: u16 = 0;
/// Package URI (RW, string, 0..255 chars): where to pull the package; `""` resets.
pub const PACKAGE_URI: u16 = 1;
/// Update (E): install the downloaded package; executable only in State Downloaded.
pub const UPDATE: u16 = 2;
/// State (R, integer 0..3).
pub const STATE: u16 = 3;
/// Update Result (R, integer 0..11).
pub const UPDATE_RESULT: u16 = 5;
/// PkgName (R, string).
pub const PKG_NAME: u16 = 6;
/// PkgVersion (R, string).
pub const PKG_VERSION: u16 = 7;
/// Firmware Update Protocol Support (R, multiple integer).
pub const PROTOCOL_SUPPORT: u16 = 8;
/// Firmware Update Delivery Method (R, integer 0..2).
pub const DELIVERY_METHOD: u16 = 9;
/// Cancel (E): abort before the update starts.
pub const CANCEL: u16 = 10;
/// Severity (RW, integer 0..2).
pub const SEVERITY: u16 = 11;
/// Last State Change Time (R, time).
pub const LAST_STATE_CHANGE_TIME: u16 = 12;
/// Maximum Defer Period (RW, unsigned seconds; 0 = no deferral).
pub const MAX_DEFER_PERIOD: u16 = 13;

/// An integer that is not one of the enumeration's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutOfRange(pub i64);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "value {} out of range", self.0)
    }
}

/// Declares a `u8`-backed enumeration with its conversions to and from the wire integer.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire integer.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value's name for people, in the object definition's words.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v as u8
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                i64::from(v as u8)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = OutOfRange;
            fn try_from(v: i64) -> Result<Self, OutOfRange> {
                match v {
                    $($value => Ok($name::$variant),)+
                    _ => Err(OutOfRange(v)),
                }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = OutOfRange;
            fn try_from(v: u8) -> Result<Self, OutOfRange> {
                $name::try_from(i64::from(v))
            }
        }
    };
}

wire_enum! {
    /// State (/5/0/3).
    State {
        /// Before downloading, or after a successful update.
        Idle = 0 => "Idle",
        /// The package is on its way.
        Downloading = 1 => "Downloading",
        /// The whole package is stored and verified.
        Downloaded = 2 => "Downloaded",
        /// The package is being installed.
        Updating = 3 => "Updating",
    }
}

wire_enum! {
    /// Update Result (/5/0/5).
    UpdateResult {
        /// Initial value; reset whenever a download or an update starts.
        Initial = 0 => "Initial value",
        /// Firmware updated successfully.
        Success = 1 => "Firmware updated successfully",
        /// Not enough flash memory for the new package.
        NotEnoughFlash = 2 => "Not enough flash memory",
        /// Out of RAM during download.
        OutOfRam = 3 => "Out of RAM during download",
        /// Connection lost during download.
        ConnectionLost = 4 => "Connection lost during download",
        /// Integrity check failure for the new package.
        IntegrityFailure = 5 => "Integrity check failure",
        /// Unsupported package type.
        UnsupportedPackage = 6 => "Unsupported package type",
        /// Invalid URI.
        InvalidUri = 7 => "Invalid URI",
        /// Firmware update failed.
        UpdateFailed = 8 => "Firmware update failed",
        /// Unsupported protocol (URI scheme).
        UnsupportedProtocol = 9 => "Unsupported protocol",
        /// Firmware update cancelled.
        Cancelled = 10 => "Firmware update cancelled",
        /// Firmware update deferred.
        Deferred = 11 => "Firmware update deferred",
    }
}

impl UpdateResult {
    /// True for the results that end a download (2, 3, 4, 5, 6, 7, 9).
    pub const fn is_download_failure(self) -> bool {
        matches!(
            self,
            UpdateResult::NotEnoughFlash
                | UpdateResult::OutOfRam
                | UpdateResult::ConnectionLost
                | UpdateResult::IntegrityFailure
                | UpdateResult::UnsupportedPackage
                | UpdateResult::InvalidUri
                | UpdateResult::UnsupportedProtocol
        )
    }
}

wire_enum! {
    /// Firmware Update Protocol Support (/5/0/8/n).
    ProtocolSupport {
        /// CoAP over UDP (RFC 7252) with block-wise transfer.
        Coap = 0 => "CoAP",
        /// CoAP over DTLS.
        Coaps = 1 => "CoAPS",
        /// HTTP 1.1.
        Http = 2 => "HTTP 1.1",
        /// HTTPS 1.1.
        Https = 3 => "HTTPS 1.1",
        /// CoAP over TCP (RFC 8323).
        CoapTcp = 4 => "CoAP over TCP",
        /// CoAP over TLS (RFC 8323).
        CoapTls = 5 => "CoAP over TLS",
    }
}

wire_enum! {
    /// Firmware Update Delivery Method (/5/0/9).
    DeliveryMethod {
        /// Pull only (Package URI).
        Pull = 0 => "Pull only",
        /// Push only (Package).
        Push = 1 => "Push only",
        /// Both pull and push.
        Both = 2 => "Pull and push",
    }
}

wire_enum! {
    /// Severity (/5/0/11).
    Severity {
        /// Critical.
        Critical = 0 => "Critical",
        /// Mandatory (the default).
        Mandatory = 1 => "Mandatory",
        /// Optional.
        Optional = 2 => "Optional",
    }
}

/// True when a whole Package (/5/0/0) payload means "reset": empty, or the single byte `'\0'`.
///
/// Only meaningful for a complete payload (no Block1, or Block1 NUM=0 with M=0).
pub fn is_package_reset(payload: &[u8]) -> bool {
    matches!(payload, [] | [0])
}
