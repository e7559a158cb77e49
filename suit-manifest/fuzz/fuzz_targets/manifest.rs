//! The manifest decoder and the command interpreter, past the signature check: decode without
//! authentication and run every procedure against a device that accepts every condition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suit_manifest::manifest::Manifest;
use suit_manifest::{Component, Device, Envelope, Interpreter, Parameters, Sha256Digest};

struct Yes(u32);

impl<'a> Device<'a> for Yes {
    type Error = ();
    fn check_vendor(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, ()> {
        Ok(true)
    }
    fn check_class(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, ()> {
        Ok(true)
    }
    fn check_slot(&mut self, _: Component<'a>, slot: u64) -> Result<bool, ()> {
        Ok(slot % 2 == 0)
    }
    fn check_image(&mut self, _: Component<'a>, d: &Sha256Digest, _: Option<u64>) -> Result<bool, ()> {
        Ok(d.0[0] & 1 == 0)
    }
    fn fetch(&mut self, _: Component<'a>, p: &Parameters<'a>) -> Result<(), ()> {
        self.0 += 1;
        if p.uri.is_some_and(|u| u.is_empty()) { Err(()) } else { Ok(()) }
    }
    fn copy(&mut self, _: Component<'a>, _: Component<'a>, _: &Parameters<'a>) -> Result<(), ()> {
        Ok(())
    }
    fn swap(&mut self, _: Component<'a>, _: Component<'a>) -> Result<(), ()> {
        Ok(())
    }
    fn write(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<(), ()> {
        Ok(())
    }
    fn invoke(&mut self, _: Component<'a>, _: Option<&'a [u8]>) -> Result<(), ()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The input is the manifest itself, wrapped into an unsigned envelope so that every byte the
    // fuzzer changes reaches the manifest decoder.
    let mut env = vec![0xd8, 0x6b, 0xa2, 0x02, 0x41, 0x80, 0x03, 0x5a];
    env.extend_from_slice(&(data.len() as u32).to_be_bytes());
    env.extend_from_slice(data);
    let Ok(envelope) = Envelope::decode(&env) else { return };
    let Ok(m) = Manifest::decode_unauthenticated(&envelope) else { return };
    let _ = suit_manifest::describe(&m);
    let mut dev = Yes(0);
    let _ = Interpreter::new(&m).update(&mut dev);
    let _ = Interpreter::new(&m).invoke(&mut dev);
});
