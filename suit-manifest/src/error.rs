//! Typed errors. Every failure of decoding, verification or interpretation is one of these, so a
//! device can map it to an Object 5 Update Result and a host tool can print a one-line reason.

use core::fmt;

/// Which part of the SUIT structure an error is about (for messages only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Envelope,
    AuthenticationWrapper,
    Digest,
    CoseSign1,
    ProtectedHeader,
    Manifest,
    Common,
    Components,
    Sequence,
    Parameters,
    Text,
}

/// An extension of SUIT this implementation refuses on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    Delegation,
    Dependencies,
    Encryption,
    /// COSE_Sign, COSE_Mac0 or COSE_Mac authentication blocks.
    MultiSignerOrMac,
    /// Manifest elements of the trust-domains or update-management drafts (component id,
    /// set-version, coswid, candidate verification, uninstall).
    ManifestExtension,
    /// Commands outside the core draft (use-before, unlink, dependency commands...).
    Command,
    /// A digest algorithm other than SHA-256.
    DigestAlgorithm,
    /// A critical private-use parameter (key -257 or below) this device does not know.
    CriticalParameter,
    /// A payload format (parameter -257) this device cannot apply.
    PayloadFormat,
}

/// Everything that can go wrong with a SUIT envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input ends inside an item.
    Truncated,
    /// An item has another CBOR type than the spec says.
    WrongType(Part),
    /// An indefinite-length item; SUIT requires deterministic (definite) encoding.
    IndefiniteLength,
    /// Bytes after the end of the envelope, or inside a bstr-wrapped item after its value.
    TrailingBytes(Part),
    /// An integer that does not fit where it is used.
    IntegerOverflow,
    /// Other malformed CBOR (reserved additional info, break without an indefinite item...).
    MalformedCbor,
    /// CBOR nesting deeper than [`crate::limits::MAX_CBOR_DEPTH`] or command sequences deeper than
    /// [`crate::limits::MAX_SEQUENCE_DEPTH`].
    TooDeep,
    /// The envelope (without integrated payloads) is larger than [`crate::limits::MAX_ENVELOPE_LEN`].
    EnvelopeTooLarge,
    /// More components than [`crate::limits::MAX_COMPONENTS`].
    TooManyComponents,
    /// A command sequence with more commands than [`crate::limits::MAX_COMMANDS`].
    TooManyCommands,
    /// More authentication blocks than [`crate::limits::MAX_SIGNATURES`].
    TooManySignatures,
    /// More integrated payloads than [`crate::limits::MAX_INTEGRATED_PAYLOADS`].
    TooManyPayloads,
    /// A component identifier with more than [`crate::limits::MAX_COMPONENT_ID_PARTS`] parts.
    ComponentIdTooLong,
    /// A map holds the same key twice.
    DuplicateKey(Part),
    /// A key this implementation does not know.
    UnknownKey(Part),
    /// A required element is absent.
    Missing(Part),
    /// The envelope is not tagged 107, or a COSE block carries another tag than 18.
    WrongTag(Part),
    /// The authentication wrapper holds a digest but no signature: an unsigned manifest.
    Unsigned,
    /// The signature algorithm is neither ES256 (-7) nor ESP256 (-9).
    UnsupportedAlgorithm,
    /// No trusted key verified any signature.
    BadSignature,
    /// A trust anchor or signature is not a valid P-256 key or signature encoding.
    BadKey,
    /// SHA-256 of the manifest differs from the signed SUIT_Digest.
    ManifestDigestMismatch,
    /// The COSE payload is not detached (`nil`).
    AttachedPayload,
    /// suit-manifest-version is not 1.
    UnsupportedManifestVersion,
    /// A severed element referenced by digest is absent from the envelope.
    SeveredElementMissing(u64),
    /// A severed element does not match the digest the manifest holds for it.
    SeveredDigestMismatch(u64),
    /// An element is in the envelope but the manifest holds it itself, or does not reference it.
    UnexpectedSeveredElement(u64),
    /// A feature that this implementation refuses on purpose.
    Unsupported(Feature),
    /// An unknown command code.
    UnknownCommand,
    /// A command sequence with an odd number of items, or a command with a malformed argument.
    MalformedCommand,
    /// A command needs a parameter that has not been set for the current component.
    MissingParameter(i64),
    /// set-component-index names a component that does not exist.
    ComponentIndexOutOfRange,
    /// A condition failed and soft-failure was not set.
    ConditionFailed(i64),
    /// Every sequence of a try-each failed its conditions.
    TryEachFailed,
    /// suit-condition-abort.
    Aborted,
    /// soft-failure was set outside try-each or run-sequence.
    SoftFailureOutsideTryEach,
    /// The shared sequence holds a command it may not hold (a directive other than
    /// set-component-index, run-sequence, try-each or override-parameters).
    CommandNotAllowedInSharedSequence,
    /// The device's handler of a directive failed (see [`crate::interpreter::RunError`]).
    DeviceFailed,
}

