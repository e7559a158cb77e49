//! Register and Update query parameters: LwM2M 1.0 and 1.1 forms, every refusal, the writer, and
//! round trips.

use lwm2m_core::registration::{
    Binding, DEFAULT_LIFETIME, Key, QueryParam, RegisterParams, RegistrationError as E,
    UpdateParams, Version,
};
use proptest::prelude::*;

#[test]
fn lwm2m_1_1_register() {
    let p = RegisterParams::parse([
        "ep=urn:imei:123456789012345",
        "lt=300",
        "lwm2m=1.1",
        "b=U",
        "Q",
    ])
    .unwrap();
    assert_eq!(p.endpoint, "urn:imei:123456789012345");
    assert_eq!(p.lifetime, Some(300));
    assert_eq!(p.version, Some(Version::V1_1));
    assert_eq!(p.binding, Some(Binding::U));
    assert!(p.queue && p.queue_mode());
    assert_eq!(p.sms, None);
}

#[test]
fn lwm2m_1_0_queue_mode_in_the_binding() {
    let p = RegisterParams::parse(["ep=node1", "b=UQ", "lwm2m=1.0", "sms=+15555550100"]).unwrap();
    assert_eq!(p.binding, Some(Binding::U | Binding::Q));
    assert!(!p.queue);
    assert!(p.queue_mode());
    assert_eq!(p.sms, Some("+15555550100"));
    assert_eq!(p.lifetime_or_default(), DEFAULT_LIFETIME);
    let plain = RegisterParams::parse(["ep=node1"]).unwrap();
    assert!(!plain.queue_mode());
    assert_eq!(plain.version, None);
}

#[test]
fn byte_options_and_query_strings() {
    let opts: [&[u8]; 2] = [b"ep=n", b"lt=60"];
    assert_eq!(RegisterParams::parse(opts).unwrap().lifetime, Some(60));
    let p = RegisterParams::parse_query("ep=n&lt=60&&b=SQ").unwrap();
    assert_eq!((p.endpoint, p.lifetime), ("n", Some(60)));
    assert!(p.queue_mode());
    // A value may itself hold '='.
    assert_eq!(RegisterParams::parse(["ep=a=b"]).unwrap().endpoint, "a=b");
}

#[test]
fn unknown_parameters_are_ignored() {
    let p = RegisterParams::parse(["ep=n", "apn=internet", "foo", "EP=x"]).unwrap();
    assert_eq!(p.endpoint, "n");
}

#[test]
fn register_refusals() {
    let cases: [(&[&str], E); 18] = [
        (&["lt=60"], E::MissingEndpoint),
        (&[], E::MissingEndpoint),
        (&["ep="], E::EmptyEndpoint),
        (&["ep"], E::MissingValue(Key::Endpoint)),
        (&["ep=n", "lt=abc"], E::InvalidLifetime),
        (&["ep=n", "lt=-1"], E::InvalidLifetime),
        (&["ep=n", "lt= 60"], E::InvalidLifetime),
        (&["ep=n", "lt=4294967296"], E::InvalidLifetime),
        (&["ep=n", "lt=0"], E::ZeroLifetime),
        (&["ep=n", "lt"], E::MissingValue(Key::Lifetime)),
        (&["ep=n", "b=UX"], E::UnknownBindingLetter(b'X')),
        (&["ep=n", "b=u"], E::UnknownBindingLetter(b'u')),
        (&["ep=n", "b=UU"], E::DuplicateBindingLetter(b'U')),
        (&["ep=n", "b="], E::EmptyBinding),
        (&["ep=a", "ep=b"], E::DuplicateKey(Key::Endpoint)),
        (&["ep=n", "Q", "Q"], E::DuplicateKey(Key::Queue)),
        (&["ep=n", "Q=1"], E::UnexpectedValue(Key::Queue)),
        (&["ep=n", "lwm2m=1"], E::InvalidVersion),
    ];
    for (opts, err) in cases {
        assert_eq!(
            RegisterParams::parse(opts.iter().copied()),
            Err(err),
            "{opts:?}"
        );
    }
    assert_eq!(
        RegisterParams::parse(["ep=n", "lwm2m=1.x"]),
        Err(E::InvalidVersion)
    );
    assert_eq!(
        RegisterParams::parse(["ep=n", "lwm2m=256.0"]),
        Err(E::InvalidVersion)
    );
    assert_eq!(
        RegisterParams::parse(["ep=n", "sms="]),
        Err(E::MissingValue(Key::Sms))
    );
    let bad_utf8: [&[u8]; 1] = [b"ep=\xff"];
    assert_eq!(RegisterParams::parse(bad_utf8), Err(E::NotUtf8));
}

