//! Object models: what each LwM2M object and resource is called, its type, units and operations,
//! from the OMA registry's XML definitions. The core objects 0-7 and common IPSO objects ship with
//! the server ([`builtin`]); an operator adds others (`lwm2m-server models add FILE.xml`), which are
//! kept in the data dir and loaded again at start. Reads are shown with names and units, writes are
//! encoded by the resource's type, and objects without a model still work by number.
//!
//! - this module: the model types and [`Models`], the set the server knows;
//! - `xml`: the loader, with precise errors;
//! - `builtin`: the shipped files.

pub mod builtin;
mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};

use serde::{Serialize, Serializer};

pub use xml::{MAX_XML, ModelError, parse};

/// An LwM2M resource data type (LwM2M TS Core 1.1 appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    String,
    Integer,
    UnsignedInteger,
    Float,
    Boolean,
    Opaque,
    Time,
    Objlnk,
    Corelnk,
    /// No value: an executable resource.
    None,
}

impl ResourceType {
    /// The type as the XML `<Type>` spells it (empty: none).
    pub fn from_xml(text: &str) -> Option<ResourceType> {
        Some(match text {
            "String" => ResourceType::String,
            "Integer" => ResourceType::Integer,
            "Unsigned Integer" => ResourceType::UnsignedInteger,
            "Float" => ResourceType::Float,
            "Boolean" => ResourceType::Boolean,
            "Opaque" => ResourceType::Opaque,
            "Time" => ResourceType::Time,
            "Objlnk" => ResourceType::Objlnk,
            "Corelnk" => ResourceType::Corelnk,
            "" => ResourceType::None,
            _ => return None,
        })
    }

    /// The type for machines (JSON `type` fields): `string`, `integer`, `unsigned`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::String => "string",
            ResourceType::Integer => "integer",
            ResourceType::UnsignedInteger => "unsigned",
            ResourceType::Float => "float",
            ResourceType::Boolean => "boolean",
            ResourceType::Opaque => "opaque",
            ResourceType::Time => "time",
            ResourceType::Objlnk => "objlnk",
            ResourceType::Corelnk => "corelnk",
            ResourceType::None => "none",
        }
    }

    /// The type for people, as the specification names it.
    pub fn label(self) -> &'static str {
        match self {
            ResourceType::String => "String",
            ResourceType::Integer => "Integer",
            ResourceType::UnsignedInteger => "Unsigned Integer",
            ResourceType::Float => "Float",
            ResourceType::Boolean => "Boolean",
            ResourceType::Opaque => "Opaque",
            ResourceType::Time => "Time",
            ResourceType::Objlnk => "Objlnk",
            ResourceType::Corelnk => "Corelnk",
            ResourceType::None => "no value (executable)",
        }
    }
}

impl Serialize for ResourceType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which operations a resource allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Operations {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Operations {
    /// `R`, `W`, `RW`, `E` or empty (the Security object: bootstrap only).
    pub fn parse(text: &str) -> Option<Operations> {
        let mut ops = Operations::default();
        for c in text.chars() {
            let slot = match c {
                'R' => &mut ops.read,
                'W' => &mut ops.write,
                'E' => &mut ops.execute,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        Some(ops)
    }

    /// `RW`, `R`, `E`, ... (empty: none).
    pub fn as_str(self) -> &'static str {
        match (self.read, self.write, self.execute) {
            (false, false, false) => "",
            (true, false, false) => "R",
            (false, true, false) => "W",
            (true, true, false) => "RW",
            (false, false, true) => "E",
            (true, false, true) => "RE",
            (false, true, true) => "WE",
            (true, true, true) => "RWE",
        }
    }
}

impl Serialize for Operations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One resource of an object definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceModel {
    pub id: u16,
    pub name: String,
    pub operations: Operations,
    /// A multiple-instance resource.
    pub multiple: bool,
    pub mandatory: bool,
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The definition's `<RangeEnumeration>`, as written.
    pub range: String,
    pub units: String,
    pub description: String,
}

/// Where a definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Shipped with the server.
    Builtin,
    /// Added by an operator.
    Custom,
}

/// One object definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectModel {
    pub id: u16,
    pub name: String,
    pub description: String,
    pub urn: String,
    pub object_version: String,
    pub lwm2m_version: String,
    /// Whether a device may have several instances of it.
    pub multiple: bool,
    pub mandatory: bool,
    /// In id order.
    pub resources: Vec<ResourceModel>,
    pub source: Source,
}

