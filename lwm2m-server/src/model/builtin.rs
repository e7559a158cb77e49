//! The object definitions that ship with the server: the OMA LwM2M registry's XML files for the
//! core objects 0-7 and commonly used IPSO objects, unchanged (each keeps its licence header),
//! compiled into the binary from `lwm2m-server/models/`.

/// `(file name, text)` of every shipped definition.
pub const FILES: &[(&str, &str)] = &[
    ("0.xml", include_str!("../../models/0.xml")),
    ("1.xml", include_str!("../../models/1.xml")),
    ("2.xml", include_str!("../../models/2.xml")),
    ("3.xml", include_str!("../../models/3.xml")),
    ("4.xml", include_str!("../../models/4.xml")),
    ("5.xml", include_str!("../../models/5.xml")),
    ("6.xml", include_str!("../../models/6.xml")),
    ("7.xml", include_str!("../../models/7.xml")),
    ("3300.xml", include_str!("../../models/3300.xml")),
    ("3301.xml", include_str!("../../models/3301.xml")),
    ("3303.xml", include_str!("../../models/3303.xml")),
    ("3304.xml", include_str!("../../models/3304.xml")),
    ("3311.xml", include_str!("../../models/3311.xml")),
    ("3312.xml", include_str!("../../models/3312.xml")),
    ("3313.xml", include_str!("../../models/3313.xml")),
    ("3315.xml", include_str!("../../models/3315.xml")),
    ("3316.xml", include_str!("../../models/3316.xml")),
    ("3323.xml", include_str!("../../models/3323.xml")),
    ("3328.xml", include_str!("../../models/3328.xml")),
    ("3336.xml", include_str!("../../models/3336.xml")),
    ("3340.xml", include_str!("../../models/3340.xml")),
    ("3341.xml", include_str!("../../models/3341.xml")),
    ("3342.xml", include_str!("../../models/3342.xml")),
    ("3347.xml", include_str!("../../models/3347.xml")),
];