#[test]
fn update() {
    let u = UpdateParams::parse(["lt=60", "b=U"]).unwrap();
    assert_eq!(
        (u.lifetime, u.binding, u.queue),
        (Some(60), Some(Binding::U), false)
    );
    // An Update carries no ep or lwm2m; they are ignored there.
    assert_eq!(
        UpdateParams::parse(["ep=x", "lwm2m=bad"]),
        Ok(UpdateParams::default())
    );
    assert!(UpdateParams::parse(["Q"]).unwrap().queue_mode());
    assert_eq!(UpdateParams::parse(["lt=0"]), Err(E::ZeroLifetime));
    assert_eq!(
        UpdateParams::parse(["b=UU"]),
        Err(E::DuplicateBindingLetter(b'U'))
    );
    assert_eq!(
        UpdateParams::parse(["lt=5", "lt=6"]),
        Err(E::DuplicateKey(Key::Lifetime))
    );
}

#[test]
fn writer() {
    let p = RegisterParams {
        endpoint: "node1",
        lifetime: Some(300),
        version: Some(Version::V1_1),
        binding: Some(Binding::U),
        sms: None,
        queue: true,
    };
    let opts: Vec<String> = p.options().map(|o| o.to_string()).collect();
    assert_eq!(opts, ["ep=node1", "lt=300", "lwm2m=1.1", "b=U", "Q"]);
    let mut q = String::new();
    p.write_query(&mut q).unwrap();
    assert_eq!(q, "ep=node1&lt=300&lwm2m=1.1&b=U&Q");

    let u = UpdateParams {
        lifetime: Some(60),
        ..Default::default()
    };
    let mut q = String::new();
    u.write_query(&mut q).unwrap();
    assert_eq!(q, "lt=60");
    assert_eq!(QueryParam::Sms("+1").to_string(), "sms=+1");
}

#[test]
fn binding_letters_in_lwm2m_1_0_order() {
    let show = |b: Binding| b.to_string();
    assert_eq!(show(Binding::U), "U");
    assert_eq!(show(Binding::U | Binding::Q), "UQ");
    assert_eq!(show(Binding::S | Binding::Q), "SQ");
    assert_eq!(show(Binding::U | Binding::S), "US");
    assert_eq!(show(Binding::U | Binding::Q | Binding::S), "UQS");
    assert_eq!(show(Binding::T | Binding::N | Binding::U), "UTN");
    assert_eq!(
        Binding::parse(b"QSU"),
        Ok(Binding::U | Binding::Q | Binding::S)
    );
}

fn binding() -> impl Strategy<Value = Binding> {
    (1u8..32).prop_map(|bits| {
        [Binding::U, Binding::Q, Binding::S, Binding::T, Binding::N]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .fold(Binding::default(), |acc, (_, b)| acc | b)
    })
}

proptest! {
    #[test]
    fn register_round_trip(
        ep in "[^&=\\x00]{1,20}",
        lt in prop::option::of(1u32..),
        version in prop::option::of((0u8.., 0u8..).prop_map(|(major, minor)| Version { major, minor })),
        b in prop::option::of(binding()),
        sms in prop::option::of("[0-9+]{1,15}"),
        queue: bool,
    ) {
        let p = RegisterParams { endpoint: &ep, lifetime: lt, version, binding: b, sms: sms.as_deref(), queue };
        let written: Vec<String> = p.options().map(|o| o.to_string()).collect();
        prop_assert_eq!(RegisterParams::parse(written.iter().map(String::as_str)), Ok(p));
        let mut q = String::new();
        p.write_query(&mut q).unwrap();
        prop_assert_eq!(RegisterParams::parse_query(&q), Ok(p));
    }

    #[test]
    fn update_round_trip(lt in prop::option::of(1u32..), b in prop::option::of(binding()), queue: bool) {
        let u = UpdateParams { lifetime: lt, binding: b, sms: None, queue };
        let written: Vec<String> = u.options().map(|o| o.to_string()).collect();
        prop_assert_eq!(UpdateParams::parse(written.iter().map(String::as_str)), Ok(u));
    }

    #[test]
    fn parser_never_panics(opts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..8)) {
        let _ = RegisterParams::parse(opts.iter().map(Vec::as_slice));
        let _ = UpdateParams::parse(opts.iter().map(Vec::as_slice));
    }

    #[test]
    fn key_like_options_never_panic(opts in prop::collection::vec("(ep|lt|lwm2m|b|sms|Q)(=[UQSTN0-9.a-z]{0,5})?", 0..8)) {
        let _ = RegisterParams::parse(opts.iter().map(String::as_str));
        let _ = UpdateParams::parse(opts.iter().map(String::as_str));
    }
}
