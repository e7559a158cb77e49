//! Key and code numbers of draft-ietf-suit-manifest-34 (the numbering IANA registered), COSE and the
//! extension drafts whose keys we recognise only to refuse them by name. One source of truth: every
//! other module names these constants, never the bare numbers.

/// CBOR tag of a SUIT envelope.
pub const TAG_ENVELOPE: u64 = 107;
/// CBOR tag of COSE_Sign1.
pub const TAG_COSE_SIGN1: u64 = 18;
/// CBOR tag of COSE_Sign (several signers; not supported).
pub const TAG_COSE_SIGN: u64 = 98;
/// CBOR tag of COSE_Mac0 (symmetric; not supported).
pub const TAG_COSE_MAC0: u64 = 17;
/// CBOR tag of COSE_Mac (not supported).
pub const TAG_COSE_MAC: u64 = 97;

/// Envelope map keys.
pub mod envelope {
    /// suit-delegation (trust-domains draft).
    pub const DELEGATION: u64 = 1;
    pub const AUTHENTICATION_WRAPPER: u64 = 2;
    pub const MANIFEST: u64 = 3;
}

/// Manifest map keys; the severable ones may also appear in the envelope.
pub mod manifest {
    pub const VERSION: u64 = 1;
    pub const SEQUENCE_NUMBER: u64 = 2;
    pub const COMMON: u64 = 3;
    pub const REFERENCE_URI: u64 = 4;
    /// suit-manifest-component-id (trust-domains draft).
    pub const COMPONENT_ID: u64 = 5;
    /// suit-set-version (update-management draft).
    pub const SET_VERSION: u64 = 6;
    pub const VALIDATE: u64 = 7;
    pub const LOAD: u64 = 8;
    pub const INVOKE: u64 = 9;
    /// suit-coswid (update-management draft), severable.
    pub const COSWID: u64 = 14;
    /// suit-dependency-resolution (trust-domains draft), severable.
    pub const DEPENDENCY_RESOLUTION: u64 = 15;
    pub const PAYLOAD_FETCH: u64 = 16;
    /// suit-candidate-verification (trust-domains draft), severable.
    pub const CANDIDATE_VERIFICATION: u64 = 18;
    pub const INSTALL: u64 = 20;
    pub const TEXT: u64 = 23;
    /// suit-uninstall (trust-domains draft).
    pub const UNINSTALL: u64 = 24;
}

/// SUIT_Common map keys.
pub mod common {
    /// suit-dependencies (trust-domains draft).
    pub const DEPENDENCIES: u64 = 1;
    pub const COMPONENTS: u64 = 2;
    pub const SHARED_SEQUENCE: u64 = 4;
}

/// Command codes: conditions and directives.
pub mod command {
    pub const VENDOR_IDENTIFIER: i64 = 1;
    pub const CLASS_IDENTIFIER: i64 = 2;
    pub const IMAGE_MATCH: i64 = 3;
    pub const USE_BEFORE: i64 = 4;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const CHECK_CONTENT: i64 = 6;
    pub const DEPENDENCY_INTEGRITY: i64 = 7;
    pub const IS_DEPENDENCY: i64 = 8;
    pub const PROCESS_DEPENDENCY: i64 = 11;
    pub const SET_COMPONENT_INDEX: i64 = 12;
    pub const ABORT: i64 = 14;
    pub const TRY_EACH: i64 = 15;
    pub const WRITE: i64 = 18;
    pub const SET_PARAMETERS: i64 = 19;
    pub const OVERRIDE_PARAMETERS: i64 = 20;
    pub const FETCH: i64 = 21;
    pub const COPY: i64 = 22;
    pub const INVOKE: i64 = 23;
    pub const DEVICE_IDENTIFIER: i64 = 24;
    pub const SWAP: i64 = 31;
    pub const RUN_SEQUENCE: i64 = 32;
    pub const UNLINK: i64 = 33;
}

/// Parameter keys (in override-parameters maps).
pub mod parameter {
    pub const VENDOR_IDENTIFIER: i64 = 1;
    pub const CLASS_IDENTIFIER: i64 = 2;
    pub const IMAGE_DIGEST: i64 = 3;
    pub const USE_BEFORE: i64 = 4;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const STRICT_ORDER: i64 = 12;
    pub const SOFT_FAILURE: i64 = 13;
    pub const IMAGE_SIZE: i64 = 14;
    pub const CONTENT: i64 = 18;
    pub const ENCRYPTION_INFO: i64 = 19;
    pub const URI: i64 = 21;
    pub const SOURCE_COMPONENT: i64 = 22;
    pub const INVOKE_ARGS: i64 = 23;
    pub const DEVICE_IDENTIFIER: i64 = 24;
    pub const FETCH_ARGUMENTS: i64 = 25;
    /// otafleet's private-use parameter: the payload's format (a delta patch), see
    /// [`crate::params::PayloadFormat`].
    pub const PAYLOAD_FORMAT: i64 = -257;
    /// Private-use keys from this one down are critical: a device refuses any it does not know
    /// (keys -1 to -256 stay ignorable hints).
    pub const CRITICAL_CUSTOM: i64 = -257;
}

/// SUIT_Text_Map keys.
pub mod text {
    pub const MANIFEST_DESCRIPTION: i64 = 1;
    pub const UPDATE_DESCRIPTION: i64 = 2;
    pub const VENDOR_NAME: i64 = 1;
    pub const MODEL_NAME: i64 = 2;
    pub const VENDOR_DOMAIN: i64 = 3;
    pub const MODEL_INFO: i64 = 4;
    pub const COMPONENT_DESCRIPTION: i64 = 5;
    pub const COMPONENT_VERSION: i64 = 6;
}

/// COSE numbers used by SUIT authentication.
pub mod cose {
    /// Header label `alg`.
    pub const HEADER_ALG: i64 = 1;
    /// ECDSA with SHA-256 (curve from the key: P-256 here).
    pub const ALG_ES256: i64 = -7;
    /// ECDSA with P-256 and SHA-256, the fully specified id the SUIT MTI profile uses.
    pub const ALG_ESP256: i64 = -9;
    /// SHA-256, the digest algorithm of SUIT_Digest.
    pub const ALG_SHA256: i64 = -16;
}

/// Reporting-policy bits used by the builder (`suit-send-record-on-success` and friends).
pub mod report {
    pub const RECORD_ON_FAILURE: u64 = 2;
    /// All four bits: record and sysinfo on success and on failure (what the spec examples use).
    pub const ALL: u64 = 15;
}
