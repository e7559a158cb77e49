//! A throw-away PostgreSQL cluster for the PostgreSQL store's tests: `initdb` in a temp dir,
//! `pg_ctl start` on 127.0.0.1 at a free port with its unix socket in the temp dir and trust
//! auth, stopped (`pg_ctl stop -m immediate`) when dropped. PostgreSQL refuses to run as root,
//! so as root the cluster runs as the `postgres` user (`runuser`).
//!
//! Missing binaries skip the test with a notice, or fail it when CI=true. The binaries are
//! looked for in `PG_BIN`, then /usr/lib/postgresql/*/bin (Debian), then PATH.
//!
//! The store's unit tests include this file by path (`store::tests`), the integration tests as
//! `support::pg`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster; dropped, it is stopped and its files removed.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    debian.sort();
    if let Some(newest) = debian.pop() {
        return Some(newest);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// Starts a cluster, or returns None (after a notice) when PostgreSQL is not installed and
    /// CI is not "true". Any other failure panics with PostgreSQL's own output.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL's initdb/pg_ctl not found (CI=true): run scripts/setup.sh, or set PG_BIN"
            );
            eprintln!(
                "NOTICE: PostgreSQL's initdb/pg_ctl not found (scripts/setup.sh installs them): skipping this PostgreSQL test"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()));
        }
        let mut c = PgCluster {
            dir,
            bin,
            port: free_tcp_port(),
            as_postgres,
        };
        let data = c.data();
        run(c
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        // The free port may be taken by someone else before PostgreSQL binds it (tests start
        // clusters side by side): another port, twice at most, then PostgreSQL's own words.
        for _ in 0..2 {
            match c.try_pg_ctl("start") {
                Ok(()) => return Some(c),
                Err(why) => eprintln!(
                    "pg_ctl start on port {} failed, another port: {why}",
                    c.port
                ),
            }
            c.port = free_tcp_port();
        }
        c.pg_ctl("start");
        Some(c)
    }

    /// `pg_ctl ACTION` (start, restart) with the cluster's options.
    fn pg_ctl(&self, action: &str) {
        if let Err(why) = self.try_pg_ctl(action) {
            panic!("{why}");
        }
    }

    /// [`PgCluster::pg_ctl`], its failure as PostgreSQL's output and log.
    fn try_pg_ctl(&self, action: &str) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        // -w -t: wait at most 60 s for the server to accept connections.
        let mut cmd = self.command("pg_ctl");
        cmd.args(["-w", "-t", "60"]);
        if action != "start" {
            // fast: every session is cut at once, and what was committed is kept. (immediate
            // would be a crash, and with synchronous_commit=off, above, a crash loses the last
            // commits, which no client of any database survives unchanged.)
            cmd.args(["-m", "fast"]);
        }
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, action]);
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{cmd:?} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        ))
    }

    /// Stops the server (every connection is cut; committed transactions are kept) and starts
    /// it again on the same port and files.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// Stops the server as [`PgCluster::restart`] does, keeps it down for `down`, and starts it
    /// again on the same port and files: an outage, not a blip.
    pub fn stop_for(&self, down: std::time::Duration) {
        self.pg_ctl("stop");
        std::thread::sleep(down);
        self.pg_ctl("start");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (`postgres` always exists).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its URL.
    pub fn new_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs SQL in the `postgres` database (on a thread of its own: the blocking client must
    /// not run on a tokio thread).
    pub fn sql(&self, sql: &str) {
        self.sql_in(&self.url("postgres"), sql);
    }

    /// Runs SQL in the database at `url`.
    pub fn sql_in(&self, url: &str, sql: &str) {
        let (url, sql) = (url.to_string(), sql.to_string());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.batch_execute(&sql).expect(&sql);
        })
        .join()
        .unwrap();
    }

    /// PostgreSQL's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-t", "20", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
