//! The programs some tests drive besides the server (PostgreSQL's, Chromium, Patroni, etcd,
//! HAProxy): found where a Debian machine has them, and a test whose program is missing fails
//! with a message naming it and the command that installs it, never a panic from spawning a
//! missing binary. `bash tests/setup-and-test.sh` installs all of them and runs every test.
//!
//! Shared by the library's unit tests (`#[path]` from `ledger::journal::postgres`) and the
//! integration tests (`tests/it`), so both look for PostgreSQL the same way.

// Each includer uses its own part (the unit tests only PostgreSQL's).
#![allow(dead_code)]

use std::path::PathBuf;

/// The README's test command, which installs what is missing.
pub const SETUP: &str = "bash tests/setup-and-test.sh";

/// PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`): `PG_BIN` when set, else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout, where
/// several versions may sit side by side). CI runs PostgreSQL 15, Debian 12's.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "PG_BIN={} holds no initdb: point it at PostgreSQL's bin directory, or unset it and run `{SETUP}`",
            dir.display()
        );
        return dir;
    }
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| dir.join("initdb").is_file()) {
        return dir;
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map(|version| PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
    match newest.filter(|dir| dir.join("initdb").is_file()) {
        Some(dir) => dir,
        None => panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: `{SETUP}` installs them \
             (on Debian: apt-get install postgresql), or set PG_BIN to the directory that holds them"
        ),
    }
}

/// The path of `program` (a name looked up on PATH, or a path), or a failure naming the Debian
/// package that has it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = if program.contains('/') {
        Some(PathBuf::from(program)).filter(|path| path.is_file())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    };
    match found {
        Some(path) => path,
        None => panic!(
            "`{program}` is not installed and this test needs it: `{SETUP}` installs it \
             (on Debian: apt-get install {package})"
        ),
    }
}
