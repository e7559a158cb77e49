//! Object 5 (Firmware Update) on the device: the object's resources and transitions, the
//! block-wise downloads of the manifest and the image, and the SUIT checks between them.

pub mod download;
pub mod fetch;
pub mod object;
pub mod suit;
pub mod window;
