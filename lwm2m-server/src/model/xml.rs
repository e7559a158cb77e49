//! The loader of LwM2M object definitions in the OMA registry's XML (`LWM2M.xsd`): quick-xml
//! events into a small element tree, then the tree into an [`ObjectModel`]. Every refusal says
//! where (line and column) and what was expected, so that whoever wrote the file can fix it.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{ObjectModel, Operations, ResourceModel, ResourceType, Source};

/// Largest definition file accepted (the registry's biggest is under 100 KiB).
pub const MAX_XML: usize = 1 << 20;
/// Deepest element nesting accepted (a definition needs 5).
const MAX_DEPTH: usize = 32;

/// Why a definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Not well-formed XML.
    #[error("line {line}, column {column}: not well-formed XML: {detail}")]
    Syntax {
        line: usize,
        column: usize,
        detail: String,
    },
    /// Well-formed, but not a valid object definition.
    #[error("line {line}, column {column}: {detail}")]
    Invalid {
        line: usize,
        column: usize,
        detail: String,
    },
    /// Something about the file as a whole (size, encoding, number of objects).
    #[error("{0}")]
    File(String),
    /// The definition could not be stored.
    #[error("cannot store the definition: {0}")]
    Store(String),
}

/// One element: its name, attributes, text (CDATA included) and children, and where it starts.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
    line: usize,
    column: usize,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn invalid(&self, detail: impl Into<String>) -> ModelError {
        ModelError::Invalid {
            line: self.line,
            column: self.column,
            detail: detail.into(),
        }
    }

    /// The trimmed text of child `name`, which must be there.
    fn required(&self, name: &str, of: &str) -> Result<(&Element, &str), ModelError> {
        let child = self
            .child(name)
            .ok_or_else(|| self.invalid(format!("{of} has no <{name}>")))?;
        Ok((child, child.text.trim()))
    }

    /// The trimmed text of child `name`, or `""` when it is absent.
    fn optional(&self, name: &str) -> &str {
        self.child(name).map(|c| c.text.trim()).unwrap_or("")
    }
}

/// Line and column (1-based, in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The element tree of `text`, rooted at its document element.
fn tree(text: &str) -> Result<Element, ModelError> {
    let mut reader = Reader::from_str(text);
    let syntax = |reader: &Reader<&[u8]>, detail: String| {
        let (line, column) = position(text, reader.error_position() as usize);
        ModelError::Syntax {
            line,
            column,
            detail,
        }
    };
    // The start of the tag just read: the last `<` before the reader's position (attribute
    // values cannot hold a `<`).
    let tag_start = |end: u64| {
        let end = (end as usize).min(text.len());
        position(
            text,
            text.get(..end).and_then(|t| t.rfind('<')).unwrap_or(0),
        )
    };
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| syntax(&reader, e.to_string()))?;
        let open = |e: &quick_xml::events::BytesStart<'_>| -> Result<Element, ModelError> {
            let (line, column) = tag_start(reader.buffer_position());
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|err| ModelError::Syntax {
                    line,
                    column,
                    detail: err.to_string(),
                })?;
                let value = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|err| ModelError::Syntax {
                        line,
                        column,
                        detail: err.to_string(),
                    })?;
                attrs.push((
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    value.into_owned(),
                ));
            }
            Ok(Element {
                name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                attrs,
                line,
                column,
                ..Element::default()
            })
        };
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    let (line, column) = tag_start(reader.buffer_position());
                    return Err(ModelError::Invalid {
                        line,
                        column,
                        detail: format!("elements nest deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(open(&e)?);
            }
            Event::Empty(e) => {
                let element = open(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err(syntax(
                        &reader,
                        "a closing tag without an opening one".into(),
                    ));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => {
                        if root.is_some() {
                            return Err(ModelError::File(
                                "the file has more than one top-level element".into(),
                            ));
                        }
                        root = Some(element);
                    }
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| syntax(&reader, e.to_string()))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => {
                        let (line, column) = position(text, reader.buffer_position() as usize);
                        return Err(ModelError::Syntax {
                            line,
                            column,
                            detail: "text outside the <LWM2M> element".into(),
                        });
                    }
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| syntax(&reader, e.to_string()))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| syntax(&reader, e.to_string()))?;
                        match name.as_ref() {
                            "amp" => "&".into(),
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "quot" => "\"".into(),
                            "apos" => "'".into(),
                            other => {
                                return Err(syntax(&reader, format!("unknown entity &{other};")));
                            }
                        }
                    }
                    Err(e) => return Err(syntax(&reader, e.to_string())),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(ModelError::Syntax {
            line: open.line,
            column: open.column,
            detail: format!("<{}> is never closed", open.name),
        });
    }
    root.ok_or_else(|| ModelError::File("the file holds no XML element".into()))
}