#[cfg(feature = "std")]
impl From<minicbor::decode::Error> for Error {
    fn from(e: minicbor::decode::Error) -> Self {
        if e.is_end_of_input() {
            Error::Truncated
        } else if e.is_type_mismatch() {
            Error::WrongType(Part::Envelope)
        } else {
            Error::MalformedCbor
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Envelope => "envelope",
            Part::AuthenticationWrapper => "authentication wrapper",
            Part::Digest => "SUIT_Digest",
            Part::CoseSign1 => "COSE_Sign1",
            Part::ProtectedHeader => "COSE protected header",
            Part::Manifest => "manifest",
            Part::Common => "common",
            Part::Components => "components",
            Part::Sequence => "command sequence",
            Part::Parameters => "parameters",
            Part::Text => "text",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated: the input ends inside a CBOR item"),
            Error::WrongType(p) => write!(f, "wrong CBOR type in the {p}"),
            Error::IndefiniteLength => {
                f.write_str("indefinite-length CBOR item (SUIT requires definite lengths)")
            }
            Error::TrailingBytes(p) => write!(f, "trailing bytes after the {p}"),
            Error::IntegerOverflow => f.write_str("integer out of range"),
            Error::MalformedCbor => f.write_str("malformed CBOR"),
            Error::TooDeep => f.write_str("nesting too deep"),
            Error::EnvelopeTooLarge => f.write_str("envelope larger than the device accepts"),
            Error::TooManyComponents => f.write_str("too many components"),
            Error::TooManyCommands => f.write_str("command sequence too long"),
            Error::TooManySignatures => f.write_str("too many authentication blocks"),
            Error::TooManyPayloads => f.write_str("too many integrated payloads"),
            Error::ComponentIdTooLong => f.write_str("component identifier too long"),
            Error::DuplicateKey(p) => write!(f, "duplicate key in the {p}"),
            Error::UnknownKey(p) => write!(f, "unknown key in the {p}"),
            Error::Missing(p) => write!(f, "missing {p}"),
            Error::WrongTag(p) => write!(f, "wrong CBOR tag on the {p}"),
            Error::Unsigned => f.write_str("unsigned manifest: no COSE authentication block"),
            Error::UnsupportedAlgorithm => {
                f.write_str("unsupported signature algorithm (only ES256 -7 and ESP256 -9)")
            }
            Error::BadSignature => f.write_str("signature does not verify with the trusted key"),
            Error::BadKey => f.write_str("malformed P-256 key or signature"),
            Error::ManifestDigestMismatch => {
                f.write_str("manifest digest does not match the signed digest")
            }
            Error::AttachedPayload => f.write_str("COSE_Sign1 payload is not detached"),
            Error::UnsupportedManifestVersion => f.write_str("manifest version is not 1"),
            Error::SeveredElementMissing(k) => {
                write!(f, "severed element {k} is absent from the envelope")
            }
            Error::SeveredDigestMismatch(k) => {
                write!(f, "severed element {k} does not match its digest")
            }
            Error::UnexpectedSeveredElement(k) => {
                write!(f, "envelope element {k} is not referenced by the manifest")
            }
            Error::Unsupported(feat) => write!(f, "unsupported SUIT feature: {feat:?}"),
            Error::UnknownCommand => f.write_str("unknown SUIT command"),
            Error::MalformedCommand => f.write_str("malformed SUIT command"),
            Error::MissingParameter(k) => write!(f, "parameter {k} not set"),
            Error::ComponentIndexOutOfRange => f.write_str("component index out of range"),
            Error::ConditionFailed(c) => write!(f, "condition {c} failed"),
            Error::TryEachFailed => f.write_str("no try-each sequence succeeded"),
            Error::Aborted => f.write_str("manifest aborted"),
            Error::SoftFailureOutsideTryEach => {
                f.write_str("soft-failure set outside try-each or run-sequence")
            }
            Error::CommandNotAllowedInSharedSequence => {
                f.write_str("command not allowed in the shared sequence")
            }
            Error::DeviceFailed => f.write_str("the device failed a directive"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
