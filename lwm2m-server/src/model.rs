//! Resource types of the objects this server knows (0, 1, 3, 5 of LwM2M 1.1), so that TLV values,
//! which carry no type on the wire, can be shown as what they are. Unknown resources are shown as
//! text when they are printable UTF-8 and as hex otherwise.

/// An LwM2M resource data type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    String,
    Integer,
    Unsigned,
    Float,
    Boolean,
    Opaque,
    Time,
    ObjLink,
    /// An executable resource: no value.
    Executable,
}

use ResourceType::*;

/// The type of resource `resource` of object `object`, when known.
pub fn resource_type(object: u16, resource: u16) -> Option<ResourceType> {
    let t = match (object, resource) {
        // 0 Security (the resources a minimal client has)
        (0, 0) => String,
        (0, 1) => Boolean,
        (0, 2) => Integer,
        (0, 3..=5) => Opaque,
        (0, 10) => Integer,
        (0, 11..=12) => Integer,
        // 1 Server
        (1, 0..=3) | (1, 5) => Integer,
        (1, 4) | (1, 8) | (1, 9) => Executable,
        (1, 6) | (1, 15) | (1, 16) | (1, 21) | (1, 23) => Boolean,
        (1, 7) | (1, 22) => String,
        (1, 10) => ObjLink,
        (1, 11) | (1, 13) | (1, 14) | (1, 17..=20) => Unsigned,
        (1, 12) => Time,
        // 3 Device
        (3, 0..=3) | (3, 14..=19) => String,
        (3, 4) | (3, 5) | (3, 12) => Executable,
        (3, 6..=11) | (3, 20) | (3, 21) => Integer,
        (3, 13) => Time,
        (3, 22) => ObjLink,
        // 5 Firmware Update
        (5, 0) => Opaque,
        (5, 1) | (5, 6) | (5, 7) => String,
        (5, 2) | (5, 10) => Executable,
        (5, 3) | (5, 5) | (5, 8) | (5, 9) | (5, 11) => Integer,
        (5, 12) => Time,
        (5, 13) => Unsigned,
        _ => return None,
    };
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object5_types_follow_the_object_definition() {
        assert_eq!(resource_type(5, 0), Some(Opaque));
        assert_eq!(resource_type(5, 1), Some(String));
        assert_eq!(resource_type(5, 2), Some(Executable));
        assert_eq!(resource_type(5, 3), Some(Integer));
        assert_eq!(
            resource_type(5, 4),
            None,
            "resource 4 is unused since LwM2M 1.0"
        );
        assert_eq!(resource_type(5, 13), Some(Unsigned));
        assert_eq!(resource_type(3, 3), Some(String));
        assert_eq!(resource_type(3, 13), Some(Time));
        assert_eq!(resource_type(99, 0), None);
    }
}
