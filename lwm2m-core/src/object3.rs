//! Object 3 (Device, LwM2M 1.1 object definition `urn:oma:lwm2m:oma:3`): the ids of the resources
//! that say what a device is and what it runs, which the server reads to pick campaign targets.

/// Object id of Device.
pub const OBJECT_ID: u16 = 3;
/// Manufacturer (R, string).
pub const MANUFACTURER: u16 = 0;
/// Model Number (R, string).
pub const MODEL_NUMBER: u16 = 1;
/// Serial Number (R, string).
pub const SERIAL_NUMBER: u16 = 2;
/// Firmware Version (R, string).
pub const FIRMWARE_VERSION: u16 = 3;