/// Parses one object definition file; `source` says where it came from.
pub fn parse(text: &str, source: Source) -> Result<ObjectModel, ModelError> {
    if text.len() > MAX_XML {
        return Err(ModelError::File(format!(
            "the file is {} bytes: definitions up to {MAX_XML} bytes are accepted",
            text.len()
        )));
    }
    // XML line ends are \n (XML 1.0 §2.11); the registry has files with \r\n.
    let root = tree(text)?;
    if root.name != "LWM2M" {
        return Err(root.invalid(format!(
            "the document element is <{}>: an LwM2M object definition is an <LWM2M> element holding one <Object>",
            root.name
        )));
    }
    let objects: Vec<&Element> = root
        .children
        .iter()
        .filter(|c| c.name == "Object")
        .collect();
    match objects.as_slice() {
        [one] => object(one, source),
        [] => Err(root.invalid("<LWM2M> holds no <Object>")),
        many => {
            let ids: Vec<&str> = many.iter().map(|o| o.optional("ObjectID")).collect();
            Err(ModelError::File(format!(
                "the file defines {} objects ({}): give one object per file",
                many.len(),
                ids.join(", ")
            )))
        }
    }
}

fn number<T: std::str::FromStr>(
    at: &Element,
    text: &str,
    what: &str,
    expected: &str,
) -> Result<T, ModelError> {
    text.parse()
        .map_err(|_| at.invalid(format!("{what} is {text:?}: expected {expected}")))
}

fn instances(at: &Element, text: &str, what: &str) -> Result<bool, ModelError> {
    match text {
        "Single" => Ok(false),
        "Multiple" => Ok(true),
        other => Err(at.invalid(format!(
            "<MultipleInstances> of {what} is {other:?}: expected Single or Multiple"
        ))),
    }
}

fn mandatory(at: &Element, text: &str, what: &str) -> Result<bool, ModelError> {
    match text {
        "Mandatory" => Ok(true),
        "Optional" | "" => Ok(false),
        other => Err(at.invalid(format!(
            "<Mandatory> of {what} is {other:?}: expected Mandatory or Optional"
        ))),
    }
}

/// Newlines as XML reads them (`\r\n` and lone `\r` become `\n`), outer whitespace trimmed.
fn prose(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim()
        .to_string()
}

fn object(e: &Element, source: Source) -> Result<ObjectModel, ModelError> {
    let (name_el, name) = e.required("Name", "<Object>")?;
    if name.is_empty() {
        return Err(name_el.invalid("the object's <Name> is empty"));
    }
    let (id_el, id_text) = e.required("ObjectID", "<Object>")?;
    let id: u16 = number(id_el, id_text, "<ObjectID>", "an object id from 0 to 65535")?;
    let what = format!("object {id}");
    let (multi_el, multi) = e.required("MultipleInstances", &what)?;
    let multiple = instances(multi_el, multi, &what)?;
    let mandatory = match e.child("Mandatory") {
        Some(m) => mandatory(m, m.text.trim(), &what)?,
        None => false,
    };
    let (resources_el, _) = e.required("Resources", &what)?;
    let mut resources = BTreeMap::new();
    for item in resources_el.children.iter().filter(|c| c.name == "Item") {
        let r = resource(item, id)?;
        if resources.contains_key(&r.id) {
            return Err(item.invalid(format!("object {id} defines resource {} twice", r.id)));
        }
        resources.insert(r.id, r);
    }
    Ok(ObjectModel {
        id,
        name: name.to_string(),
        description: prose(e.optional("Description1")),
        urn: e.optional("ObjectURN").to_string(),
        object_version: match e.optional("ObjectVersion") {
            "" => "1.0".to_string(),
            v => v.to_string(),
        },
        lwm2m_version: match e.optional("LWM2MVersion") {
            "" => "1.0".to_string(),
            v => v.to_string(),
        },
        multiple,
        mandatory,
        resources: resources.into_values().collect(),
        source,
    })
}

