//! LwM2M paths (`/5`, `/5/0`, `/5/0/3`, `/5/0/8/1`): the address of every object, object
//! instance, resource and resource instance, in text (SenML names, link targets) and as CoAP
//! Uri-Path segments.
//!
//! Each level is a decimal `u16`. 65535 is reserved by LwM2M (it marks "no id"), so no path names
//! it. A segment with a leading zero (`05`) is refused: the same resource must have exactly one
//! spelling, because both ends compare paths as text (link format, SenML names, observation keys)
//! and `/5` and `/05` would otherwise be two names for one object.

use core::cmp::Ordering;
use core::fmt;

/// The id LwM2M reserves; it never appears in a path.
pub const RESERVED_ID: u16 = u16::MAX;

/// The deepest path: object / instance / resource / resource instance.
pub const MAX_DEPTH: usize = 4;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// Text paths start with `/`.
    MissingLeadingSlash,
    /// Two slashes in a row, a trailing slash, or an empty Uri-Path segment.
    EmptySegment,
    /// A segment holds a character other than `0`-`9`.
    NotADigit,
    /// A segment starts with `0` but is not `0` itself (`05`).
    LeadingZero,
    /// A segment is larger than 65535.
    Overflow,
    /// A segment is 65535, which LwM2M reserves.
    ReservedId,
    /// More than four levels.
    TooDeep,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::MissingLeadingSlash => "path does not start with '/'",
            PathError::EmptySegment => "empty path segment",
            PathError::NotADigit => "path segment is not a decimal number",
            PathError::LeadingZero => "path segment has a leading zero",
            PathError::Overflow => "path segment larger than 65535",
            PathError::ReservedId => "path segment is the reserved id 65535",
            PathError::TooDeep => "path deeper than four levels",
        })
    }
}

/// How deep a path reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// `/`
    Root,
    /// `/5`
    Object,
    /// `/5/0`
    Instance,
    /// `/5/0/3`
    Resource,
    /// `/5/0/8/1`
    ResourceInstance,
}

/// An LwM2M path of zero to four ids; `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    // Unused slots stay 0 so the derived Eq/Hash see only the used ids.
    ids: [u16; MAX_DEPTH],
    depth: u8,
}

impl Path {
    /// The root path `/`.
    pub const fn root() -> Path {
        Path {
            ids: [0; MAX_DEPTH],
            depth: 0,
        }
    }

    /// A path from its ids, outermost first (`&[5, 0, 3]` is `/5/0/3`).
    pub fn new(ids: &[u16]) -> Result<Path, PathError> {
        ids.iter().try_fold(Path::root(), |p, &id| p.child(id))
    }

    /// `/object`
    pub const fn object(object: u16) -> Result<Path, PathError> {
        Path::from_ids([object, 0, 0, 0], 1)
    }

    /// `/object/instance`
    pub const fn instance(object: u16, instance: u16) -> Result<Path, PathError> {
        Path::from_ids([object, instance, 0, 0], 2)
    }

    /// `/object/instance/resource`. A `const fn`, so a path the code names is a constant:
    /// `const STATE: Path = match Path::resource(5, 0, 3) { ... }`.
    pub const fn resource(object: u16, instance: u16, resource: u16) -> Result<Path, PathError> {
        Path::from_ids([object, instance, resource, 0], 3)
    }

    /// `/object/instance/resource/resource_instance`
    pub const fn resource_instance(
        object: u16,
        instance: u16,
        resource: u16,
        resource_instance: u16,
    ) -> Result<Path, PathError> {
        Path::from_ids([object, instance, resource, resource_instance], 4)
    }

    /// The first `depth` of `ids` (the unused ones are 0), refusing the reserved id.
    const fn from_ids(ids: [u16; MAX_DEPTH], depth: u8) -> Result<Path, PathError> {
        let [a, b, c, d] = ids;
        if a == RESERVED_ID || b == RESERVED_ID || c == RESERVED_ID || d == RESERVED_ID {
            return Err(PathError::ReservedId);
        }
        Ok(Path { ids, depth })
    }

    /// Parses the text form (`/5/0/3`; `/` is the root).
    pub fn parse(text: &str) -> Result<Path, PathError> {
        Path::parse_bytes(text.as_bytes())
    }

    /// Parses the text form from bytes (e.g. straight from a payload).
    pub fn parse_bytes(text: &[u8]) -> Result<Path, PathError> {
        parse_text(text.iter().copied())
    }

    /// Parses `first` followed by `second` as one path, without copying them together: a SenML
    /// base name and name (`"/5/0/"` + `"3"`) resolve this way.
    pub fn parse_concat(first: &str, second: &str) -> Result<Path, PathError> {
        parse_text(first.bytes().chain(second.bytes()))
    }

    /// Builds a path from CoAP Uri-Path option values (`["5", "0", "3"]`); none is the root.
    pub fn from_segments<I>(segments: I) -> Result<Path, PathError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        segments.into_iter().try_fold(Path::root(), |path, seg| {
            let mut digits = Segment::default();
            for &b in seg.as_ref() {
                digits.push(b)?;
            }
            path.child(digits.finish()?)
        })
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> &[u16] {
        self.ids.get(..usize::from(self.depth)).unwrap_or(&[])
    }

