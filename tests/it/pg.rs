//! A PostgreSQL database of its own for a test that needs one whatever journal the other tests run
//! on: a new database in the cluster of `tests/with-postgres.sh` when `IPLEDGER_TEST_JOURNAL` is
//! set, else a throwaway cluster on loopback started here (initdb and pg_ctl as the `postgres` user
//! when the tests run as root, since both refuse root), stopped and removed when dropped.

use crate::tools;
use std::path::PathBuf;
use std::process::Command;

pub struct Pg {
    /// A libpq connection string of the test's database.
    pub url: String,
    /// The throwaway cluster's directory (`None`: the shared cluster of `with-postgres.sh`).
    cluster: Option<PathBuf>,
}

fn as_postgres(program: &str) -> Command {
    let program = tools::pg_bin().join(program);
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut c = Command::new(tools::require("runuser", "util-linux"));
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Pg {
    pub fn start() -> Pg {
        match std::env::var("IPLEDGER_TEST_JOURNAL") {
            Ok(base) => {
                let name = format!("t_own_{}_{}", std::process::id(), crate::helpers::unique());
                let admin = format!("{base} dbname=postgres");
                let create = format!("CREATE DATABASE {name}");
                // The blocking client may not run on a test's runtime.
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("the test PostgreSQL");
                    client.batch_execute(&create).unwrap();
                })
                .join()
                .unwrap();
                Pg { url: format!("{base} dbname={name}"), cluster: None }
            }
            Err(_) => Pg::throwaway(),
        }
    }

    fn throwaway() -> Pg {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("ipledger-it-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        let data = dir.join("data");
        let out = as_postgres("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.display());
        let log = dir.join("log");
        let out = as_postgres("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        Pg { url: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), cluster: Some(dir) }
    }

    /// Runs `f` on a new connection, off the test's runtime (the blocking client may not run on it).
    pub fn sql<T: Send + 'static>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static) -> T {
        let url = self.url.clone();
        std::thread::spawn(move || f(&mut postgres::Client::connect(&url, postgres::NoTls).unwrap())).join().unwrap()
    }

    /// The rows of the journal table, 0 when it does not exist.
    pub fn journal_rows(&self) -> i64 {
        self.sql(|client| {
            let exists: bool =
                client.query_one("SELECT to_regclass('ipledger_journal') IS NOT NULL", &[]).unwrap().get(0);
            if !exists {
                return 0;
            }
            client.query_one("SELECT count(*) FROM ipledger_journal", &[]).unwrap().get(0)
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(dir) = self.cluster.take() {
            let data = dir.join("data");
            let _ = as_postgres("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