fn resource(item: &Element, object: u16) -> Result<ResourceModel, ModelError> {
    let id_text = item
        .attrs
        .iter()
        .find(|(k, _)| k == "ID")
        .map(|(_, v)| v.trim())
        .ok_or_else(|| item.invalid(format!("an <Item> of object {object} has no ID attribute")))?;
    let id: u16 = number(
        item,
        id_text,
        &format!("the ID of an <Item> of object {object}"),
        "a resource id from 0 to 65535",
    )?;
    let what = format!("resource {object}/{id}");
    let (name_el, name) = item.required("Name", &what)?;
    if name.is_empty() {
        return Err(name_el.invalid(format!("<Name> of {what} is empty")));
    }
    let (ops_el, ops) = item.required("Operations", &what)?;
    let operations = Operations::parse(ops).ok_or_else(|| {
        ops_el.invalid(format!(
            "<Operations> of {what} is {ops:?}: expected R, W, RW, E or nothing"
        ))
    })?;
    let (multi_el, multi) = item.required("MultipleInstances", &what)?;
    let multiple = instances(multi_el, multi, &what)?;
    let mandatory = match item.child("Mandatory") {
        Some(m) => mandatory(m, m.text.trim(), &what)?,
        None => false,
    };
    let type_el = item.child("Type").unwrap_or(item);
    let type_text = item.optional("Type");
    let kind = ResourceType::from_xml(type_text).ok_or_else(|| {
        type_el.invalid(format!(
            "<Type> of {what} is {type_text:?}: expected String, Integer, Unsigned Integer, Float, Boolean, Opaque, Time, Objlnk, Corelnk, or nothing for an executable resource"
        ))
    })?;
    if kind == ResourceType::None && (operations.read || operations.write) {
        return Err(type_el.invalid(format!(
            "{what} can be read or written (Operations {ops}) but has no <Type>"
        )));
    }
    Ok(ResourceModel {
        id,
        name: name.to_string(),
        operations,
        multiple,
        mandatory,
        kind,
        range: item.optional("RangeEnumeration").to_string(),
        units: item.optional("Units").to_string(),
        description: prose(item.optional("Description")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>Thermostat &amp; fan</Name>
    <Description1><![CDATA[A <test> object.]]></Description1>
    <ObjectID>32769</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:32769</ObjectURN>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="1"><Name>Set point</Name><Operations>RW</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>Float</Type><RangeEnumeration>5..30</RangeEnumeration><Units>Cel</Units>
        <Description>Target</Description></Item>
      <Item ID="0"><Name>Boost</Name><Operations>E</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
        <Type/><Units/><Description/></Item>
    </Resources>
  </Object>
</LWM2M>"#;

    fn err(text: &str) -> ModelError {
        parse(text, Source::Custom).unwrap_err()
    }

    #[test]
    fn a_minimal_definition_loads_with_entities_cdata_and_empty_elements() {
        let o = parse(MINIMAL, Source::Custom).unwrap();
        assert_eq!((o.id, o.name.as_str()), (32769, "Thermostat & fan"));
        assert_eq!(o.description, "A <test> object.");
        assert!(o.multiple && !o.mandatory);
        assert_eq!(o.object_version, "1.0", "absent: 1.0");
        let ids: Vec<u16> = o.resources.iter().map(|r| r.id).collect();
        assert_eq!(ids, [0, 1], "resources in id order");
        let set = o.resource(1).unwrap();
        assert_eq!(
            (set.kind, set.units.as_str(), set.operations.as_str()),
            (ResourceType::Float, "Cel", "RW")
        );
        assert_eq!(o.resource(0).unwrap().kind, ResourceType::None);
    }

    #[test]
    fn malformed_xml_is_refused_with_its_line_and_column() {
        let broken = MINIMAL.replace("</Name><Operations>RW", "</Nme><Operations>RW");
        match err(&broken) {
            ModelError::Syntax { line, detail, .. } => {
                assert_eq!(line, 11, "{detail}");
                assert!(detail.contains("Nme"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let unclosed = MINIMAL.replace("</LWM2M>", "");
        assert!(
            matches!(err(&unclosed), ModelError::Syntax { .. }),
            "{}",
            err(&unclosed)
        );
        assert!(matches!(err(""), ModelError::File(_)));
        assert!(matches!(err("just text"), ModelError::Syntax { .. }));
        let entity = MINIMAL.replace("&amp;", "&nbsp;");
        assert!(
            err(&entity).to_string().contains("&nbsp;"),
            "{}",
            err(&entity)
        );
    }

    #[test]
    fn invalid_definitions_say_what_is_wrong_and_where() {
        let cases = [
            (
                MINIMAL.replace("<Type>Float</Type>", "<Type>Decimal</Type>"),
                "line 13, column 9: <Type> of resource 32769/1 is \"Decimal\": expected String",
            ),
            (
                MINIMAL.replace("<ObjectID>32769</ObjectID>", "<ObjectID>70000</ObjectID>"),
                "<ObjectID> is \"70000\": expected an object id from 0 to 65535",
            ),
            (
                MINIMAL.replace("<Operations>RW</Operations>", "<Operations>RX</Operations>"),
                "<Operations> of resource 32769/1 is \"RX\"",
            ),
            (
                MINIMAL.replace("<Item ID=\"0\">", "<Item ID=\"1\">"),
                "object 32769 defines resource 1 twice",
            ),
            (
                MINIMAL.replace("<Item ID=\"0\">", "<Item>"),
                "an <Item> of object 32769 has no ID attribute",
            ),
            (
                MINIMAL.replace("<MultipleInstances>Multiple</MultipleInstances>", ""),
                "object 32769 has no <MultipleInstances>",
            ),
            (
                MINIMAL.replace("<Type>Float</Type>", "<Type></Type>"),
                "resource 32769/1 can be read or written (Operations RW) but has no <Type>",
            ),
            (
                MINIMAL.replace("LWM2M>", "Objects>"),
                "the document element is <Objects>",
            ),
            (
                MINIMAL.replace(
                    "</Object>",
                    "</Object><Object><ObjectID>9</ObjectID></Object>",
                ),
                "the file defines 2 objects (32769, 9): give one object per file",
            ),
        ];
        for (text, want) in cases {
            let got = err(&text).to_string();
            assert!(got.contains(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn oversized_or_too_deep_input_is_refused_without_parsing_it_all() {
        let big = format!("<LWM2M>{}</LWM2M>", " ".repeat(MAX_XML));
        assert!(err(&big).to_string().contains("bytes are accepted"));
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(err(&deep).to_string().contains("nest deeper"));
    }
}