impl ObjectModel {
    pub fn resource(&self, id: u16) -> Option<&ResourceModel> {
        self.resources
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .and_then(|i| self.resources.get(i))
    }
}

/// The shipped definitions, parsed once per process.
static BUILTIN: LazyLock<Vec<Arc<ObjectModel>>> = LazyLock::new(|| {
    builtin::FILES
        .iter()
        .filter_map(|(file, text)| match parse(text, Source::Builtin) {
            Ok(o) => Some(Arc::new(o)),
            // The tests load every shipped file; this only guards against a broken build.
            Err(e) => {
                tracing::error!("shipped object definition {file}: {e}");
                None
            }
        })
        .collect()
});

/// The object definitions the server knows: the shipped ones, then the operator's (which
/// replace a shipped one of the same id).
pub struct Models {
    objects: RwLock<BTreeMap<u16, Arc<ObjectModel>>>,
    /// Where added definitions are kept (`<data>/models`); none keeps them in memory only.
    dir: Option<PathBuf>,
}

impl Models {
    /// The shipped definitions only; added ones are kept in memory.
    pub fn builtin() -> Models {
        let objects = BUILTIN.iter().map(|o| (o.id, o.clone())).collect();
        Models {
            objects: RwLock::new(objects),
            dir: None,
        }
    }

