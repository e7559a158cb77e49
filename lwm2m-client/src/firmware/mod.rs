//! Object 5 (Firmware Update) on the device: the object's resources and transitions, the
//! block-wise downloads of the manifest and the image (the protocol in `download`, the map of
//! received bytes in `blocks`, which blocks to ask next in `window`, how hard to push in `pace`),
//! and the SUIT checks between them.

pub mod blocks;
pub mod delta;
pub mod download;
pub mod fetch;
pub mod object;
pub mod pace;
pub mod suit;
pub mod window;
