//! A highly available PostgreSQL 15 cluster on loopback, for the high-availability tests: three
//! etcd members, three Patroni-managed PostgreSQL nodes in synchronous strict mode (a commit is
//! acknowledged only once the synchronous standby has it, and only that standby can be promoted),
//! and HAProxy in front of both PostgreSQL (its read-write port follows the primary) and the
//! ipledger nodes a test starts (its write port follows the node whose `/healthz/writer` answers
//! 200). It injects the faults an operator meets: a switchover, a `kill -9` of the primary's
//! Patroni and PostgreSQL together, one and then two etcd members stopped.
//!
//! Everything runs as child processes from one temporary directory on free ports, with each
//! process's output in `<name>.log` there (PostgreSQL's own log goes to its Patroni's log). Drop
//! kills every process it started, also after a panic, and removes the directory. Every wait is
//! bounded and panics with the tail of every log. The recipe and its background are in
//! `/work/shared/design/ha-postgres.md`.
//!
//! Needs etcd 3.4, Patroni 3, HAProxy 2.6 and PostgreSQL 15 installed (`.ci/run` installs them);
//! PostgreSQL and Patroni refuse root, so as root they run as the `postgres` user.

use postgres::{Client, NoTls};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Patroni's leader key lives this long without renewal: a crashed primary is replaced after
/// about `TTL_SECS` (the key expires up to `LOOP_WAIT_SECS` after its last renewal), and commits
/// resume a few seconds later (HAProxy's checks, a standby streaming from the new primary). Half
/// the notes' 20 s: the test below passed with it repeatedly on this loaded 2-core machine.
/// Patroni needs `LOOP_WAIT_SECS + 2 * RETRY_TIMEOUT_SECS <= TTL_SECS`.
pub const TTL_SECS: u64 = 10;
/// How often each Patroni runs its loop (renews the key, checks the others).
pub const LOOP_WAIT_SECS: u64 = 2;
/// How long Patroni retries etcd and PostgreSQL before it gives up (and a primary demotes itself).
pub const RETRY_TIMEOUT_SECS: u64 = 3;

/// Patroni's member names, in the order of `PgHa::nodes`.
const NODE_NAMES: [&str; 3] = ["pg1", "pg2", "pg3"];
/// The HAProxy `listen` sections.
const PG_RW: &str = "pg_rw";
const IPLEDGER_WRITE: &str = "ipledger_write";
const IPLEDGER_READ: &str = "ipledger_read";

/// An ipledger node HAProxy fronts: its gRPC port, which also answers `GET /healthz` and
/// `GET /healthz/writer` over plain HTTP/1.1. The test starts the node after the cluster (HAProxy
/// marks it up once it answers); in HAProxy it is server `ipl<i>`, `i` its index in the slice.
#[derive(Debug, Clone, Copy)]
pub struct IpledgerBackend {
    pub grpc_port: u16,
}

#[derive(Debug)]
struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
}

#[derive(Debug)]
struct PgNode {
    name: &'static str,
    pg_port: u16,
    rest_port: u16,
    config: PathBuf,
    data: PathBuf,
}

/// One member as Patroni's `GET /cluster` lists it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    role: String,
    state: String,
}

/// The running cluster; see the module documentation.
#[derive(Debug)]
pub struct PgHa {
    dir: PathBuf,
    password: String,
    etcd: Vec<EtcdMember>,
    nodes: Vec<PgNode>,
    pg_rw_port: u16,
    ipledger_write_port: u16,
    ipledger_read_port: u16,
    haproxy_socket: PathBuf,
    /// Every process started and not yet stopped, by log name (`etcd0`, `pg1`, `haproxy`); each
    /// leads its own process group. PostgreSQL is not here: Patroni starts it in a session of its
    /// own, so it is found through its `postmaster.pid`.
    processes: Mutex<BTreeMap<String, Child>>,
}

