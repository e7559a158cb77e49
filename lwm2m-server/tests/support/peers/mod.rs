//! Real CoAP peers for interop tests: libcoap's command-line tools and aiocoap in the venv that
//! scripts/setup.sh makes. A missing peer fails the test when CI=true and otherwise skips it with
//! a printed notice.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod lookup;
pub use lookup::{libcoap, peer_tool};

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
