//! The device path: decode an envelope, authenticate it against a fixed key, and if that ever
//! succeeds (it should not for forged input), describe it. Also the streaming-prefix decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suit_manifest::{Envelope, TrustAnchor};

static ANCHOR: std::sync::OnceLock<TrustAnchor> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let anchor = ANCHOR.get_or_init(|| {
        let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("fixed key");
        TrustAnchor::from_key(*key.verifying_key())
    });
    if let Ok((env, head)) = Envelope::decode_head(data) {
        if let Some(h) = head {
            assert!(h.offset <= data.len());
        }
        let _ = env.authenticate(std::slice::from_ref(anchor));
    }
    if let Ok(m) = suit_manifest::verify(data, std::slice::from_ref(anchor)) {
        let _ = m.check_severed_elements();
        let _ = suit_manifest::describe(&m);
    }
});