    /// The shipped definitions and every `*.xml` in `dir` (added earlier). A file there that no
    /// longer loads (edited by hand) is skipped with a warning that says why.
    pub fn open(dir: PathBuf) -> Models {
        let models = Models {
            dir: Some(dir.clone()),
            ..Models::builtin()
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "xml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut objects = models.write();
        for file in files {
            let loaded = std::fs::read_to_string(&file)
                .map_err(|e| ModelError::Store(e.to_string()))
                .and_then(|text| parse(&text, Source::Custom));
            match loaded {
                Ok(o) => {
                    objects.insert(o.id, Arc::new(o));
                }
                Err(e) => tracing::warn!("skipping the object definition {}: {e}", file.display()),
            }
        }
        drop(objects);
        models
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u16, Arc<ObjectModel>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u16, Arc<ObjectModel>>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, object: u16) -> Option<Arc<ObjectModel>> {
        self.read().get(&object).cloned()
    }

    /// Every definition, in id order.
    pub fn list(&self) -> Vec<Arc<ObjectModel>> {
        self.read().values().cloned().collect()
    }

    /// The definition of one resource, when its object has a model.
    pub fn resource(&self, object: u16, resource: u16) -> Option<ResourceModel> {
        self.get(object)?.resource(resource).cloned()
    }

    /// Checks and adds a definition; it is stored (as given) in the data dir, so it survives a
    /// restart. Returns it, and whether it replaced one of the same id.
    pub fn add(&self, text: &str) -> Result<(Arc<ObjectModel>, bool), ModelError> {
        let object = Arc::new(parse(text, Source::Custom)?);
        if let Some(dir) = &self.dir {
            store(dir, object.id, text)?;
        }
        let replaced = self.write().insert(object.id, object.clone()).is_some();
        Ok((object, replaced))
    }
}

/// Writes `<dir>/<id>.xml` whole or not at all (a temporary file, then a rename).
fn store(dir: &std::path::Path, id: u16, text: &str) -> Result<(), ModelError> {
    let err = |e: std::io::Error| ModelError::Store(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{id}.xml.tmp"));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, dir.join(format!("{id}.xml"))).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_definition_loads() {
        let mut ids = Vec::new();
        for (file, text) in builtin::FILES {
            let o = parse(text, Source::Builtin).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(
                format!("{}.xml", o.id),
                *file,
                "the file is named by its id"
            );
            assert!(!o.name.is_empty() && !o.resources.is_empty(), "{file}");
            for r in &o.resources {
                assert!(!r.name.is_empty(), "{file} resource {}", r.id);
                assert!(
                    r.kind != ResourceType::None || r.operations.as_str() == "E",
                    "{file} resource {}: no type but {:?}",
                    r.id,
                    r.operations
                );
            }
            ids.push(o.id);
        }
        ids.sort_unstable();
        let want = [
            0, 1, 2, 3, 4, 5, 6, 7, 3300, 3301, 3303, 3304, 3311, 3312, 3313, 3315, 3316, 3323,
            3328, 3336, 3340, 3341, 3342, 3347,
        ];
        assert_eq!(ids, want);
        assert_eq!(Models::builtin().list().len(), want.len());
    }

    #[test]
    fn the_shipped_models_know_names_types_units_and_operations() {
        let m = Models::builtin();
        let fw = m.resource(3, 3).unwrap();
        assert_eq!(
            (fw.name.as_str(), fw.kind),
            ("Firmware Version", ResourceType::String)
        );
        let lifetime = m.resource(1, 1).unwrap();
        assert_eq!(
            (
                lifetime.kind,
                lifetime.units.as_str(),
                lifetime.operations.as_str()
            ),
            (ResourceType::UnsignedInteger, "s", "RW")
        );
        let reboot = m.resource(3, 4).unwrap();
        assert_eq!(
            (reboot.kind, reboot.operations.as_str()),
            (ResourceType::None, "E")
        );
        assert!(m.resource(3, 7).unwrap().multiple, "Power Source Voltage");
        assert_eq!(
            m.resource(5, 13).unwrap().kind,
            ResourceType::UnsignedInteger
        );
        assert_eq!(m.resource(3, 13).unwrap().kind, ResourceType::Time);
        assert_eq!(m.resource(3303, 5700).unwrap().kind, ResourceType::Float);
        assert_eq!(m.resource(3311, 5850).unwrap().kind, ResourceType::Boolean);
        assert_eq!(m.resource(1, 10).unwrap().kind, ResourceType::Objlnk);
        assert!(m.get(0).unwrap().multiple && !m.get(3).unwrap().multiple);
        assert_eq!(
            m.resource(5, 4),
            None,
            "resource 4 is unused since LwM2M 1.0"
        );
        assert!(m.get(32769).is_none());
    }

    #[test]
    fn operations_parse_every_spelling_the_schema_allows() {
        assert_eq!(Operations::parse("RW").unwrap().as_str(), "RW");
        assert_eq!(Operations::parse("").unwrap(), Operations::default());
        assert!(Operations::parse("RR").is_none() && Operations::parse("r").is_none());
    }

    #[test]
    fn an_added_definition_survives_a_restart_and_replaces_a_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        let models = Models::open(dir.path().join("models"));
        let text = builtin::FILES[3]
            .1
            .replace("<Name>Device</Name>", "<Name>Our Device</Name>");
        let (o, replaced) = models.add(&text).unwrap();
        assert_eq!((o.id, replaced, o.source), (3, true, Source::Custom));
        assert!(models.add("<LWM2M/>").is_err());
        let again = Models::open(dir.path().join("models"));
        assert_eq!(again.get(3).unwrap().name, "Our Device");
        assert_eq!(again.get(5).unwrap().source, Source::Builtin);
        // A file broken by hand is skipped; the rest still loads.
        std::fs::write(dir.path().join("models/9.xml"), "<LWM2M>").unwrap();
        assert_eq!(
            Models::open(dir.path().join("models")).get(3).unwrap().name,
            "Our Device"
        );
    }
}
