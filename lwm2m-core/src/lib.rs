//! lwm2m-core: the protocol facts that the LwM2M server and the device share, in one `no_std`,
//! allocation-free crate that never panics on any input.
#![no_std]
