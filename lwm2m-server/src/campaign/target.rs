//! Which devices a campaign updates: an explicit endpoint list, an endpoint-name glob, or a filter
//! on what the devices report (Object 3 model /3/0/1 and firmware version /3/0/3, falling back to
//! /5/0/7 PkgVersion). Selection is pure here; reading the devices is the manager's job.

use lwm2m_core::glob;
use serde::{Deserialize, Serialize};

/// The target set as the request gives it (and the store keeps it, as JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Exactly these endpoints (in this order). Excludes the other fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Registered endpoints whose name matches this glob (`*` any run, `?` one character;
    /// [`lwm2m_core::glob`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Devices whose model (/3/0/1) matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Devices whose firmware version (/3/0/3, else /5/0/7) matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
}

impl TargetSpec {
    /// Checks that the spec says one thing: a list, or a pattern and/or a filter.
    pub fn validate(&self) -> Result<(), String> {
        let filtered =
            self.pattern.is_some() || self.model.is_some() || self.firmware_version.is_some();
        match (&self.endpoints, filtered) {
            (Some(_), true) => Err(
                "give either `endpoints` or `pattern`/`model`/`firmware_version`, not both".into(),
            ),
            (Some(list), false) if list.is_empty() => {
                Err("the endpoint list is empty: name at least one device".into())
            }
            (None, false) => Err(
                "no target: give `endpoints`, a name `pattern` such as \"sensor-*\", or a `model`/`firmware_version` filter"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Whether the spec needs what devices report (model or version).
    pub fn needs_device_info(&self) -> bool {
        self.model.is_some() || self.firmware_version.is_some()
    }

    /// Whether a registered endpoint's name passes (before any device info is known).
    pub fn name_matches(&self, endpoint: &str) -> bool {
        match (&self.endpoints, &self.pattern) {
            (Some(list), _) => list.iter().any(|e| e == endpoint),
            (None, Some(p)) => glob::matches(p, endpoint),
            (None, None) => true,
        }
    }

    /// Whether a device with this reported info passes the filter.
    pub fn info_matches(&self, info: &DeviceInfo) -> bool {
        let ok = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref().is_some_and(|h| glob::matches(w, h)),
        };
        ok(&self.model, &info.model) && ok(&self.firmware_version, &info.firmware_version)
    }
}

/// What a device reports about itself, read from it or cached from an earlier read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    pub read_at_ms: i64,
}

/// Selects the target set from the registered endpoints (sorted) and, for a filter, the info of
/// each (`info(endpoint)`, `None` when it could not be learnt: such a device is left out).
/// An explicit list keeps its order and must name registered endpoints only.
pub fn select(
    spec: &TargetSpec,
    registered: &[String],
    mut info: impl FnMut(&str) -> Option<DeviceInfo>,
) -> Result<Vec<String>, String> {
    spec.validate()?;
    if let Some(list) = &spec.endpoints {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for ep in list {
            if registered.binary_search(ep).is_err() {
                return Err(format!(
                    "{ep} is not registered: check the name with `lwm2m-server clients`"
                ));
            }
            if seen.insert(ep.as_str()) {
                out.push(ep.clone());
            }
        }
        return Ok(out);
    }
    Ok(registered
        .iter()
        .filter(|ep| spec.name_matches(ep))
        .filter(|ep| !spec.needs_device_info() || info(ep).is_some_and(|i| spec.info_matches(&i)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Vec<String> {
        let mut v: Vec<String> = ["sensor-1", "sensor-2", "sensor-10", "valve-1", "gw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_explicit_list_keeps_its_order_and_must_be_registered() {
        let spec = TargetSpec {
            endpoints: Some(vec!["valve-1".into(), "sensor-1".into(), "valve-1".into()]),
            ..TargetSpec::default()
        };
        assert_eq!(
            select(&spec, &regs(), |_| None).unwrap(),
            vec!["valve-1", "sensor-1"]
        );
        let spec = TargetSpec {
            endpoints: Some(vec!["nope".into()]),
            ..TargetSpec::default()
        };
        assert!(
            select(&spec, &regs(), |_| None)
                .unwrap_err()
                .contains("not registered")
        );
    }

    #[test]
    fn a_pattern_selects_by_name() {
        let spec = TargetSpec {
            pattern: Some("sensor-*".into()),
            ..TargetSpec::default()
        };
        assert_eq!(
            select(&spec, &regs(), |_| None).unwrap(),
            vec!["sensor-1", "sensor-10", "sensor-2"]
        );
    }

    #[test]
    fn a_filter_selects_by_reported_model_and_version_and_leaves_out_the_unknown() {
        let spec = TargetSpec {
            pattern: Some("sensor-*".into()),
            model: Some("board-a".into()),
            firmware_version: Some("1.*".into()),
            ..TargetSpec::default()
        };
        let info = |ep: &str| match ep {
            "sensor-1" => Some(DeviceInfo {
                model: Some("board-a".into()),
                firmware_version: Some("1.2.0".into()),
                read_at_ms: 0,
            }),
            "sensor-2" => Some(DeviceInfo {
                model: Some("board-a".into()),
                firmware_version: Some("2.0.0".into()),
                read_at_ms: 0,
            }),
            // sensor-10: could not be read.
            _ => None,
        };
        assert_eq!(select(&spec, &regs(), info).unwrap(), vec!["sensor-1"]);
        // A filter alone looks at every registered device.
        let spec = TargetSpec {
            model: Some("board-a".into()),
            ..TargetSpec::default()
        };
        assert_eq!(
            select(&spec, &regs(), info).unwrap(),
            vec!["sensor-1", "sensor-2"]
        );
    }

    #[test]
    fn a_spec_says_one_thing() {
        assert!(
            TargetSpec::default()
                .validate()
                .unwrap_err()
                .contains("no target")
        );
        let both = TargetSpec {
            endpoints: Some(vec!["a".into()]),
            pattern: Some("*".into()),
            ..TargetSpec::default()
        };
        assert!(both.validate().unwrap_err().contains("not both"));
        let empty = TargetSpec {
            endpoints: Some(vec![]),
            ..TargetSpec::default()
        };
        assert!(empty.validate().unwrap_err().contains("empty"));
    }
}
