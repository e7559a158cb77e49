//! The resource paths the server reads, writes and executes on its own (update jobs, campaign
//! target filters, the device-info cache), built from lwm2m-core's object and resource ids so
//! that no path is spelled out as text.

use lwm2m_core::{Path, object3, object5};

/// `/5/0/<resource>`: Firmware Update has one instance.
const fn fw(resource: u16) -> Path {
    instance_0(object5::OBJECT_ID, resource)
}

/// `/3/0/<resource>`: Device has one instance.
const fn device(resource: u16) -> Path {
    instance_0(object3::OBJECT_ID, resource)
}

const fn instance_0(object: u16, resource: u16) -> Path {
    match Path::resource(object, 0, resource) {
        Ok(path) => path,
        // Only called for the constants below, so this is evaluated by the compiler: a reserved
        // id fails the build, never a run.
        Err(_) => panic!("a constant path holds the reserved id"),
    }
}

/// Package (`/5/0/0`): the push target; `'\0'` resets Object 5.
pub const FW_PACKAGE: Path = fw(object5::PACKAGE);
/// Package URI (`/5/0/1`): where the device pulls from; `""` resets Object 5.
pub const FW_PACKAGE_URI: Path = fw(object5::PACKAGE_URI);
/// Update (`/5/0/2`).
pub const FW_UPDATE: Path = fw(object5::UPDATE);
/// State (`/5/0/3`).
pub const FW_STATE: Path = fw(object5::STATE);
/// Update Result (`/5/0/5`).
pub const FW_UPDATE_RESULT: Path = fw(object5::UPDATE_RESULT);
/// PkgVersion (`/5/0/7`).
pub const FW_PKG_VERSION: Path = fw(object5::PKG_VERSION);
/// Firmware Update Protocol Support (`/5/0/8`).
pub const FW_PROTOCOL_SUPPORT: Path = fw(object5::PROTOCOL_SUPPORT);
/// Firmware Update Delivery Method (`/5/0/9`).
pub const FW_DELIVERY_METHOD: Path = fw(object5::DELIVERY_METHOD);
/// Cancel (`/5/0/10`).
pub const FW_CANCEL: Path = fw(object5::CANCEL);
/// Model Number (`/3/0/1`).
pub const DEVICE_MODEL_NUMBER: Path = device(object3::MODEL_NUMBER);
/// Firmware Version (`/3/0/3`).
pub const DEVICE_FIRMWARE_VERSION: Path = device(object3::FIRMWARE_VERSION);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_are_the_paths_the_spec_names() {
        let all = [
            (FW_PACKAGE, "/5/0/0"),
            (FW_PACKAGE_URI, "/5/0/1"),
            (FW_UPDATE, "/5/0/2"),
            (FW_STATE, "/5/0/3"),
            (FW_UPDATE_RESULT, "/5/0/5"),
            (FW_PKG_VERSION, "/5/0/7"),
            (FW_PROTOCOL_SUPPORT, "/5/0/8"),
            (FW_DELIVERY_METHOD, "/5/0/9"),
            (FW_CANCEL, "/5/0/10"),
            (DEVICE_MODEL_NUMBER, "/3/0/1"),
            (DEVICE_FIRMWARE_VERSION, "/3/0/3"),
        ];
        for (path, text) in all {
            assert_eq!(path.to_string(), text);
        }
    }
}