impl PgHa {
    /// 3 etcd members, 3 Patroni-managed PostgreSQL 15 nodes (synchronous_mode +
    /// synchronous_mode_strict, synchronous_node_count 1), HAProxy in front; returns once a leader
    /// and a sync standby are listed, the third node is streaming and HAProxy routes to the
    /// leader. All ports are free ones picked at start, all files in a temporary directory.
    pub fn start(ipledger: &[IpledgerBackend]) -> PgHa {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).expect("random password");
        let ports = free_ports(15);
        let dir = std::env::temp_dir().join(format!("ipledger-ha-{}-{}", std::process::id(), ports[0]));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let etcd = (0..3)
            .map(|i| EtcdMember {
                name: format!("e{i}"),
                client_port: ports[i],
                peer_port: ports[3 + i],
                data: dir.join(format!("etcd{i}")),
            })
            .collect();
        let nodes = NODE_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| PgNode {
                name,
                pg_port: ports[6 + i],
                rest_port: ports[9 + i],
                config: dir.join(format!("{name}.yml")),
                data: dir.join(name),
            })
            .collect();
        // From here on a panic drops `ha`, which kills whatever has been started.
        let ha = PgHa {
            password: secret.iter().map(|b| format!("{b:02x}")).collect(),
            etcd,
            nodes,
            pg_rw_port: ports[12],
            ipledger_write_port: ports[13],
            ipledger_read_port: ports[14],
            haproxy_socket: dir.join("haproxy.sock"),
            dir,
            processes: Mutex::new(BTreeMap::new()),
        };
        if running_as_root() {
            // Patroni (as `postgres`) creates the data directories and its password files here.
            let status = Command::new("chown").arg("postgres:postgres").arg(&ha.dir).status();
            assert!(matches!(status, Ok(s) if s.success()), "chown postgres {}: {status:?}", ha.dir.display());
        }

        for i in 0..3 {
            ha.spawn_etcd(i, "new");
        }
        ha.wait_for("every etcd member to answer /health", Duration::from_secs(60), || {
            ha.etcd.iter().all(|m| matches!(http_get(m.client_port, "/health"), Ok((200, _))))
        });

        for node in &ha.nodes {
            fs::write(&node.config, ha.patroni_config(node))
                .unwrap_or_else(|e| panic!("writing {}: {e}", node.config.display()));
        }
        fs::write(ha.dir.join("haproxy.cfg"), ha.haproxy_config(ipledger)).expect("writing haproxy.cfg");

        // The first node bootstraps alone (initdb), the others copy it with pg_basebackup.
        ha.spawn_patroni(&ha.nodes[0]);
        let first = &ha.nodes[0];
        ha.wait_for("pg1 to bootstrap the cluster and lead it", Duration::from_secs(180), || {
            matches!(http_get(first.rest_port, "/primary"), Ok((200, _)))
        });
        ha.spawn_patroni(&ha.nodes[1]);
        ha.spawn_patroni(&ha.nodes[2]);
        ha.spawn_haproxy();
        if let Err(why) = ha.wait_healthy(Duration::from_secs(240)) {
            panic!("the cluster did not come up: {why}");
        }
        ha
    }

    /// A libpq key=value string through HAProxy's read-write port (follows the primary): user
    /// postgres, its password, dbname postgres.
    pub fn url(&self) -> String {
        self.libpq(self.pg_rw_port)
    }

    /// A libpq key=value string straight to one PostgreSQL node (`pg1`, `pg2` or `pg3`).
    pub fn node_url(&self, name: &str) -> String {
        self.libpq(self.node(name).pg_port)
    }

    /// HAProxy's `mode tcp` frontend to the ipledger node whose `GET /healthz/writer` answers 200.
    pub fn ipledger_write_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ipledger_write_port))
    }

    /// HAProxy's `mode tcp` frontend to every ipledger node whose `GET /healthz` answers 200.
    pub fn ipledger_read_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ipledger_read_port))
    }

    /// The servers HAProxy currently routes to in one `listen` section (`pg_rw`,
    /// `ipledger_write`, `ipledger_read`), from its stats socket: `pg1`..`pg3`, `ipl0`.. for the
    /// ipledger backends. A server failing its checks counts until it is marked down.
    pub fn haproxy_servers_up(&self, listen: &str) -> Vec<String> {
        match self.haproxy_stat() {
            Ok(rows) => rows
                .into_iter()
                .filter(|(proxy, server, status)| proxy == listen && !is_aggregate(server) && status.starts_with("UP"))
                .map(|(_, server, _)| server)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The Patroni member name of the primary: the member listed as leader whose REST API
    /// answers `/primary` with 200. Waits (bounded) while there is none, as during a failover.
    pub fn leader(&self) -> String {
        let wait = Duration::from_secs(3 * TTL_SECS + 60);
        let deadline = Instant::now() + wait;
        loop {
            if let Some(name) = self.current_leader() {
                return name;
            }
            if Instant::now() > deadline {
                panic!("no PostgreSQL leader within {wait:?}: {:?}\n{}", self.members(), self.log_tail());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The member Patroni lists as synchronous standby now, if any.
    pub fn sync_standby(&self) -> Option<String> {
        self.members().ok()?.into_iter().find(|m| m.role == "sync_standby").map(|m| m.name)
    }

    /// `patronictl switchover --force` from the leader to the synchronous standby; returns once
    /// another member is leader and answers `/primary`, with the time from the command's start
    /// (patronictl's own start-up included, a fraction of a second).
    pub fn switchover(&self) -> Duration {
        let old = self.leader();
        let candidate = self.wait_value("a synchronous standby to switch over to", Duration::from_secs(60), || {
            self.sync_standby().filter(|s| *s != old)
        });
        let started = Instant::now();
        let output = Command::new(crate::tools::require("patronictl", "patroni"))
            .arg("-c")
            .arg(&self.node(&old).config)
            .args(["switchover", "--leader", &old, "--candidate", &candidate, "--force"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running patronictl: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("Successfully switched over"),
            "patronictl switchover {old} -> {candidate}: {}\n{stdout}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
        self.wait_value("a new leader after the switchover", Duration::from_secs(60), || {
            self.current_leader().filter(|l| *l != old)
        });
        started.elapsed()
    }

    /// `kill -9` of the leader's Patroni and its postmaster (with the postmaster's children)
    /// together, as a crashed host: killing only the postmaster would make Patroni restart it in
    /// place. Returns the member name; `restart_member` brings it back.
    ///
    /// In strict synchronous mode only the synchronous standby may be promoted: the caller waits
    /// for one (`wait_healthy`) before the kill, or no member will take over, by design.
    pub fn kill_leader(&self) -> String {
        let name = self.leader();
        assert!(
            self.sync_standby().is_some(),
            "killing leader {name} with no synchronous standby listed: no member could be promoted\n{}",
            self.log_tail()
        );
        let node = self.node(&name);
        let mut processes = self.processes();
        let mut patroni = processes.remove(node.name).unwrap_or_else(|| panic!("{name}'s Patroni is not running"));
        let postmaster = postmaster_pid(node);
        // Patroni first in one kill(1): it has no time to see its postmaster die and restart it.
        let mut targets = vec![format!("-{}", patroni.id())];
        if let Some(pid) = postmaster {
            targets.push(pid.to_string());
            targets.extend(children_of(pid).iter().map(u32::to_string));
        }
        signal("KILL", &targets);
        drop(processes);
        if !wait_exit(&mut patroni, Duration::from_secs(10)) {
            panic!("{name}'s Patroni survived kill -9\n{}", self.log_tail());
        }
        if let Some(pid) = postmaster {
            self.wait_for(&format!("{name}'s postmaster {pid} to die"), Duration::from_secs(10), || !pid_alive(pid));
        }
        name
    }

    /// Starts that member's Patroni again: it rejoins as a replica of the current leader,
    /// rewinding its data with pg_rewind if it diverged.
    pub fn restart_member(&self, name: &str) {
        let node = self.node(name);
        self.spawn_patroni(node);
    }

    /// Stops etcd member `i` (0..3) with SIGTERM (SIGKILL if it takes longer than 10 s).
    pub fn stop_etcd(&self, i: usize) {
        assert!(i < 3, "etcd member {i}: there are 3");
        self.stop(&format!("etcd{i}"));
    }

    /// Starts etcd member `i` (0..3) again on its data directory, rejoining the cluster.
    pub fn start_etcd(&self, i: usize) {
        assert!(i < 3, "etcd member {i}: there are 3");
        self.spawn_etcd(i, "existing");
    }

    /// Waits until Patroni lists 3 members with one running leader (answering `/primary`), one
    /// synchronous standby and the third running, the leader's `pg_stat_replication` shows both
    /// others streaming (the synchronous one as `sync`), and HAProxy's read-write port routes to
    /// the leader alone. The error says what was missing last, with `log_tail()`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.health() {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() > deadline => {
                    return Err(format!("not healthy within {timeout:?}: {why}\n{}", self.log_tail()));
                }
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// The last lines of every process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut names: Vec<String> = (0..3).map(|i| format!("etcd{i}")).collect();
        names.extend(NODE_NAMES.iter().map(|n| n.to_string()));
        names.push("haproxy".into());
        let mut out = String::new();
        for name in names {
            let text = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("==== {name}.log (last 25 of {} lines)\n", lines.len()));
            for line in &lines[lines.len().saturating_sub(25)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn libpq(&self, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user=postgres password={} dbname=postgres connect_timeout=5", self.password)
    }

    fn node(&self, name: &str) -> &PgNode {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no PostgreSQL node named {name:?}"))
    }

    fn processes(&self) -> MutexGuard<'_, BTreeMap<String, Child>> {
        // A panic elsewhere must not keep Drop from killing everything.
        self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `command` as the leader of a new process group (so its children die with it), its
    /// output appended to `<key>.log`.
    fn spawn(&self, key: &str, mut command: Command) {
        let mut processes = self.processes();
        if let Some(old) = processes.get_mut(key) {
            assert!(!matches!(old.try_wait(), Ok(None)), "{key} is already running");
        }
        let path = self.dir.join(format!("{key}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        command.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {key} ({command:?}): {e}"));
        processes.insert(key.to_owned(), child);
    }

    /// SIGTERM to a process group, SIGKILL after 10 s, then reaped.
    fn stop(&self, key: &str) {
        let mut child = self.processes().remove(key).unwrap_or_else(|| panic!("{key} is not running"));
        signal("TERM", &[format!("-{}", child.id())]);
        if !wait_exit(&mut child, Duration::from_secs(10)) {
            signal("KILL", &[format!("-{}", child.id())]);
            if !wait_exit(&mut child, Duration::from_secs(10)) {
                panic!("{key} survived SIGKILL\n{}", self.log_tail());
            }
        }
    }

    fn spawn_etcd(&self, i: usize, state: &str) {
        let m = &self.etcd[i];
        let cluster = self
            .etcd
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new(crate::tools::require("etcd", "etcd-server"));
        command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "ipledger-ha"])
            // A slower heartbeat than etcd's 100 ms suits a loaded 2-core machine.
            .args(["--heartbeat-interval", "250", "--election-timeout", "2500"]);
        self.spawn(&format!("etcd{i}"), command);
    }

    fn spawn_patroni(&self, node: &PgNode) {
        let mut command = if running_as_root() {
            let mut c = Command::new(crate::tools::require("setpriv", "util-linux"));
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(crate::tools::require("patroni", "patroni"))
                .arg(&node.config);
            c
        } else {
            let mut c = Command::new(crate::tools::require("patroni", "patroni"));
            c.arg(&node.config);
            c
        };
        // In the cluster's own directory, which `postgres` owns: Patroni's worker processes start
        // by entering the parent's working directory, and a checkout under /root (0700, as on a
        // fresh Debian machine) is closed to `postgres`.
        command.current_dir(&self.dir);
        self.spawn(node.name, command);
    }

    fn spawn_haproxy(&self) {
        // Debian puts it in /usr/sbin, which is not on a user's PATH: `require` looks there too.
        let mut command = Command::new(crate::tools::require("haproxy", "haproxy"));
        command.arg("-db").arg("-f").arg(self.dir.join("haproxy.cfg"));
        self.spawn("haproxy", command);
        self.wait_for("HAProxy's stats socket", Duration::from_secs(30), || self.haproxy_stat().is_ok());
    }

    fn patroni_config(&self, node: &PgNode) -> String {
        let hosts = self.etcd.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(", ");
        let dir = self.dir.display();
        let password = &self.password;
        let pg_bin = crate::tools::pg_bin();
        let pg_bin = pg_bin.display();
        format!(
            r#"scope: ipledger-ha
name: {name}
log: {{level: INFO}}
restapi: {{listen: "127.0.0.1:{rest}", connect_address: "127.0.0.1:{rest}"}}
etcd3: {{hosts: [{hosts}]}}
watchdog: {{mode: "off"}}
bootstrap:
  dcs:
    ttl: {TTL_SECS}
    loop_wait: {LOOP_WAIT_SECS}
    retry_timeout: {RETRY_TIMEOUT_SECS}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      # A standby whose first try to stream from a newly promoted primary fails (its slot is not
      # there yet) retries after 1 s instead of 5: in strict mode the new primary's commits wait
      # for it.
      parameters: {{synchronous_commit: "on", wal_log_hints: "on", shared_buffers: 64MB, wal_retrieve_retry_interval: 1s}}
  initdb: [{{encoding: UTF8}}, {{locale: C.UTF-8}}, data-checksums]
postgresql:
  listen: "127.0.0.1:{pg}"
  connect_address: "127.0.0.1:{pg}"
  data_dir: "{data}"
  bin_dir: "{pg_bin}"
  pgpass: "{dir}/pgpass-{name}"
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
  authentication:
    superuser: {{username: postgres, password: "{password}"}}
    replication: {{username: replicator, password: "{password}"}}
    rewind: {{username: rewinder, password: "{password}"}}
  parameters: {{unix_socket_directories: "{dir}"}}
"#,
            name = node.name,
            rest = node.rest_port,
            pg = node.pg_port,
            data = node.data.display(),
        )
    }

    fn haproxy_config(&self, ipledger: &[IpledgerBackend]) -> String {
        let mut cfg = format!(
            "global
    # In the foreground (-db) server state changes go to stderr, that is haproxy.log.
    stats socket {socket} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    # gRPC streams and idle pooled PostgreSQL connections live long.
    timeout client 1h
    timeout server 1h
    timeout check 2s

listen {PG_RW}
    bind 127.0.0.1:{rw}
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
",
            socket = self.haproxy_socket.display(),
            rw = self.pg_rw_port,
        );
        for node in &self.nodes {
            cfg.push_str(&format!(
                "    server {} 127.0.0.1:{} check port {}\n",
                node.name, node.pg_port, node.rest_port
            ));
        }
        for (listen, port, path) in [
            (IPLEDGER_WRITE, self.ipledger_write_port, "/healthz/writer"),
            (IPLEDGER_READ, self.ipledger_read_port, "/healthz"),
        ] {
            cfg.push_str(&format!(
                "
listen {listen}
    bind 127.0.0.1:{port}
    option httpchk
    http-check send meth GET uri {path} ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
"
            ));
            for (i, backend) in ipledger.iter().enumerate() {
                cfg.push_str(&format!("    server ipl{i} 127.0.0.1:{} check\n", backend.grpc_port));
            }
        }
        cfg
    }

    /// HAProxy's `show stat` as (proxy, server, status) rows.
    fn haproxy_stat(&self) -> Result<Vec<(String, String, String)>, String> {
        let mut stream = UnixStream::connect(&self.haproxy_socket).map_err(|e| format!("stats socket: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        stream.write_all(b"show stat\n").map_err(|e| e.to_string())?;
        let mut text = String::new();
        stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let mut lines = text.lines();
        let header: Vec<&str> =
            lines.next().and_then(|h| h.strip_prefix("# ")).ok_or("no header in show stat")?.split(',').collect();
        let status = header.iter().position(|c| *c == "status").ok_or("no status column in show stat")?;
        Ok(lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                let cell = |i: usize| cells.get(i).copied().unwrap_or_default().to_owned();
                (cell(0), cell(1), cell(status))
            })
            .collect())
    }

    /// The members from the first Patroni whose `GET /cluster` answers.
    fn members(&self) -> Result<Vec<Member>, String> {
        let mut errors = Vec::new();
        for node in &self.nodes {
            match http_get(node.rest_port, "/cluster") {
                Ok((200, body)) => return parse_members(&body),
                Ok((status, body)) => errors.push(format!("{}: {status} {body}", node.name)),
                Err(e) => errors.push(format!("{}: {e}", node.name)),
            }
        }
        Err(format!("no Patroni answered /cluster: {}", errors.join("; ")))
    }

    fn current_leader(&self) -> Option<String> {
        let members = self.members().ok()?;
        let leader = members.into_iter().find(|m| is_leader(&m.role) && m.state == "running")?;
        matches!(http_get(self.node(&leader.name).rest_port, "/primary"), Ok((200, _))).then_some(leader.name)
    }

    fn health(&self) -> Result<(), String> {
        let members = self.members()?;
        let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
        if names != NODE_NAMES.iter().copied().collect() {
            return Err(format!("members {members:?}"));
        }
        let leaders: Vec<&Member> = members.iter().filter(|m| is_leader(&m.role)).collect();
        let syncs: Vec<&Member> = members.iter().filter(|m| m.role == "sync_standby").collect();
        let (&[leader], &[sync]) = (leaders.as_slice(), syncs.as_slice()) else {
            return Err(format!("not one leader and one sync standby: {members:?}"));
        };
        // Patroni 3.0 says `running` for a replica; later versions say `streaming`.
        if let Some(m) = members.iter().find(|m| !matches!(m.state.as_str(), "running" | "streaming")) {
            return Err(format!("{} is {}: {members:?}", m.name, m.state));
        }
        match http_get(self.node(&leader.name).rest_port, "/primary") {
            Ok((200, _)) => {}
            other => return Err(format!("leader {} does not answer /primary: {other:?}", leader.name)),
        }
        let mut client = Client::connect(&self.node_url(&leader.name), NoTls)
            .map_err(|e| format!("connecting to leader {}: {e}", leader.name))?;
        let rows = client
            .query("SELECT application_name, state, sync_state FROM pg_stat_replication", &[])
            .map_err(|e| format!("pg_stat_replication on {}: {e}", leader.name))?;
        let replication: Vec<(String, String, String)> =
            rows.iter().map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default(), r.get(2))).collect();
        let streaming = replication.iter().filter(|(_, state, _)| state == "streaming").count();
        let sync_streams = replication
            .iter()
            .any(|(name, state, sync_state)| *name == sync.name && state == "streaming" && sync_state == "sync");
        if streaming != 2 || !sync_streams {
            return Err(format!("leader {}'s pg_stat_replication: {replication:?}", leader.name));
        }
        let routed = self.haproxy_servers_up(PG_RW);
        if routed != [leader.name.clone()] {
            return Err(format!("HAProxy routes {PG_RW} to {routed:?}, the leader is {}", leader.name));
        }
        Ok(())
    }

    /// Polls `done` until true, panicking with the logs after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        self.wait_value(what, timeout, || done().then_some(()));
    }

    fn wait_value<T>(&self, what: &str, timeout: Duration, mut value: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = value() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.log_tail());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PgHa {
    fn drop(&mut self) {
        let mut processes = std::mem::take(&mut *self.processes());
        // Patroni first, so none restarts its PostgreSQL while that is being killed.
        let mut targets: Vec<String> =
            NODE_NAMES.iter().filter_map(|name| processes.get(*name)).map(|child| format!("-{}", child.id())).collect();
        let postmasters: Vec<u32> = self.nodes.iter().filter_map(postmaster_pid).collect();
        for &pid in &postmasters {
            targets.push(pid.to_string());
            targets.extend(children_of(pid).iter().map(u32::to_string));
        }
        targets.extend(
            processes
                .iter()
                .filter(|(key, _)| !NODE_NAMES.contains(&key.as_str()))
                .map(|(_, c)| format!("-{}", c.id())),
        );
        if !targets.is_empty() {
            signal("KILL", &targets);
        }
        for child in processes.values_mut() {
            wait_exit(child, Duration::from_secs(10));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while postmasters.iter().any(|&pid| pid_alive(pid)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        // A dying process may still be writing a file for a moment.
        for _ in 0..20 {
            if fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn is_leader(role: &str) -> bool {
    // Patroni 3 says `leader`; older versions said `master`.
    matches!(role, "leader" | "master")
}

fn is_aggregate(server: &str) -> bool {
    matches!(server, "FRONTEND" | "BACKEND")
}

fn parse_members(body: &str) -> Result<Vec<Member>, String> {
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("/cluster: {e}: {body}"))?;
    let members = json["members"].as_array().ok_or_else(|| format!("/cluster without members: {body}"))?;
    Ok(members
        .iter()
        .map(|m| Member {
            name: m["name"].as_str().unwrap_or_default().to_owned(),
            role: m["role"].as_str().unwrap_or_default().to_owned(),
            state: m["state"].as_str().unwrap_or_default().to_owned(),
        })
        .collect())
}

/// `n` distinct free loopback ports: all bound at once so none is picked twice.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `GET path` over HTTP/1.0 to a loopback port: (status, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}{path}: incomplete answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The postmaster's pid from its `postmaster.pid`, if a process with that pid runs on this
/// node's data directory (a stale file's pid may belong to anyone by now).
fn postmaster_pid(node: &PgNode) -> Option<u32> {
    let text = fs::read_to_string(node.data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let data = node.data.to_string_lossy();
    String::from_utf8_lossy(&cmdline).contains(data.as_ref()).then_some(pid)
}

/// The processes whose parent is `pid`: a postmaster's children each call setsid(), so they are
/// not in its process group.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat")).ok().and_then(|stat| {
                // Fields after the command name, which is in parentheses and may hold spaces.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            }) == Some(pid)
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait removes it.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// kill(1) with one signal to several targets (`-pgid` for a process group) in one call.
fn signal(signal: &str, targets: &[String]) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .args(targets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() > deadline => return false,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What the writer thread saw: each id whose COMMIT returned Ok, when.
#[derive(Debug, Default)]
struct Writes {
    committed: Vec<(i64, Instant)>,
    /// The highest id ever sent: rows above it cannot exist.
    attempted: i64,
    errors: usize,
    last_error: Option<String>,
}

fn insert_one(client: &mut Client, id: i64) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("INSERT INTO ha_rows (id) VALUES ($1)", &[&id])?;
    tx.commit()
}

/// Inserts rows one per transaction through `url` until `stop`, reconnecting after any error. An
/// id whose commit failed is never reused: its row may or may not exist.
fn writer(url: String, writes: Arc<Mutex<Writes>>, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut next = 1i64;
    while !stop.load(Ordering::Relaxed) {
        let connected = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(&url, NoTls) {
                Ok(c) => client.insert(c),
                Err(e) => {
                    let mut w = writes.lock().unwrap();
                    w.errors += 1;
                    w.last_error = Some(format!("connect: {e}"));
                    drop(w);
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let id = next;
        next += 1;
        writes.lock().unwrap().attempted = id;
        match insert_one(connected, id) {
            Ok(()) => writes.lock().unwrap().committed.push((id, Instant::now())),
            Err(e) => {
                let mut w = writes.lock().unwrap();
                w.errors += 1;
                w.last_error = Some(format!("insert {id}: {e}"));
                drop(w);
                client = None;
                thread::sleep(Duration::from_millis(50));
            }
        }
        // About a hundred commits a second: fine-grained outages without loading the 2 cores.
        thread::sleep(Duration::from_millis(5));
    }
}

/// The longest time without a successful commit from the last commit before `from` to the first
/// one after `to`.
fn longest_gap(writes: &Writes, from: Instant, to: Instant) -> Duration {
    let times: Vec<Instant> = writes.committed.iter().map(|&(_, t)| t).collect();
    let start = times.iter().rev().find(|&&t| t <= from).copied().unwrap_or(from);
    let end = times.iter().find(|&&t| t > to).copied().unwrap_or(to);
    let mut points = vec![start];
    points.extend(times.iter().copied().filter(|&t| t > start && t < end));
    points.push(end);
    points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Every id committed so far.
fn committed_ids(writes: &Mutex<Writes>) -> BTreeSet<i64> {
    let w = writes.lock().unwrap();
    w.committed.iter().map(|&(id, _)| id).collect()
}

/// The ids in `node`'s `ha_rows` that are missing from `expected` (empty when the node has them
/// all); panics on a row above the highest id attempted, which no writer sent.
fn missing_on(ha: &PgHa, node: &str, expected: &BTreeSet<i64>, writes: &Mutex<Writes>) -> Result<Vec<i64>, String> {
    let mut client = Client::connect(&ha.node_url(node), NoTls).map_err(|e| format!("connecting to {node}: {e}"))?;
    let rows = client.query("SELECT id FROM ha_rows", &[]).map_err(|e| format!("reading {node}: {e}"))?;
    let present: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Read after the rows: the writer raises it before it sends an id, so it covers every row read.
    let attempted = writes.lock().unwrap().attempted;
    if let Some(&stray) = present.iter().find(|&&id| id > attempted) {
        panic!("{node} has row {stray}, above the highest id attempted ({attempted})");
    }
    Ok(expected.difference(&present).copied().collect())
}

/// Every committed id is on the current leader, right away.
fn assert_on_leader(ha: &PgHa, writes: &Mutex<Writes>, after: &str) {
    let expected = committed_ids(writes);
    let leader = ha.leader();
    match missing_on(ha, &leader, &expected, writes) {
        Ok(missing) if missing.is_empty() => {}
        other => panic!(
            "after {after}: leader {leader} lacks committed rows: {other:?} (of {})\n{}",
            expected.len(),
            ha.log_tail()
        ),
    }
}

/// Every committed id is on every node (a standby shows it once it has replayed it: waits).
fn assert_on_every_node(ha: &PgHa, writes: &Mutex<Writes>, after: &str) {
    let expected = committed_ids(writes);
    for node in NODE_NAMES {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = missing_on(ha, node, &expected, writes);
            if matches!(&result, Ok(missing) if missing.is_empty()) {
                break;
            }
            if Instant::now() > deadline {
                panic!("after {after}: {node} lacks committed rows: {result:?}\n{}", ha.log_tail());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits until the writer has committed a row after `since`; returns when.
fn wait_for_commit(ha: &PgHa, writes: &Mutex<Writes>, since: Instant, timeout: Duration, what: &str) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let w = writes.lock().unwrap();
        if let Some(&(_, t)) = w.committed.last().filter(|&&(_, t)| t > since) {
            return t;
        }
        if Instant::now() > deadline {
            panic!(
                "no commit within {timeout:?} {what} ({} errors, last {:?})\n{}",
                w.errors,
                w.last_error,
                ha.log_tail()
            );
        }
        drop(w);
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs etcd, Patroni and HAProxy: .ci/run runs it"]
fn the_postgres_cluster_keeps_every_committed_row_over_every_fault() {
    let began = Instant::now();
    let ha = PgHa::start(&[]);
    println!("cluster up in {:?}: leader {}, sync standby {:?}", began.elapsed(), ha.leader(), ha.sync_standby());
    // With no ipledger nodes HAProxy still listens on their frontends, routing nowhere.
    assert!(
        TcpStream::connect(ha.ipledger_write_addr()).is_ok() && TcpStream::connect(ha.ipledger_read_addr()).is_ok()
    );
    assert!(ha.haproxy_servers_up(IPLEDGER_WRITE).is_empty() && ha.haproxy_servers_up(IPLEDGER_READ).is_empty());

    let mut setup = Client::connect(&ha.url(), NoTls).unwrap();
    setup.batch_execute("CREATE TABLE ha_rows (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())").unwrap();
    drop(setup);

    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (url, writes, stop) = (ha.url(), writes.clone(), stop.clone());
        thread::spawn(move || writer(url, writes, stop))
    };
    wait_for_commit(&ha, &writes, began, Duration::from_secs(30), "before any fault");
    thread::sleep(Duration::from_secs(2));
    let mut report = Vec::new();

    // 1. A planned switchover to the synchronous standby.
    let from = Instant::now();
    let took = ha.switchover();
    let to = wait_for_commit(&ha, &writes, Instant::now(), Duration::from_secs(60), "after the switchover");
    assert_on_leader(&ha, &writes, "the switchover");
    let outage = longest_gap(&writes.lock().unwrap(), from, to);
    report.push(format!("switchover (patronictl took {took:.2?}): write outage {outage:.2?}"));
    println!("{}", report.last().unwrap());
    ha.wait_healthy(Duration::from_secs(120)).unwrap_or_else(|e| panic!("after the switchover: {e}"));
    assert_on_every_node(&ha, &writes, "the switchover");

    // 2. The primary's host crashes: Patroni and PostgreSQL killed together; a standby takes over
    // once the leader key expires. Then the old primary rejoins (pg_rewind).
    let from = Instant::now();
    let killed = ha.kill_leader();
    let to = wait_for_commit(&ha, &writes, Instant::now(), Duration::from_secs(120), "after kill -9 of the leader");
    assert_on_leader(&ha, &writes, "kill -9 of the leader");
    let outage = longest_gap(&writes.lock().unwrap(), from, to);
    report.push(format!(
        "kill -9 of leader {killed} (ttl {TTL_SECS} s, loop_wait {LOOP_WAIT_SECS} s): write outage {outage:.2?}, new leader {}",
        ha.leader()
    ));
    println!("{}", report.last().unwrap());
    let rejoin = Instant::now();
    ha.restart_member(&killed);
    ha.wait_healthy(Duration::from_secs(180)).unwrap_or_else(|e| panic!("after {killed} restarted: {e}"));
    println!("{killed} rejoined, cluster healthy in {:.2?}", rejoin.elapsed());
    assert_on_every_node(&ha, &writes, "the killed leader rejoined");

    // 3. One etcd member of three stopped: etcd keeps its quorum, the leader keeps its key and
    // writes go on, for longer than a ttl.
    let leader = ha.leader();
    let from = Instant::now();
    ha.stop_etcd(0);
    thread::sleep(Duration::from_secs(TTL_SECS + 2 * LOOP_WAIT_SECS));
    let to = wait_for_commit(&ha, &writes, Instant::now(), Duration::from_secs(30), "with one etcd member stopped");
    let committed_meanwhile = writes.lock().unwrap().committed.iter().filter(|&&(_, t)| t > from).count();
    assert!(committed_meanwhile > 0, "no commit with one etcd member stopped\n{}", ha.log_tail());
    assert_eq!(ha.leader(), leader, "the leader changed with one etcd member stopped\n{}", ha.log_tail());
    assert_on_leader(&ha, &writes, "one etcd member stopped");
    let outage = longest_gap(&writes.lock().unwrap(), from, to);
    report
        .push(format!("one etcd member stopped: write outage {outage:.2?} ({committed_meanwhile} commits meanwhile)"));
    println!("{}", report.last().unwrap());

    // 4. A second etcd member stopped: no quorum, so the leader cannot renew its key and demotes
    // itself: writes stop (nothing may be lost). Then both come back and the cluster heals.
    let from = Instant::now();
    ha.stop_etcd(1);
    let quiet = Duration::from_secs(3);
    let deadline = from + Duration::from_secs(3 * TTL_SECS + 30);
    let last_commit = loop {
        let last = writes.lock().unwrap().committed.last().map(|&(_, t)| t);
        if let Some(t) = last.filter(|t| t.elapsed() >= quiet) {
            break t;
        }
        assert!(Instant::now() < deadline, "writes went on with two of three etcd members stopped\n{}", ha.log_tail());
        thread::sleep(Duration::from_millis(200));
    };
    let writes_stopped_after = last_commit.saturating_duration_since(from);
    assert_on_some_node(&ha, &writes);
    ha.start_etcd(0);
    ha.start_etcd(1);
    ha.wait_healthy(Duration::from_secs(180)).unwrap_or_else(|e| panic!("after etcd came back: {e}"));
    let to = wait_for_commit(&ha, &writes, Instant::now(), Duration::from_secs(60), "after etcd came back");
    let outage = longest_gap(&writes.lock().unwrap(), from, to);
    report.push(format!(
        "two etcd members stopped, then both started: last commit {writes_stopped_after:.2?} after the second stop, write outage {outage:.2?} (includes the time both were down)"
    ));
    println!("{}", report.last().unwrap());
    assert_on_every_node(&ha, &writes, "etcd came back");

    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the writer thread is stuck\n{}", ha.log_tail());
        thread::sleep(Duration::from_millis(50));
    }
    handle.join().unwrap();
    let w = writes.lock().unwrap();
    println!(
        "{} rows committed, {} ids attempted, {} errors; every committed row on every node; {:.1?} in all",
        w.committed.len(),
        w.attempted,
        w.errors,
        began.elapsed()
    );
    for line in &report {
        println!("  {line}");
    }
}

/// With etcd's quorum gone there may be no leader to ask, and the demoted primary may be
/// restarting: some node, read directly, must have every committed row (every node is checked once
/// etcd is back). Waits for one to answer.
fn assert_on_some_node(ha: &PgHa, writes: &Mutex<Writes>) {
    let expected = committed_ids(writes);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let results: Vec<(&str, Result<Vec<i64>, String>)> =
            NODE_NAMES.iter().map(|&node| (node, missing_on(ha, node, &expected, writes))).collect();
        if results.iter().any(|(_, r)| matches!(r, Ok(missing) if missing.is_empty())) {
            return;
        }
        if Instant::now() > deadline {
            panic!("no node has every committed row with etcd's quorum gone: {results:?}\n{}", ha.log_tail());
        }
        thread::sleep(Duration::from_millis(500));
    }
}
