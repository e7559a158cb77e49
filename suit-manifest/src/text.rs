//! SUIT_Text_Map: `{ language => { key => text, component-id => { key => text } } }`. Validated
//! once when it is opened, so that look-ups cannot fail later.

use crate::cbor::Reader;
use crate::error::{Error, Part};
use crate::manifest::ComponentId;

/// A validated text map.
#[derive(Clone, Copy, Debug)]
pub struct TextMap<'a> {
    bytes: &'a [u8],
}

impl<'a> TextMap<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, Part::Text);
        let languages = r.map()?;
        for _ in 0..languages {
            r.str()?;
            let entries = r.map()?;
            for _ in 0..entries {
                match r.datatype()? {
                    crate::cbor::Type::Array => {
                        let parts = r.array()?;
                        for _ in 0..parts {
                            r.bytes()?;
                        }
                        let fields = r.map()?;
                        for _ in 0..fields {
                            r.i64()?;
                            r.str()?;
                        }
                    }
                    _ => {
                        r.i64()?;
                        r.str()?;
                    }
                }
            }
        }
        r.finish()?;
        Ok(TextMap { bytes })
    }

    /// A manifest-level text (e.g. [`crate::keys::text::MANIFEST_DESCRIPTION`]) in the first language.
    pub fn manifest_text(&self, key: i64) -> Option<&'a str> {
        self.find(None, key)
    }

    /// A component-level text (e.g. [`crate::keys::text::COMPONENT_VERSION`]) in the first language
    /// that has it.
    pub fn component_text(&self, component: ComponentId<'_>, key: i64) -> Option<&'a str> {
        self.find(Some(component.encoded()), key)
    }

    /// Walks the (already validated) map; `component` selects a component's sub-map.
    fn find(&self, component: Option<&[u8]>, key: i64) -> Option<&'a str> {
        let mut r = Reader::new(self.bytes, Part::Text);
        let languages = r.map().ok()?;
        for _ in 0..languages {
            r.str().ok()?;
            let entries = r.map().ok()?;
            for _ in 0..entries {
                if r.datatype().ok()? == crate::cbor::Type::Array {
                    let start = r.position();
                    r.skip().ok()?;
                    let id = r.input().get(start..r.position())?;
                    let fields = r.map().ok()?;
                    for _ in 0..fields {
                        let k = r.i64().ok()?;
                        let v = r.str().ok()?;
                        if component == Some(id) && k == key {
                            return Some(v);
                        }
                    }
                } else {
                    let k = r.i64().ok()?;
                    let v = r.str().ok()?;
                    if component.is_none() && k == key {
                        return Some(v);
                    }
                }
            }
        }
        None
    }
}
