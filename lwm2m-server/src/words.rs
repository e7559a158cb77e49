//! Words for people, codes for machines: how the audit trail, events and errors say what an
//! Object 5 State or Update Result means ("Downloading (State 1), no result yet"), with the names
//! from lwm2m-core, the one source of those facts. JSON keeps the numbers beside these words.

use lwm2m_core::object5::{DeliveryMethod, ProtocolSupport, Severity, State, UpdateResult};

/// What value `value` of resource `/object/x/resource` means, for the enumerated resources of
/// Object 5.
pub fn meaning(object: u16, resource: u16, value: i64) -> Option<&'static str> {
    use lwm2m_core::object5 as fw;
    if object != fw::OBJECT_ID {
        return None;
    }
    match resource {
        fw::STATE => State::try_from(value).ok().map(State::name),
        fw::UPDATE_RESULT => UpdateResult::try_from(value).ok().map(UpdateResult::name),
        fw::PROTOCOL_SUPPORT => ProtocolSupport::try_from(value)
            .ok()
            .map(ProtocolSupport::name),
        fw::DELIVERY_METHOD => DeliveryMethod::try_from(value)
            .ok()
            .map(DeliveryMethod::name),
        fw::SEVERITY => Severity::try_from(value).ok().map(Severity::name),
        _ => None,
    }
}

/// The name of State `state`, when it is one.
pub fn state_name(state: Option<i64>) -> Option<&'static str> {
    state.and_then(|s| State::try_from(s).ok()).map(State::name)
}

/// The name of Update Result `result`, when it is one.
pub fn result_name(result: Option<i64>) -> Option<&'static str> {
    result
        .and_then(|r| UpdateResult::try_from(r).ok())
        .map(UpdateResult::name)
}

/// `Downloading (State 1)`, `State 9 (not a State of LwM2M)`, `State not read`.
pub fn state(state: Option<i64>) -> String {
    match (state, state_name(state)) {
        (Some(n), Some(name)) => format!("{name} (State {n})"),
        (Some(n), None) => format!("State {n} (not a State of LwM2M)"),
        (None, _) => "State not read".into(),
    }
}

/// `no result yet` (Result 0), `Integrity check failure (Result 5)`, `Result not read`.
pub fn result(result: Option<i64>) -> String {
    match (result, result_name(result)) {
        (Some(0), _) => "no result yet".into(),
        (Some(n), Some(name)) => format!("{name} (Result {n})"),
        (Some(n), None) => format!("Result {n} (not an Update Result of LwM2M)"),
        (None, _) => "Result not read".into(),
    }
}

/// `Downloading (State 1), no result yet`.
pub fn object5(state_value: Option<i64>, result_value: Option<i64>) -> String {
    format!("{}, {}", state(state_value), result(result_value))
}

/// `Update failed: Integrity check failure (Result 5)` (`what` is "Update" or "Download").
pub fn failed(what: &str, r: UpdateResult) -> String {
    format!("{what} failed: {} (Result {})", r.name(), r.code())
}

/// What an audit line's event code means, for people (`object5` → "Device reported").
pub fn audit_event(event: &str) -> &'static str {
    match event {
        "job-created" => "Job created",
        "prepared" => "Device checked and prepared",
        "reset" => "Device reset to Idle",
        "download-started" => "Download started (Package URI written)",
        "push-started" => "Push started",
        "push-complete" => "Push complete",
        "object5" => "Device reported",
        "downloaded" => "Downloaded and verified by the device",
        "update-executed" => "Update executed",
        "update-not-delivered" => "Update not delivered",
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        "retry" => "Retrying",
        "unreachable" => "Device unreachable",
        "re-registered" => "Registered again from another address",
        "address-changed" => "Updated its registration from another address",
        "image-served" => "Image served to the device (the server's record)",
        "delta-sent" => "Delta sent instead of the full image",
        "delta-fallback" => "Fell back to the full image",
        "cancel-requested" => "Cancel requested",
        "cancelled" => "Cancelled",
        "campaign-created" => "Campaign created",
        e if e.starts_with("campaign-") => "Campaign changed state",
        _ => "Event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object5_codes_read_as_words_with_the_number_beside_them() {
        assert_eq!(
            object5(Some(1), Some(0)),
            "Downloading (State 1), no result yet"
        );
        assert_eq!(
            object5(Some(0), Some(5)),
            "Idle (State 0), Integrity check failure (Result 5)"
        );
        assert_eq!(object5(None, None), "State not read, Result not read");
        assert_eq!(
            object5(Some(7), Some(42)),
            "State 7 (not a State of LwM2M), Result 42 (not an Update Result of LwM2M)"
        );
        assert_eq!(
            failed("Update", UpdateResult::IntegrityFailure),
            "Update failed: Integrity check failure (Result 5)"
        );
        assert_eq!(result(Some(1)), "Firmware updated successfully (Result 1)");
        for s in [object5(Some(2), Some(1)), object5(None, Some(3))] {
            assert!(!s.contains("Some(") && !s.contains("None"), "{s}");
        }
    }

    #[test]
    fn enumerated_object5_values_have_a_meaning_and_others_none() {
        assert_eq!(meaning(5, 3, 2), Some("Downloaded"));
        assert_eq!(meaning(5, 5, 6), Some("Unsupported package type"));
        assert_eq!(meaning(5, 9, 2), Some("Pull and push"));
        assert_eq!(meaning(5, 8, 0), Some("CoAP"));
        assert_eq!(meaning(5, 11, 0), Some("Critical"));
        assert_eq!(meaning(5, 3, 9), None);
        assert_eq!(meaning(3, 3, 1), None);
        assert_eq!(meaning(5, 7, 1), None);
    }
}
