//! Finding an external peer, shared by the interop tests of lwm2m-server and lwm2m-client (the
//! client's tests include this file by path). A missing peer fails the test when CI=true and
//! otherwise skips it with a printed notice.

use std::path::PathBuf;

/// The path of an external peer, or None (after a notice) when it is missing outside CI.
pub fn peer_tool(name: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} is missing at {} (run scripts/setup.sh)",
        path.display()
    );
    eprintln!(
        "NOTICE: skipping: {name} not found at {} (run scripts/setup.sh)",
        path.display()
    );
    None
}

/// A libcoap tool (`coap-client-notls`, `coap-server-notls`) from the PATH.
pub fn libcoap(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/bin").join(tool));
    peer_tool(tool, found)
}
