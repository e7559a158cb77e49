//! Real CoAP peers for interop tests: libcoap's command-line tools and aiocoap in the venv that
//! scripts/setup.sh makes. A missing peer fails the test when CI=true and otherwise skips it with
//! a printed notice.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The Python of the venv with aiocoap.
pub fn venv_python() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/python");
    peer_tool("aiocoap venv", path)
}

/// Runs a blocking command off the runtime, bounded in time by the command's own options.
pub async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.stderr(Stdio::piped()).output().expect("spawn peer"))
        .await
        .unwrap()
}

/// Fetches `uri` with aiocoap's client API into `out`.
pub fn aiocoap_get(python: &Path, uri: &str, out: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(
            "import asyncio,sys,aiocoap\n\
             async def main():\n\
             \x20   ctx = await aiocoap.Context.create_client_context()\n\
             \x20   r = await asyncio.wait_for(ctx.request(aiocoap.Message(code=aiocoap.GET, uri=sys.argv[1])).response, 120)\n\
             \x20   open(sys.argv[2], 'wb').write(r.payload)\n\
             \x20   print(r.code)\n\
             asyncio.run(main())",
        )
        .arg(uri)
        .arg(out);
    cmd
}