    /// Number of ids (0 for the root).
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.depth == 0
    }

    /// What this path addresses.
    pub fn level(&self) -> Level {
        match self.depth {
            0 => Level::Root,
            1 => Level::Object,
            2 => Level::Instance,
            3 => Level::Resource,
            _ => Level::ResourceInstance,
        }
    }

    /// Object id, if the path reaches that deep.
    pub fn object_id(&self) -> Option<u16> {
        self.ids().first().copied()
    }

    /// Object instance id, if the path reaches that deep.
    pub fn instance_id(&self) -> Option<u16> {
        self.ids().get(1).copied()
    }

    /// Resource id, if the path reaches that deep.
    pub fn resource_id(&self) -> Option<u16> {
        self.ids().get(2).copied()
    }

    /// Resource instance id, if the path reaches that deep.
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.ids().get(3).copied()
    }

    /// This path extended by one id.
    pub fn child(&self, id: u16) -> Result<Path, PathError> {
        if id == RESERVED_ID {
            return Err(PathError::ReservedId);
        }
        let mut next = *self;
        let slot = next
            .ids
            .get_mut(usize::from(self.depth))
            .ok_or(PathError::TooDeep)?;
        *slot = id;
        next.depth = self.depth.saturating_add(1);
        Ok(next)
    }

    /// This path one level up; `None` for the root.
    pub fn parent(&self) -> Option<Path> {
        let depth = self.depth.checked_sub(1)?;
        let mut up = *self;
        if let Some(slot) = up.ids.get_mut(usize::from(depth)) {
            *slot = 0;
        }
        up.depth = depth;
        Some(up)
    }

    /// True when `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.ids().starts_with(prefix.ids())
    }
}

impl Default for Path {
    fn default() -> Self {
        Path::root()
    }
}

impl Ord for Path {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ids().cmp(other.ids())
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str("/");
        }
        for id in self.ids() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl core::str::FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

/// Accumulates the digits of one segment with every check on the way.
#[derive(Default)]
struct Segment {
    value: u32,
    digits: u8,
    leading_zero: bool,
}

impl Segment {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        let digit = match b {
            b'0'..=b'9' => u32::from(b.wrapping_sub(b'0')),
            _ => return Err(PathError::NotADigit),
        };
        if self.leading_zero {
            return Err(PathError::LeadingZero);
        }
        if self.digits == 0 && digit == 0 {
            self.leading_zero = true;
        }
        self.value = self
            .value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit))
            .filter(|v| *v <= u32::from(u16::MAX))
            .ok_or(PathError::Overflow)?;
        self.digits = self.digits.saturating_add(1);
        Ok(())
    }

    fn finish(self) -> Result<u16, PathError> {
        if self.digits == 0 {
            return Err(PathError::EmptySegment);
        }
        u16::try_from(self.value).map_err(|_| PathError::Overflow)
    }
}

fn parse_text<I: Iterator<Item = u8>>(mut bytes: I) -> Result<Path, PathError> {
    if bytes.next() != Some(b'/') {
        return Err(PathError::MissingLeadingSlash);
    }
    let mut bytes = bytes.peekable();
    if bytes.peek().is_none() {
        return Ok(Path::root());
    }
    let mut path = Path::root();
    let mut segment = Segment::default();
    for b in bytes {
        if b == b'/' {
            path = path.child(core::mem::take(&mut segment).finish()?)?;
        } else {
            segment.push(b)?;
        }
    }
    path.child(segment.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn leading_zero_is_checked_before_more_digits() {
        assert_eq!(Path::parse("/05"), Err(PathError::LeadingZero));
        assert_eq!(Path::parse("/00"), Err(PathError::LeadingZero));
        assert_eq!(
            Path::parse("/0").map(|p| p.to_string()),
            Ok("/0".to_string())
        );
    }

    #[test]
    fn the_const_constructors_build_what_new_builds() {
        const STATE: Result<Path, PathError> = Path::resource(5, 0, 3);
        assert_eq!(STATE, Path::new(&[5, 0, 3]));
        assert_eq!(Path::object(3), Path::new(&[3]));
        assert_eq!(Path::instance(3, 0), Path::new(&[3, 0]));
        assert_eq!(
            Path::resource_instance(5, 0, 8, 1),
            Path::new(&[5, 0, 8, 1])
        );
        assert_eq!(
            Path::resource(5, RESERVED_ID, 3),
            Err(PathError::ReservedId)
        );
        assert_eq!(Path::object(RESERVED_ID), Err(PathError::ReservedId));
    }

    #[test]
    fn parent_clears_the_slot_so_equality_holds() {
        let p = Path::new(&[5, 0, 3]).unwrap();
        assert_eq!(p.parent(), Some(Path::new(&[5, 0]).unwrap()));
    }
}
