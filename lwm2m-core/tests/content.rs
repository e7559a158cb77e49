//! Content-Format numbers (IANA CoAP Content-Formats registry; LwM2M TS Core 1.1 §7.4).

use lwm2m_core::content::{self, ContentFormat};

#[test]
fn numbers() {
    let table = [
        (ContentFormat::TextPlain, 0),
        (ContentFormat::LinkFormat, 40),
        (ContentFormat::OctetStream, 42),
        (ContentFormat::Cbor, 60),
        (ContentFormat::SenmlJson, 110),
        (ContentFormat::SenmlCbor, 112),
        (ContentFormat::Lwm2mTlv, 11542),
        (ContentFormat::Lwm2mJson, 11543),
        (ContentFormat::Lwm2mCbor, 11544),
    ];
    for (format, number) in table {
        assert_eq!(format.number(), number);
        assert_eq!(u16::from(format), number);
        assert_eq!(ContentFormat::try_from(number), Ok(format));
    }
    assert_eq!(content::LWM2M_TLV, 11542);
    assert_eq!(content::SENML_CBOR, 112);
    assert_eq!(
        ContentFormat::try_from(50),
        Err(content::UnknownContentFormat(50))
    );
    assert_eq!(ContentFormat::from_number(1542), None);
}
