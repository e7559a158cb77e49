//! The header of a firmware image for the simulated device: what a real image's build would embed
//! (its version) plus what tests need to control (whether its self-test passes). The device reads
//! it from the active slot after every boot; `lwm2m-client make-image` writes it.
//!
//! Layout (64 bytes, little-endian): `OTAF` magic, header version 1, flags (bit 0: the self-test
//! fails), 2 reserved bytes, the image length (u32, header included), the version string
//! (32 bytes, NUL-padded), 20 reserved bytes.

use heapless::String;

pub const MAGIC: [u8; 4] = *b"OTAF";
pub const HEADER_LEN: usize = 64;
const VERSION_AT: usize = 12;
const VERSION_LEN: usize = 32;
const FLAG_SELF_TEST_FAILS: u8 = 1;

/// A parsed image header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub version: String<VERSION_LEN>,
    pub self_test_passes: bool,
    /// The whole image's length, header included.
    pub len: u32,
}

impl ImageHeader {
    /// Reads a header; `None` when the bytes are not an image (an erased slot, say).
    pub fn parse(bytes: &[u8]) -> Option<ImageHeader> {
        let h = bytes.get(..HEADER_LEN)?;
        if h.get(..4)? != MAGIC || *h.get(4)? != 1 {
            return None;
        }
        let flags = *h.get(5)?;
        let len = u32::from_le_bytes(h.get(8..12)?.try_into().ok()?);
        let raw = h.get(VERSION_AT..VERSION_AT + VERSION_LEN)?;
        let end = raw.iter().position(|b| *b == 0).unwrap_or(VERSION_LEN);
        let text = core::str::from_utf8(raw.get(..end)?).ok()?;
        let mut version = String::new();
        version.push_str(text).ok()?;
        Some(ImageHeader {
            version,
            self_test_passes: flags & FLAG_SELF_TEST_FAILS == 0,
            len,
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let (magic, rest) = h.split_at_mut(4);
        magic.copy_from_slice(&MAGIC);
        if let Some(b) = rest.get_mut(0) {
            *b = 1;
        }
        if let Some(b) = rest.get_mut(1) {
            *b = if self.self_test_passes {
                0
            } else {
                FLAG_SELF_TEST_FAILS
            };
        }
        if let Some(dst) = h.get_mut(8..12) {
            dst.copy_from_slice(&self.len.to_le_bytes());
        }
        let v = self.version.as_bytes();
        if let Some(dst) =
            h.get_mut(VERSION_AT..VERSION_AT.saturating_add(v.len().min(VERSION_LEN)))
        {
            dst.copy_from_slice(v.get(..v.len().min(VERSION_LEN)).unwrap_or(&[]));
        }
        h
    }
}

/// A whole image: the header, then `len - 64` bytes of deterministic filler derived from the
/// version, so two images of different versions differ everywhere.
#[cfg(feature = "std")]
pub fn make_image(version: &str, len: usize, self_test_passes: bool) -> Option<std::vec::Vec<u8>> {
    let len = len.max(HEADER_LEN);
    let mut v = String::new();
    v.push_str(version).ok()?;
    let header = ImageHeader {
        version: v,
        self_test_passes,
        len: u32::try_from(len).ok()?,
    };
    let mut out = header.to_bytes().to_vec();
    let mut x: u32 = version.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    out.extend((HEADER_LEN..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    Some(out)
}

/// Why [`wrap_payload`] made no image.
#[cfg(feature = "std")]
#[derive(Debug, PartialEq, Eq)]
pub enum WrapError {
    /// The version string does not fit the header's 32 bytes.
    VersionTooLong,
    /// Header and payload together are `len` bytes, more than the slot's `max`.
    TooLarge { len: usize, max: usize },
}

#[cfg(feature = "std")]
impl core::fmt::Display for WrapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WrapError::VersionTooLong => write!(f, "the version is longer than 32 bytes"),
            WrapError::TooLarge { len, max } => write!(
                f,
                "the image would be {len} bytes ({HEADER_LEN}-byte header + {} bytes of payload), \
                 more than the {max} bytes of the device's slot: give the raw firmware binary \
                 (e.g. `objcopy -O binary`, not an ELF with debug sections) or make it smaller",
                len.saturating_sub(HEADER_LEN)
            ),
        }
    }
}

/// A bootable image of a real firmware build: the header, then `payload` byte for byte, at most
/// `max_len` bytes in all (the slot the device boots it from).
#[cfg(feature = "std")]
pub fn wrap_payload(
    version: &str,
    payload: &[u8],
    self_test_passes: bool,
    max_len: usize,
) -> Result<std::vec::Vec<u8>, WrapError> {
    let len = payload.len().saturating_add(HEADER_LEN);
    if len > max_len {
        return Err(WrapError::TooLarge { len, max: max_len });
    }
    let header = ImageHeader {
        version: String::try_from(version).map_err(|_| WrapError::VersionTooLong)?,
        self_test_passes,
        len: u32::try_from(len).map_err(|_| WrapError::TooLarge { len, max: max_len })?,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_erased_flash_is_no_image() {
        let h = ImageHeader {
            version: String::try_from("2.0.0").unwrap(),
            self_test_passes: false,
            len: 40_000,
        };
        let bytes = h.to_bytes();
        // Hand-checked layout: magic, version 1, flags 1, length 40000 = 0x9C40 LE.
        assert_eq!(
            &bytes[..12],
            &[b'O', b'T', b'A', b'F', 1, 1, 0, 0, 0x40, 0x9c, 0, 0]
        );
        assert_eq!(&bytes[12..17], b"2.0.0");
        assert_eq!(ImageHeader::parse(&bytes), Some(h));
        assert_eq!(ImageHeader::parse(&[0xff; 64]), None);
        assert_eq!(ImageHeader::parse(&bytes[..63]), None);
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_wrapped_payload_follows_the_header_unchanged_and_must_fit_the_slot() {
        let payload: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let img = wrap_payload("3.1.4", &payload, true, 1064).unwrap();
        assert_eq!(&img[HEADER_LEN..], &payload[..]);
        let h = ImageHeader::parse(&img).unwrap();
        assert_eq!(
            (h.version.as_str(), h.len, h.self_test_passes),
            ("3.1.4", 1064, true)
        );
        assert_eq!(
            wrap_payload("3.1.4", &payload, true, 1063),
            Err(WrapError::TooLarge {
                len: 1064,
                max: 1063
            })
        );
        assert_eq!(
            wrap_payload(&"9".repeat(33), &payload, true, 4096),
            Err(WrapError::VersionTooLong)
        );
    }
}
