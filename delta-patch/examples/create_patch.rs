//! Makes a detools sequential patch: `cargo run --release -p delta-patch --features std --example
//! create_patch -- OLD NEW PATCH [none|heatshrink]`, then checks it by applying it. For
//! measurements; `suit create --delta-from` is the tool.

use delta_patch::{Applier, Compression, create_patch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old, new, out, rest @ ..] = args.as_slice() else {
        return Err("usage: create_patch OLD NEW PATCH [none|heatshrink]".into());
    };
    let compression = match rest.first().map(String::as_str) {
        None | Some("heatshrink") => Compression::HEATSHRINK,
        Some("none") => Compression::None,
        Some(other) => return Err(format!("unknown compression {other}").into()),
    };
    let (old, new) = (std::fs::read(old)?, std::fs::read(new)?);
    let started = std::time::Instant::now();
    let patch = create_patch(&old, &new, compression);
    let took = started.elapsed();
    let mut applier = Applier::new(old.len() as u32, u32::MAX);
    let mut rebuilt = Vec::new();
    applier
        .feed(&patch, &mut old.as_slice(), &mut rebuilt)
        .map_err(|e| format!("{e}"))?;
    applier.finish()?;
    if rebuilt != new {
        return Err("the patch does not rebuild NEW".into());
    }
    std::fs::write(out, &patch)?;
    println!(
        "{} bytes ({:.1} % of {}), made in {took:.2?}",
        patch.len(),
        100.0 * patch.len() as f64 / new.len() as f64,
        new.len()
    );
    Ok(())
}
