//! TLV encoding into a caller's buffer, with the shortest header for every entry.

#[cfg(feature = "float")]
use super::value::encode_float;
use super::value::{encode_bool, encode_integer, encode_objlnk, encode_unsigned};
use super::{Level, MAX_HEADER_LEN, TlvError, TlvKind, header};
use crate::content::Value;

/// Writes TLV entries into a byte buffer; fails with [`TlvError::BufferFull`] when it runs out.
///
/// Containers (object instances, multiple resources) take a closure that writes their children;
/// while it runs, the header space is reserved (sized for the bytes left in the buffer, at most 6
/// bytes), then the children are moved up behind the shortest header.
#[derive(Debug)]
pub struct TlvWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    level: Level,
}

impl<'a> TlvWriter<'a> {
    /// Writes a payload at the start of `buf` (any kind of entry at the top).
    pub fn new(buf: &'a mut [u8]) -> TlvWriter<'a> {
        TlvWriter {
            buf,
            pos: 0,
            level: Level::Top,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or(&[])
    }

    /// Gives back the written part of the buffer.
    pub fn into_written(self) -> &'a [u8] {
        let TlvWriter { buf, pos, .. } = self;
        let buf: &'a [u8] = buf;
        buf.get(..pos).unwrap_or(&[])
    }

    /// A single resource with raw value bytes.
    pub fn resource(&mut self, id: u16, value: &[u8]) -> Result<&mut Self, TlvError> {
        self.leaf(TlvKind::Resource, id, value)
    }

    /// One resource instance (inside [`TlvWriter::multiple_resource`], or at the top).
    pub fn resource_instance(&mut self, id: u16, value: &[u8]) -> Result<&mut Self, TlvError> {
        self.leaf(TlvKind::ResourceInstance, id, value)
    }

    /// A single resource with a typed value.
    pub fn resource_value(&mut self, id: u16, value: &Value<'_>) -> Result<&mut Self, TlvError> {
        self.typed_leaf(TlvKind::Resource, id, value)
    }

    /// One resource instance with a typed value.
    pub fn resource_instance_value(
        &mut self,
        id: u16,
        value: &Value<'_>,
    ) -> Result<&mut Self, TlvError> {
        self.typed_leaf(TlvKind::ResourceInstance, id, value)
    }

    /// A multiple resource; `write` adds its resource instances.
    pub fn multiple_resource<F>(&mut self, id: u16, write: F) -> Result<&mut Self, TlvError>
    where
        F: FnOnce(&mut TlvWriter<'_>) -> Result<(), TlvError>,
    {
        self.container(TlvKind::MultipleResource, id, write)
    }

    /// An object instance; `write` adds its resources and multiple resources.
    pub fn object_instance<F>(&mut self, id: u16, write: F) -> Result<&mut Self, TlvError>
    where
        F: FnOnce(&mut TlvWriter<'_>) -> Result<(), TlvError>,
    {
        self.container(TlvKind::ObjectInstance, id, write)
    }

    fn typed_leaf(
        &mut self,
        kind: TlvKind,
        id: u16,
        value: &Value<'_>,
    ) -> Result<&mut Self, TlvError> {
        let scalar = match *value {
            Value::Integer(v) => encode_integer(v),
            Value::Unsigned(v) => encode_unsigned(v),
            #[cfg(feature = "float")]
            Value::Float(v) => encode_float(v),
            #[cfg(not(feature = "float"))]
            Value::Float(_) => return Err(TlvError::FloatUnsupported),
            Value::Boolean(v) => encode_bool(v),
            Value::ObjLink(o, i) => encode_objlnk(o, i),
            Value::String(s) => return self.leaf(kind, id, s.as_bytes()),
            Value::Opaque(b) => return self.leaf(kind, id, b),
        };
        self.leaf(kind, id, scalar.as_slice())
    }

    fn leaf(&mut self, kind: TlvKind, id: u16, value: &[u8]) -> Result<&mut Self, TlvError> {
        self.level.admit(kind)?;
        let (head, head_len) = header(kind, id, value.len())?;
        // Check the whole entry fits first, so a failed write leaves no partial entry.
        let needed = head_len
            .checked_add(value.len())
            .ok_or(TlvError::BufferFull)?;
        if self.buf.len().saturating_sub(self.pos) < needed {
            return Err(TlvError::BufferFull);
        }
        self.put(head.get(..head_len).unwrap_or(&[]))?;
        self.put(value)?;
        Ok(self)
    }

    fn container<F>(&mut self, kind: TlvKind, id: u16, write: F) -> Result<&mut Self, TlvError>
    where
        F: FnOnce(&mut TlvWriter<'_>) -> Result<(), TlvError>,
    {
        self.level.admit(kind)?;
        let level = Level::inside(kind).ok_or(TlvError::NotAContainer)?;
        let start = self.pos;
        let room = self.buf.len().saturating_sub(start);
        // The children cannot be longer than the room left, so a header sized for `room` is
        // at least as long as the one they will need.
        let reserve = header(kind, id, room.min(super::MAX_VALUE_LEN))?
            .1
            .min(MAX_HEADER_LEN);
        let body_start = start.checked_add(reserve).ok_or(TlvError::BufferFull)?;
        let tail = self.buf.get_mut(body_start..).ok_or(TlvError::BufferFull)?;
        let mut inner = TlvWriter {
            buf: tail,
            pos: 0,
            level,
        };
        write(&mut inner)?;
        let body_len = inner.pos;
        let (head, head_len) = header(kind, id, body_len)?;
        let body_end = body_start
            .checked_add(body_len)
            .ok_or(TlvError::BufferFull)?;
        let new_body_start = start.checked_add(head_len).ok_or(TlvError::BufferFull)?;
        if body_end > self.buf.len() || head_len > reserve {
            return Err(TlvError::BufferFull);
        }
        self.buf.copy_within(body_start..body_end, new_body_start);
        self.buf
            .get_mut(start..new_body_start)
            .ok_or(TlvError::BufferFull)?
            .copy_from_slice(head.get(..head_len).unwrap_or(&[]));
        self.pos = new_body_start
            .checked_add(body_len)
            .ok_or(TlvError::BufferFull)?;
        Ok(self)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), TlvError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(TlvError::BufferFull)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(TlvError::BufferFull)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}
