//! The deploy files stay honest without a Docker engine: they parse, and every flag, environment
//! variable, port and path they use exists in the binary and matches its defaults, and metrics off
//! loopback are served over TLS with a bearer token that the Prometheus example sends.
//!
//! The high-availability files (deploy/ha) agree with each other and with the binary: Patroni is
//! strictly synchronous with a consistent ttl, HAProxy checks the endpoints a node really serves
//! on the port it listens on, the node settings and the Kubernetes manifests use only settings the
//! binary has. `patroni --validate-config` and `haproxy -c` check them too where installed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipledger")).args([subcommand, "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `ENV_NAME -> default` for every option of `ipledger <subcommand> --help` (empty: no default).
fn options(subcommand: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let text = help(subcommand);
    let mut env = BTreeMap::new();
    let mut flags = Vec::new();
    let joined = text.replace('\n', " ");
    for part in joined.split("--").skip(1) {
        let flag: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if !flag.is_empty() {
            flags.push(format!("--{flag}"));
        }
        if let Some(i) = part.find("[env: ") {
            // A secret's value is never shown: `[env: NAME]`, not `[env: NAME=value]`.
            let name: String = part[i + 6..].chars().take_while(|c| *c != '=' && *c != ']').collect();
            let default = part
                .find("[default: ")
                .map(|d| part[d + 10..].chars().take_while(|c| *c != ']').collect())
                .unwrap_or_default();
            env.insert(name, default);
        }
    }
    (env, flags)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name)).unwrap()
}

fn env_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
        .filter(|w| w.starts_with("IPLEDGER_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_example_configuration_names_every_setting_with_its_default() {
    let (serve, _) = options("serve");
    let text = read("ipledger.env");
    let mut seen = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (commented, assignment) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let Some((key, value)) = assignment.split_once('=') else {
            assert!(commented, "not KEY=VALUE: {line}");
            continue;
        };
        if !key.starts_with("IPLEDGER_") {
            assert!(commented, "unknown setting {key}");
            continue;
        }
        let default = serve.get(key).unwrap_or_else(|| panic!("{key} is not a setting of `ipledger serve`"));
        if !commented {
            assert_eq!(value, default, "{key} differs from the binary's default");
        }
        seen.push(key.to_owned());
    }
    seen.sort();
    assert_eq!(seen, serve.keys().cloned().collect::<Vec<_>>(), "every setting is in the example");
}

#[test]
fn the_dockerfile_parses_and_uses_only_what_the_binary_has() {
    let (serve, _) = options("serve");
    let (health_env, health_flags) = options("health");
    let text = read("Dockerfile");
    let instructions = [
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "ENV",
        "VOLUME",
        "EXPOSE",
        "USER",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
    ];
    let joined = text.replace("\\\n", " ");
    let mut by_instruction: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let word = line.split_whitespace().next().unwrap();
        let known = instructions.iter().find(|i| **i == word).unwrap_or_else(|| panic!("unknown instruction: {line}"));
        by_instruction.entry(known).or_default().push(line[word.len()..].trim().to_owned());
    }
    for name in env_names(&text) {
        assert!(serve.contains_key(&name) || health_env.contains_key(&name), "{name} is not a setting");
    }
    let env: BTreeMap<String, String> = by_instruction["ENV"]
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let port = env["IPLEDGER_LISTEN"].rsplit(':').next().unwrap().to_owned();
    let metrics_port = env["IPLEDGER_METRICS_LISTEN"].rsplit(':').next().unwrap();
    assert_eq!(by_instruction["EXPOSE"], [format!("{port} {metrics_port}")]);
    metrics_are_protected(&env);
    assert_eq!(serve["IPLEDGER_LISTEN"].rsplit(':').next().unwrap(), port, "the binary's default port");
    let volume = &by_instruction["VOLUME"][0];
    assert!(env["IPLEDGER_DATA_DIR"].starts_with(volume.as_str()), "the data directory is on the volume");
    let health = &by_instruction["HEALTHCHECK"][0];
    assert!(health.contains(&format!("localhost:{port}")), "{health}");
    for flag in health.split(['"', ' ']).filter(|w| {
        w.starts_with("--")
            && !w.starts_with("--interval")
            && !w.starts_with("--timeout")
            && !w.starts_with("--start-period")
    }) {
        assert!(health_flags.iter().any(|f| f == flag), "`ipledger health` has no {flag}");
    }
    assert!(by_instruction["COPY"].iter().any(|c| c.ends_with("/usr/local/bin/ipledger")));
    assert_eq!(by_instruction["ENTRYPOINT"], [r#"["ipledger"]"#]);
    assert_eq!(by_instruction["CMD"], [r#"["serve"]"#]);
    assert_eq!(by_instruction["STOPSIGNAL"], ["SIGTERM"]);
    assert!(by_instruction["USER"].iter().all(|u| u != "root" && u != "0"), "runs as non-root");
}

#[test]
fn the_systemd_unit_parses_and_uses_only_what_the_binary_has() {
    let (serve, _) = options("serve");
    let text = read("ipledger.service");
    let mut section = String::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with('[') {
            assert!(line.ends_with(']'), "{line}");
            section = line.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        keys.entry(format!("{section}{key}")).or_default().push(value.to_owned());
    }
    assert_eq!(keys["[Service]ExecStart"], ["/usr/local/bin/ipledger serve"]);
    let env: BTreeMap<String, String> = keys["[Service]Environment"]
        .iter()
        .map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
        .collect();
    metrics_are_protected(&env);
    // The token is a systemd credential: readable by the service's dynamic user only.
    let token = env["IPLEDGER_METRICS_TOKEN_FILE"].strip_prefix("%d/").expect("the token is a credential");
    assert!(keys["[Service]LoadCredential"].iter().any(|c| c.starts_with(&format!("{token}:/"))));
    assert_eq!(keys["[Service]KillSignal"], ["SIGTERM"]);
    let state = format!("/var/lib/{}/", keys["[Service]StateDirectory"][0]);
    for assignment in &keys["[Service]Environment"] {
        let (name, value) = assignment.split_once('=').unwrap();
        if name == "RUST_LOG" {
            continue; // the log filter of tracing, documented in docs/operations.md
        }
        let default = serve.get(name).unwrap_or_else(|| panic!("{name} is not a setting"));
        if name == "IPLEDGER_DATA_DIR" {
            assert!(value.starts_with(&state), "the data lives in the unit's StateDirectory");
        }
        if name == "IPLEDGER_LISTEN" {
            assert_eq!(value, default, "the unit listens where the binary does by default");
        }
    }
}

#[test]
fn the_kubernetes_manifests_parse_and_use_only_what_the_binary_has() {
    use serde::Deserialize;
    let (serve, _) = options("serve");
    let (_, health_flags) = options("health");
    let text = read("kubernetes.yaml");
    let docs: Vec<serde_norway::Value> =
        serde_norway::Deserializer::from_str(&text).map(|d| serde_norway::Value::deserialize(d).unwrap()).collect();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k}"));
    let set = kind("StatefulSet");
    assert_eq!(set["spec"]["replicas"], 1, "sled is a single-process store");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "serve");
    let env: BTreeMap<String, String> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect();
    for name in env.keys() {
        assert!(serve.contains_key(name), "{name} is not a setting");
    }
    metrics_are_protected(&env);
    let port = env["IPLEDGER_LISTEN"].rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port));
    let metrics_port = env["IPLEDGER_METRICS_LISTEN"].rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(container["ports"][1]["containerPort"].as_u64(), Some(metrics_port));
    let annotations = &set["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(metrics_port.to_string().as_str()));
    assert_eq!(annotations["prometheus.io/scheme"].as_str(), Some("https"));
    let service_ports = kind("Service")["spec"]["ports"].as_sequence().unwrap();
    assert!(service_ports.iter().any(|p| p["port"].as_u64() == Some(metrics_port)), "the Service exposes metrics");
    assert_eq!(kind("Service")["spec"]["ports"][0]["port"].as_u64(), Some(port));
    // Every file the server reads or writes lies on a mounted volume.
    let mounts = files_on_volumes(container, &env);
    for probe in ["readinessProbe", "livenessProbe"] {
        let command: Vec<&str> =
            container[probe]["exec"]["command"].as_sequence().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(&command[..2], ["ipledger", "health"]);
        assert!(command.contains(&format!("https://localhost:{port}").as_str()), "{probe}");
        for flag in command.iter().filter(|c| c.starts_with("--")) {
            assert!(health_flags.iter().any(|f| f == flag), "`ipledger health` has no {flag}");
        }
        let ca = command.iter().skip_while(|c| **c != "--ca-cert").nth(1).unwrap();
        assert!(mounts.iter().any(|m| ca.starts_with(&format!("{m}/"))), "the CA is mounted");
    }
    // The image's user (deploy/Dockerfile) is the pod's.
    assert!(read("Dockerfile").contains(&format!("--uid {}", pod["securityContext"]["runAsUser"].as_u64().unwrap())));
}

/// The metrics settings of a deploy file follow the server's rule: a token always, and TLS (the
/// gRPC certificate) whenever the address is not loopback, without --allow-plaintext.
fn metrics_are_protected(env: &BTreeMap<String, String>) {
    let listen: std::net::SocketAddr = env["IPLEDGER_METRICS_LISTEN"].parse().unwrap();
    assert!(env.contains_key("IPLEDGER_METRICS_TOKEN_FILE"), "metrics need a bearer token");
    if !listen.ip().is_loopback() {
        assert!(env.contains_key("IPLEDGER_TLS_CERT") && env.contains_key("IPLEDGER_TLS_KEY"), "metrics need TLS");
    }
    assert!(!env.contains_key("IPLEDGER_ALLOW_PLAINTEXT"));
}

#[test]
fn the_prometheus_example_scrapes_over_tls_with_the_bearer_token() {
    let config: serde_norway::Value = serde_norway::from_str(&read("prometheus.yml")).unwrap();
    let job = &config["scrape_configs"][0];
    assert_eq!(job["scheme"], "https");
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(job["authorization"]["type"], "Bearer");
    assert!(job["authorization"]["credentials_file"].as_str().is_some_and(|f| f.starts_with('/')));
    assert!(job["tls_config"]["ca_file"].as_str().is_some_and(|f| f.starts_with('/')));
    assert!(job["tls_config"].get("insecure_skip_verify").is_none(), "the certificate is verified");
    let target = job["static_configs"][0]["targets"][0].as_str().unwrap();
    let manifest = read("kubernetes.yaml");
    let port = target.rsplit(':').next().unwrap();
    assert!(
        manifest.contains(&format!("IPLEDGER_METRICS_LISTEN\n              value: \"0.0.0.0:{port}\"")),
        "{target}"
    );
    let host = target.split(':').next().unwrap();
    assert!(manifest.contains(&format!("kind: Service\nmetadata:\n  name: {host}\n")), "{target}");
}

// High availability (deploy/ha): three PostgreSQL nodes under Patroni (or CloudNativePG on
// Kubernetes) hold the journal, HAProxy routes by health checks, three ipledger nodes share it.

/// Every password in the HA files starts with this: the real ones come from a secret store.
const SECRET_PLACEHOLDER: &str = "REPLACE_FROM_SECRET";

/// Settings the HA files use that `ipledger serve --help` lacks. Each test asserts it empty last,
/// so a missing setting is reported only after every other check of the test has passed.
#[derive(Default)]
struct Missing(Vec<String>);

impl Missing {
    fn setting<'a>(&mut self, serve: &'a BTreeMap<String, String>, name: &str) -> Option<&'a String> {
        let found = serve.get(name);
        if found.is_none() && !self.0.iter().any(|n| n == name) {
            self.0.push(name.to_owned());
        }
        found
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "not settings of `ipledger serve`: {}", self.0.join(", "));
    }
}

/// `KEY=VALUE` lines of deploy/ha/ipledger-node.env (comments and blank lines aside).
fn ha_node_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in read("ha/ipledger-node.env").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        assert!(env.insert(key.to_owned(), value.to_owned()).is_none(), "{key} twice");
    }
    env
}

/// A journal URL as ipledger's PostgreSQL client reads it (unknown options are refused).
fn journal_config(url: &str) -> postgres::Config {
    url.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn host_of(config: &postgres::Config) -> String {
    match config.get_hosts() {
        [postgres::config::Host::Tcp(host)] => host.clone(),
        hosts => panic!("one TCP host expected: {hosts:?}"),
    }
}

/// What a journal URL must say whatever the layout: the primary only (a replica refuses writes),
/// and TLS, if any, from `IPLEDGER_JOURNAL_CA` rather than the URL (which may say `prefer`, the
/// default, or nothing: with a CA ipledger requires TLS and verifies the host; `sslmode=disable`
/// would contradict it).
fn journal_is_the_primary(config: &postgres::Config) {
    use postgres::config::{SslMode, TargetSessionAttrs};
    assert!(matches!(config.get_target_session_attrs(), TargetSessionAttrs::ReadWrite), "target_session_attrs");
    assert!(matches!(config.get_ssl_mode(), SslMode::Prefer), "sslmode");
    assert!(config.get_connect_timeout().is_some(), "a failover must not hang a connection attempt");
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap_or_else(|e| panic!("{address}: {e}"))
}

fn host_part(address: &str) -> &str {
    address.rsplit_once(':').unwrap_or_else(|| panic!("no port: {address}")).0
}

/// One section of an HAProxy configuration: keyword (`listen`), name, and directives as words.
#[derive(Debug)]
struct Section {
    kind: String,
    name: String,
    lines: Vec<Vec<String>>,
}

impl Section {
    /// The rest of every directive that starts with `prefix`.
    fn after(&self, prefix: &[&str]) -> Vec<&[String]> {
        self.lines
            .iter()
            .filter(|l| l.len() >= prefix.len() && l.iter().zip(prefix).all(|(w, p)| w == p))
            .map(|l| &l[prefix.len()..])
            .collect()
    }
}

/// A server line with the default-server words of the defaults and of its listen before its own,
/// as HAProxy merges them.
#[derive(Debug)]
struct Server {
    host: String,
    port: u16,
    words: Vec<String>,
}

impl Server {
    fn has(&self, words: &[&str]) -> bool {
        self.words.windows(words.len()).any(|w| w.iter().zip(words).all(|(a, b)| a == b))
    }

    /// The word after the last `key` (later settings override earlier ones).
    fn value(&self, key: &str) -> Option<&str> {
        self.words.windows(2).rev().find(|w| w[0] == key).map(|w| w[1].as_str())
    }
}

/// An HAProxy configuration read by a small line parser: sections start at column 0, directives
/// are indented, `#` starts a comment, double quotes group words. Only the sections and
/// directives these files use are known, so a typo fails here rather than at deployment.
#[derive(Debug)]
struct Haproxy(Vec<Section>);

impl Haproxy {
    fn parse(text: &str) -> Haproxy {
        const SECTIONS: [&str; 6] = ["global", "defaults", "listen", "frontend", "backend", "resolvers"];
        const DIRECTIVES: [&str; 16] = [
            "log",
            "maxconn",
            "user",
            "group",
            "daemon",
            "mode",
            "option",
            "retries",
            "timeout",
            "default-server",
            "bind",
            "balance",
            "http-check",
            "server",
            "parse-resolv-conf",
            "hold",
        ];
        let mut sections: Vec<Section> = Vec::new();
        for line in text.lines() {
            let words = haproxy_words(line);
            if words.is_empty() {
                continue;
            }
            if !line.starts_with(char::is_whitespace) {
                assert!(SECTIONS.contains(&words[0].as_str()), "unknown section: {line}");
                let name = words.get(1).cloned().unwrap_or_default();
                assert!(!sections.iter().any(|s| s.kind == words[0] && s.name == name), "twice: {line}");
                sections.push(Section { kind: words[0].clone(), name, lines: Vec::new() });
            } else {
                let section = sections.last_mut().unwrap_or_else(|| panic!("outside a section: {line}"));
                assert!(DIRECTIVES.contains(&words[0].as_str()), "unknown directive: {line}");
                section.lines.push(words);
            }
        }
        Haproxy(sections)
    }

    fn section(&self, kind: &str, name: &str) -> &Section {
        self.0.iter().find(|s| s.kind == kind && s.name == name).unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn listen(&self, name: &str) -> &Section {
        self.section("listen", name)
    }

    /// A listen's setting, else the defaults' (the last line wins, as in HAProxy).
    fn setting(&self, listen: &str, prefix: &[&str]) -> Option<Vec<String>> {
        [self.listen(listen), self.section("defaults", "")]
            .iter()
            .find_map(|s| s.after(prefix).last().map(|rest| rest.to_vec()))
    }

    fn timeout(&self, listen: &str, which: &str) -> std::time::Duration {
        let value = self.setting(listen, &["timeout", which]).unwrap_or_else(|| panic!("{listen}: no timeout {which}"));
        haproxy_duration(&value[0])
    }

    /// The port a listen binds (`bind *:5000`, `bind :50051`).
    fn bind_port(&self, listen: &str) -> u16 {
        match &self.listen(listen).after(&["bind"])[..] {
            [bind] => port_of(&bind[0]),
            binds => panic!("{listen}: one bind expected, got {binds:?}"),
        }
    }

    /// `option httpchk <method> <uri>`.
    fn httpchk(&self, listen: &str) -> (String, String) {
        match &self.listen(listen).after(&["option", "httpchk"])[..] {
            [[method, uri]] => (method.clone(), uri.clone()),
            other => panic!("{listen}: `option httpchk METHOD URI` expected, got {other:?}"),
        }
    }

    fn servers(&self, listen: &str) -> Vec<Server> {
        let mut defaults: Vec<String> = Vec::new();
        for section in [self.section("defaults", ""), self.listen(listen)] {
            for rest in section.after(&["default-server"]) {
                defaults.extend(rest.iter().cloned());
            }
        }
        self.listen(listen)
            .after(&["server"])
            .iter()
            .map(|rest| {
                let address = &rest[1];
                let words = defaults.iter().chain(&rest[2..]).cloned().collect();
                Server { host: host_part(address).to_owned(), port: port_of(address), words }
            })
            .collect()
    }
}

/// The words of a line: separated by blanks, grouped by double quotes (removed), up to a `#`.
fn haproxy_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unbalanced quote: {line}");
    words.extend(word);
    words
}

/// An HAProxy time: a number with an optional unit, milliseconds without one.
fn haproxy_duration(text: &str) -> std::time::Duration {
    use std::time::Duration;
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    match &text[digits.len()..] {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        unit => panic!("unknown time unit in {text}: {unit}"),
    }
}

/// The HAProxy checks every ipledger listen needs, wherever it runs: `uri` answered 200 and
/// without a grpc-status header (gRPC's 200 for an unknown path), over TLS verified against a CA
/// file, a down server's connections cut, and no idle cut-off of long gRPC streams.
fn ipledger_listen_checks(config: &Haproxy, listen: &str, uri: &str) -> Vec<Server> {
    assert_eq!(config.httpchk(listen), ("GET".to_owned(), uri.to_owned()), "{listen}");
    let section = config.listen(listen);
    assert_eq!(section.after(&["http-check", "expect", "status"]), [["200".to_owned()]], "{listen}");
    assert_eq!(section.after(&["http-check", "expect", "!", "hdr", "name"]), [["grpc-status".to_owned()]], "{listen}");
    for which in ["client", "server"] {
        assert!(config.timeout(listen, which) >= std::time::Duration::from_secs(3600), "{listen}: timeout {which}");
    }
    let servers = config.servers(listen);
    for server in &servers {
        assert!(server.has(&["check"]), "{listen}: {server:?}");
        assert!(server.has(&["on-marked-down", "shutdown-sessions"]), "{listen}: {server:?}");
        // The nodes serve TLS (their address is not loopback): the check speaks it and verifies
        // the certificate for the node's own name.
        assert!(server.has(&["check-ssl"]) && server.has(&["verify", "required"]), "{listen}: {server:?}");
        assert!(server.value("ca-file").is_some_and(|f| f.starts_with('/')), "{listen}: {server:?}");
        assert!(server.value("verifyhost").is_some(), "{listen}: {server:?}");
    }
    servers
}

/// `haproxy -c` on `text` (HAProxy must be installed). The CA files it names exist only on the
/// deployment host, so they are replaced by a throwaway CA here; nothing else is changed.
fn haproxy_accepts(name: &str, text: &str, env: &[(&str, &str)]) {
    let haproxy = crate::tools::require("haproxy", "haproxy");
    let temp = tempfile::tempdir().unwrap();
    let ca = temp.path().join("ca.crt");
    std::fs::write(&ca, crate::tls::Pki::new("ipledger test CA").ca_pem).unwrap();
    let mut checked = text.to_owned();
    for line in text.lines() {
        let words = haproxy_words(line);
        if let Some(i) = words.iter().position(|w| w == "ca-file") {
            checked = checked.replace(&words[i + 1], ca.to_str().unwrap());
        }
    }
    let path = temp.path().join("haproxy.cfg");
    std::fs::write(&path, checked).unwrap();
    let out = Command::new(haproxy).arg("-c").arg("-f").arg(&path).envs(env.iter().copied()).output().unwrap();
    assert!(
        out.status.success(),
        "haproxy -c {name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn patroni_config() -> serde_norway::Value {
    serde_norway::from_str(&read("ha/patroni.yml")).unwrap()
}

/// Every string under a key named `password`, at any depth.
fn passwords(value: &serde_norway::Value, found: &mut Vec<String>) {
    match value {
        serde_norway::Value::Mapping(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    (Some("password"), Some(password)) => found.push(password.to_owned()),
                    _ => passwords(value, found),
                }
            }
        }
        serde_norway::Value::Sequence(items) => items.iter().for_each(|v| passwords(v, found)),
        _ => {}
    }
}

#[test]
fn every_setting_and_ipledger_command_in_the_ha_files_exists_in_the_binary() {
    let (serve, _) = options("serve");
    let mut missing = Missing::default();
    let files = ["ha/patroni.yml", "ha/haproxy.cfg", "ha/ipledger-node.env", "ha/kubernetes-cloudnativepg.yaml"];
    for file in files {
        let text = read(file);
        for name in env_names(&text) {
            missing.setting(&serve, &name);
        }
        // `ipledger <subcommand> --flag ...` quoted in a comment: its flags exist.
        for quoted in text.split('`').skip(1).step_by(2) {
            let words: Vec<&str> = quoted.split_whitespace().collect();
            if let ["ipledger", subcommand, rest @ ..] = &words[..] {
                let (_, flags) = options(subcommand);
                for flag in rest.iter().filter(|w| w.starts_with("--")) {
                    assert!(flags.iter().any(|f| f == flag), "{file}: `ipledger {subcommand}` has no {flag}");
                }
            }
        }
    }
    // The contract of the HA settings: a lease of 5 s by default, no default for the others.
    if let Some(default) = missing.setting(&serve, "IPLEDGER_LEASE_MS") {
        assert_eq!(default, "5000");
    }
    for name in ["IPLEDGER_ADVERTISE", "IPLEDGER_JOURNAL"] {
        if let Some(default) = missing.setting(&serve, name) {
            assert_eq!(default, "", "{name} has no default");
        }
    }
    missing.assert_none();
}

#[test]
fn the_ha_node_settings_are_tls_a_unique_name_and_the_journal_through_haproxy() {
    let (serve, _) = options("serve");
    let mut missing = Missing::default();
    let env = ha_node_env();
    for (name, value) in &env {
        assert!(name.starts_with("IPLEDGER_"), "{name}");
        assert!(!value.is_empty(), "{name} is empty");
        missing.setting(&serve, name);
    }
    if let Some(default) = missing.setting(&serve, "IPLEDGER_LEASE_MS") {
        assert_eq!(&env["IPLEDGER_LEASE_MS"], default, "the example keeps the lease's default");
    }
    // Reached from the other hosts: not loopback, so TLS (the server refuses plaintext there).
    let listen: std::net::SocketAddr = env["IPLEDGER_LISTEN"].parse().unwrap();
    assert!(!listen.ip().is_loopback());
    assert!(env.contains_key("IPLEDGER_TLS_CERT") && env.contains_key("IPLEDGER_TLS_KEY"));
    assert!(!env.contains_key("IPLEDGER_ALLOW_PLAINTEXT"));
    let advertise = &env["IPLEDGER_ADVERTISE"];
    assert_eq!(port_of(advertise), listen.port(), "others reach the port this node listens on");
    assert!(!host_part(advertise).starts_with("127.") && host_part(advertise) != "localhost", "{advertise}");

    // The journal through the local HAProxy's PostgreSQL read-write listen.
    let haproxy = Haproxy::parse(&read("ha/haproxy.cfg"));
    let journal = journal_config(&env["IPLEDGER_JOURNAL"]);
    journal_is_the_primary(&journal);
    assert!(env.contains_key("IPLEDGER_JOURNAL_CA"), "the journal's connections use TLS");
    assert!(env.contains_key("IPLEDGER_SIGNING_KEY"), "the nodes share the cluster's signing key");
    assert_eq!(host_of(&journal), "127.0.0.1", "the local HAProxy");
    assert_eq!(journal.get_ports(), [haproxy.bind_port("postgres_rw")]);
    let password = String::from_utf8(journal.get_password().unwrap().to_vec()).unwrap();
    assert!(password.starts_with(SECRET_PLACEHOLDER), "no real password in the example");
    // Patroni's pg_hba admits that user to that database from the HAProxy hosts.
    let (user, database) = (journal.get_user().unwrap(), journal.get_dbname().unwrap());
    let hba = patroni_config()["postgresql"]["pg_hba"].clone();
    let admitted = hba.as_sequence().unwrap().iter().any(|line| {
        let words: Vec<&str> = line.as_str().unwrap().split_whitespace().collect();
        words.len() == 5
            && words[0] == "hostssl"
            && words[1] == database
            && words[2] == user
            && words[4] == "scram-sha-256"
    });
    assert!(admitted, "pg_hba admits {user} to {database} over TLS: {hba:?}");
    // Over TCP nothing is admitted without TLS: no `host` line, and PostgreSQL serves TLS.
    for line in hba.as_sequence().unwrap() {
        let kind = line.as_str().unwrap().split_whitespace().next().unwrap();
        assert!(matches!(kind, "local" | "hostssl"), "a TCP line without TLS: {line:?}");
    }
    let parameters = &patroni_config()["postgresql"]["parameters"];
    assert_eq!(parameters["ssl"], "on");
    assert!(parameters["ssl_cert_file"].is_string() && parameters["ssl_key_file"].is_string());
    // The HAProxy ipledger listens reach this node by the name it advertises.
    let servers = ipledger_listen_checks(&haproxy, "ipledger_write", "/healthz/writer");
    assert!(servers.iter().any(|s| s.value("verifyhost") == Some(host_part(advertise))), "{advertise}");
    missing.assert_none();
}

#[test]
fn the_ha_patroni_configuration_is_strictly_synchronous_with_rewind_and_a_consistent_ttl() {
    let config = patroni_config();
    assert!(config.get("etcd").is_none(), "etcd 3.4 serves the v3 API: the etcd3 section");
    assert_eq!(config["etcd3"]["hosts"].as_sequence().unwrap().len(), 3, "three etcd members");
    // etcd decides the primary: TLS, its CA verified, and Patroni authenticated by certificate.
    assert_eq!(config["etcd3"]["protocol"], "https");
    for key in ["cacert", "cert", "key"] {
        assert!(config["etcd3"][key].is_string(), "etcd3.{key}");
    }
    let dcs = &config["bootstrap"]["dcs"];
    assert_eq!(dcs["synchronous_mode"], true);
    assert_eq!(dcs["synchronous_mode_strict"], true);
    assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
    // Patroni's rule, with its defaults where a value is not given.
    let setting = |name: &str, default: u64| dcs.get(name).map_or(default, |v| v.as_u64().unwrap());
    let (ttl, loop_wait, retry_timeout) = (setting("ttl", 30), setting("loop_wait", 10), setting("retry_timeout", 10));
    assert!(
        ttl >= loop_wait + 2 * retry_timeout,
        "ttl {ttl} < loop_wait {loop_wait} + 2 x retry_timeout {retry_timeout}"
    );
    // pg_rewind needs data checksums or wal_log_hints.
    let checksums = config["bootstrap"]["initdb"].as_sequence().unwrap().iter().any(|o| o == "data-checksums");
    assert!(checksums || dcs["postgresql"]["parameters"]["wal_log_hints"] == "on");
    // The lines Patroni 3.0.2 requires in bootstrap are those it maintains (a YAML alias).
    assert_eq!(config["bootstrap"]["pg_hba"], config["postgresql"]["pg_hba"]);
    let mut found = Vec::new();
    passwords(&config, &mut found);
    assert_eq!(found.len(), 4, "superuser, replication, rewind, REST API: {found:?}");
    for password in found {
        assert!(password.starts_with(SECRET_PLACEHOLDER), "a real password in the file: {password}");
    }
    // HAProxy's PostgreSQL listens check this node's Patroni and reach its PostgreSQL.
    let haproxy = Haproxy::parse(&read("ha/haproxy.cfg"));
    let rest_port = port_of(config["restapi"]["listen"].as_str().unwrap());
    let pg_port = port_of(config["postgresql"]["listen"].as_str().unwrap());
    let this_node = host_part(config["postgresql"]["connect_address"].as_str().unwrap());
    for (listen, uri) in [("postgres_rw", "/primary"), ("postgres_ro", "/replica")] {
        assert_eq!(haproxy.httpchk(listen), ("OPTIONS".to_owned(), uri.to_owned()), "{listen}");
        assert_eq!(haproxy.listen(listen).after(&["http-check", "expect", "status"]), [["200".to_owned()]]);
        let servers = haproxy.servers(listen);
        assert_eq!(servers.len(), 3, "{listen}");
        assert!(servers.iter().any(|s| s.host == this_node), "{listen} has this node");
        for server in servers {
            assert_eq!((server.port, server.value("port")), (pg_port, Some(rest_port.to_string().as_str())));
            assert!(server.has(&["on-marked-down", "shutdown-sessions"]), "{listen}: {server:?}");
        }
    }
    patroni_accepts("deploy/ha/patroni.yml");
}

/// `patroni --validate-config` on the file (Patroni must be installed). Patroni's validator also
/// checks the host's network (etcd answers, the listen ports are free), which is the deployment
/// host's business: Patroni's own PATRONI_* overrides point etcd at listeners of this test and the
/// listen addresses at free loopback ports; every other setting is the file's.
fn patroni_accepts(path: &str) {
    let patroni = crate::tools::require("patroni", "patroni");
    let etcd: Vec<std::net::TcpListener> =
        (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let hosts: Vec<String> = etcd.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    // Bound and released at once: a free port nothing answers on.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let validate = |etcd_hosts: &str| {
        let mut command = Command::new(&patroni);
        command.arg("--validate-config").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("PATRONI_")) {
            command.env_remove(name);
        }
        let out = command
            .env("PATRONI_ETCD3_HOSTS", etcd_hosts)
            .env("PATRONI_RESTAPI_LISTEN", free())
            .env("PATRONI_POSTGRESQL_LISTEN", free())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (valid, output) = validate(&hosts.join(","));
    assert!(valid, "patroni --validate-config {path}:\n{output}");
    // The validator does check: with no etcd answering, the same file fails it.
    let (valid, output) = validate(&free());
    assert!(!valid && output.contains("not reachable"), "{output}");
}

#[test]
fn the_ha_haproxy_configuration_parses_and_checks_what_each_node_serves() {
    let (serve, _) = options("serve");
    let mut missing = Missing::default();
    let text = read("ha/haproxy.cfg");
    let config = Haproxy::parse(&text);
    let env = ha_node_env();
    let node_port = port_of(&env["IPLEDGER_LISTEN"]);
    for (listen, uri) in [("ipledger_write", "/healthz/writer"), ("ipledger_read", "/healthz")] {
        let servers = ipledger_listen_checks(&config, listen, uri);
        assert_eq!(servers.len(), 3, "{listen}: three ipledger nodes");
        for server in &servers {
            assert_eq!(server.port, node_port, "{listen}: the port the nodes listen on");
        }
    }
    // The Kubernetes pods listen on the same port.
    let manifest = read("ha/kubernetes-cloudnativepg.yaml");
    assert!(manifest.contains(&format!("IPLEDGER_LISTEN\n              value: \"0.0.0.0:{node_port}\"")));
    let binds: Vec<u16> = config.0.iter().filter(|s| s.kind == "listen").map(|s| config.bind_port(&s.name)).collect();
    let mut distinct = binds.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), binds.len(), "every listen has its own port: {binds:?}");
    assert!(!binds.contains(&node_port), "HAProxy runs beside an ipledger node: {binds:?}");
    for name in env_names(&text) {
        missing.setting(&serve, &name);
    }
    haproxy_accepts("deploy/ha/haproxy.cfg", &text, &[]);
    missing.assert_none();
}

#[tokio::test]
async fn a_lone_node_answers_the_ha_health_checks_as_the_writer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Haproxy::parse(&read("ha/haproxy.cfg"));
    let server = crate::helpers::TestServer::start().await;
    let mut failures = Vec::new();
    for listen in ["ipledger_write", "ipledger_read"] {
        // The request HAProxy sends: `option httpchk`, amended by `http-check send`.
        let (mut method, mut uri) = config.httpchk(listen);
        let section = config.listen(listen);
        let send = section.after(&["http-check", "send"]).concat();
        let mut version = "HTTP/1.0".to_owned();
        let mut headers = String::new();
        let mut words = send.iter();
        while let Some(word) = words.next() {
            let mut next = || words.next().unwrap_or_else(|| panic!("{listen}: {word} without a value")).clone();
            match word.as_str() {
                "meth" => method = next(),
                "uri" => uri = next(),
                "ver" => version = next(),
                "hdr" => headers.push_str(&format!("{}: {}\r\n", next(), next())),
                other => panic!("{listen}: `http-check send {other}` is unknown to this test"),
            }
        }
        let request = format!("{method} {uri} {version}\r\n{headers}Connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        let head = response.split("\r\n\r\n").next().unwrap().to_lowercase();
        let status = head.split_whitespace().nth(1).unwrap_or("none").to_owned();
        // Its expectations: the status, and no grpc-status header.
        let expected = &section.after(&["http-check", "expect", "status"])[0][0];
        let grpc = head.lines().any(|l| l.starts_with("grpc-status:"));
        if &status != expected || grpc {
            failures.push(format!("{method} {uri}: HTTP {status}{}", if grpc { " with grpc-status" } else { "" }));
        }
    }
    server.stop().await;
    assert!(failures.is_empty(), "a lone node serves reads and is the writer, but: {}", failures.join("; "));
}

/// `$(NAME)` references in a Kubernetes env value.
fn references(value: &str) -> Vec<&str> {
    value.split("$(").skip(1).filter_map(|rest| rest.split_once(')')).map(|(name, _)| name).collect()
}

#[test]
fn the_ha_kubernetes_manifests_run_three_nodes_on_a_synchronous_cloudnativepg_cluster() {
    use serde::Deserialize;
    use serde_norway::Value;
    let (serve, _) = options("serve");
    let (_, health_flags) = options("health");
    let mut missing = Missing::default();
    let text = read("ha/kubernetes-cloudnativepg.yaml");
    let docs: Vec<Value> =
        serde_norway::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).collect();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k}"));
    let named = |k: &str, name: &str| {
        docs.iter().find(|d| d["kind"] == k && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {k} {name}"))
    };
    let selects = |service: &Value, labels: &Value| {
        let selector = service["spec"]["selector"].as_mapping().unwrap();
        selector.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v)
    };

    // PostgreSQL: three instances, a commit waits for a replica, the app user from a Secret.
    let cluster = kind("Cluster");
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    let cluster_name = cluster["metadata"]["name"].as_str().unwrap();
    assert_eq!(cluster["spec"]["instances"], 3);
    let synchronous = &cluster["spec"]["postgresql"]["synchronous"];
    if synchronous.is_mapping() {
        assert!(synchronous["method"] == "any" || synchronous["method"] == "first");
        assert_eq!(synchronous["number"], 1);
        // `preferred` would let the primary acknowledge commits alone.
        assert!(synchronous.get("dataDurability").is_none_or(|d| d == "required"));
    } else {
        assert_eq!(cluster["spec"]["minSyncReplicas"], 1);
        assert_eq!(cluster["spec"]["maxSyncReplicas"], 1);
    }
    let initdb = &cluster["spec"]["bootstrap"]["initdb"];
    let app_secret = initdb["secret"]["name"].as_str().unwrap();
    let database = initdb["database"].as_str().unwrap();
    assert!(text.contains(&format!("kubectl create secret generic {app_secret} --type=kubernetes.io/basic-auth")));

    // ipledger: three replicas, each with its own volume and a stable name.
    let set = kind("StatefulSet");
    let set_name = set["metadata"]["name"].as_str().unwrap();
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(replicas, 3);
    let service_name = set["spec"]["serviceName"].as_str().unwrap();
    let headless = named("Service", service_name);
    assert_eq!(headless["spec"]["clusterIP"], "None", "pod names need a headless Service");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let pod_labels = &set["spec"]["template"]["metadata"]["labels"];
    assert!(selects(headless, pod_labels));
    assert!(!set["spec"]["volumeClaimTemplates"].as_sequence().unwrap().is_empty(), "a volume per replica");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "serve");

    // The environment, in order: $(NAME) expands only names defined before it.
    let samples: BTreeMap<(&str, &str), &str> = [
        (("fieldRef", "metadata.name"), "ipledger-0"),
        (("fieldRef", "metadata.namespace"), "ledger"),
        (("secretKeyRef", "username"), "ipledger"),
        (("secretKeyRef", "password"), "s3cret"),
    ]
    .into();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut plain: BTreeMap<String, String> = BTreeMap::new();
    let mut source: BTreeMap<String, String> = BTreeMap::new();
    for entry in container["env"].as_sequence().unwrap() {
        let name = entry["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            for reference in references(value) {
                assert!(env.contains_key(reference), "{name} uses $({reference}) before it is defined");
            }
            plain.insert(name.clone(), value.to_owned());
            env.iter().fold(value.to_owned(), |v, (n, sample)| v.replace(&format!("$({n})"), sample))
        } else if let Some(field) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            source.insert(name.clone(), format!("fieldRef {field}"));
            samples[&("fieldRef", field)].to_owned()
        } else {
            let secret = &entry["valueFrom"]["secretKeyRef"];
            let key = secret["key"].as_str().unwrap();
            source.insert(name.clone(), format!("secret {} {key}", secret["name"].as_str().unwrap()));
            samples[&("secretKeyRef", key)].to_owned()
        };
        assert!(env.insert(name.clone(), value).is_none(), "{name} twice");
        if name.starts_with("IPLEDGER_") {
            missing.setting(&serve, &name);
        }
    }
    let port = port_of(&env["IPLEDGER_LISTEN"]);
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(u64::from(port)));
    assert_eq!(container["ports"][0]["name"], "grpc");
    // The advertised address is the pod's stable name through the headless Service.
    let advertise = &plain["IPLEDGER_ADVERTISE"];
    let [pod_name, namespace] = references(advertise)[..] else { panic!("{advertise}") };
    assert_eq!(advertise, &format!("$({pod_name}).{service_name}.$({namespace}).svc:{port}"));
    assert_eq!(source[pod_name], "fieldRef metadata.name");
    assert_eq!(source[namespace], "fieldRef metadata.namespace");
    if let Some(default) = missing.setting(&serve, "IPLEDGER_LEASE_MS") {
        assert_eq!(&env["IPLEDGER_LEASE_MS"], default);
    }
    // The journal: the primary through CloudNativePG's read-write Service, as the app user.
    let journal = journal_config(&env["IPLEDGER_JOURNAL"]);
    journal_is_the_primary(&journal);
    assert!(env.contains_key("IPLEDGER_JOURNAL_CA"), "the journal's connections use TLS");
    assert!(env.contains_key("IPLEDGER_SIGNING_KEY"), "the nodes share the cluster's signing key");
    assert_eq!(host_of(&journal), format!("{cluster_name}-rw"));
    assert_eq!(journal.get_ports(), [5432]);
    assert_eq!(journal.get_dbname(), Some(database));
    assert_eq!(journal.get_user(), Some(samples[&("secretKeyRef", "username")]));
    assert_eq!(journal.get_password(), Some(samples[&("secretKeyRef", "password")].as_bytes()));
    for credential in references(&plain["IPLEDGER_JOURNAL"]).into_iter().filter(|r| source[*r].starts_with("secret")) {
        assert!(
            source[credential].starts_with(&format!("secret {app_secret} ")),
            "{credential}: {}",
            source[credential]
        );
    }
    // The TLS and token conventions of deploy/kubernetes.yaml.
    metrics_are_protected(&env);
    files_on_volumes(container, &env);
    assert!(read("Dockerfile").contains(&format!("--uid {}", pod["securityContext"]["runAsUser"].as_u64().unwrap())));
    let tls_mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| env["IPLEDGER_TLS_CERT"].starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
        .unwrap();
    let tls_volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == tls_mount["name"]).unwrap();
    let tls_secret = &tls_volume["secret"]["secretName"];
    // Ready = serves reads: the same endpoint as HAProxy's read check. Never the writer's, which
    // would keep followers unready (see the manifest's header).
    let haproxy = Haproxy::parse(&read("ha/haproxy.cfg"));
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some(haproxy.httpchk("ipledger_read").1.as_str()));
    assert_eq!(readiness["scheme"], "HTTPS");
    assert_eq!(readiness["port"], "grpc");
    assert!(!serde_norway::to_string(pod).unwrap().contains("/healthz/writer"), "no probe on the writer");
    let liveness: Vec<&str> = container["livenessProbe"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(&liveness[..2], ["ipledger", "health"]);
    assert!(liveness.contains(&format!("https://localhost:{port}").as_str()));
    for flag in liveness.iter().filter(|c| c.starts_with("--")) {
        assert!(health_flags.iter().any(|f| f == flag), "`ipledger health` has no {flag}");
    }

    // Reads on every ready pod; writes through the proxies.
    let read_service = named("Service", "ipledger-read");
    assert!(selects(read_service, pod_labels) && read_service["spec"]["clusterIP"].is_null());
    let proxy = kind("Deployment");
    let proxy_labels = &proxy["spec"]["template"]["metadata"]["labels"];
    let write_service = named("Service", "ipledger-write");
    assert!(selects(write_service, proxy_labels) && !selects(write_service, pod_labels));
    assert!(proxy["spec"]["replicas"].as_u64().unwrap() >= 2, "no single proxy to lose");
    let proxy_pod = &proxy["spec"]["template"]["spec"];
    let haproxy_container = &proxy_pod["containers"][0];
    let command: Vec<&str> =
        haproxy_container["command"].as_sequence().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let config_path = Path::new(command.iter().skip_while(|c| **c != "-f").nth(1).unwrap());
    let proxy_mounts = haproxy_container["volumeMounts"].as_sequence().unwrap();
    let mount_of = |path: &Path| {
        let mount = proxy_mounts
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{} is not on a volume", path.display()));
        let volume = mount["name"].as_str().unwrap();
        proxy_pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == volume).unwrap().clone()
    };
    let config_map = mount_of(config_path)["configMap"]["name"].as_str().unwrap().to_owned();
    let file = config_path.file_name().unwrap().to_str().unwrap();
    let proxy_config_text = named("ConfigMap", &config_map)["data"][file].as_str().unwrap().to_owned();
    let proxy_config = Haproxy::parse(&proxy_config_text);
    let bind = proxy_config.bind_port("ipledger_write");
    let container_port = &haproxy_container["ports"].as_sequence().unwrap()[0];
    assert_eq!(container_port["containerPort"].as_u64(), Some(u64::from(bind)));
    assert_eq!(write_service["spec"]["ports"][0]["targetPort"], container_port["name"]);
    assert_eq!(write_service["spec"]["ports"][0]["port"].as_u64(), Some(u64::from(port)), "the gRPC port");
    // One server per replica, by its stable name, verified as the name it advertises.
    let servers = ipledger_listen_checks(&proxy_config, "ipledger_write", "/healthz/writer");
    assert_eq!(servers.len() as u64, replicas);
    let namespace_var = haproxy_container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace")
        .unwrap()["name"]
        .as_str()
        .unwrap();
    for (i, server) in servers.iter().enumerate() {
        let advertised = advertise
            .replace(&format!("$({pod_name})"), &format!("{set_name}-{i}"))
            .replace(&format!("$({namespace})"), &format!("${{{namespace_var}}}"));
        assert_eq!(server.value("verifyhost"), Some(host_part(&advertised)), "{server:?}");
        assert_eq!(server.host, format!("{}.cluster.local", host_part(&advertised)), "fully qualified");
        assert_eq!(server.port, port);
        assert!(server.value("resolvers").is_some(), "pods move, their addresses too: {server:?}");
        // The CA of the pods' certificate, mounted from its Secret.
        let ca = Path::new(server.value("ca-file").unwrap());
        assert_eq!(&mount_of(ca)["secret"]["secretName"], tls_secret, "{}", ca.display());
    }
    haproxy_accepts(&format!("the {config_map} ConfigMap"), &proxy_config_text, &[(namespace_var, "ledger")]);
    missing.assert_none();
}

/// Every file the server reads or writes (by its setting in `env`) lies on a volume the container
/// mounts; returns the mount paths.
fn files_on_volumes(container: &serde_norway::Value, env: &BTreeMap<String, String>) -> Vec<String> {
    let mounts: Vec<String> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_owned())
        .collect();
    for name in [
        "IPLEDGER_DATA_DIR",
        "IPLEDGER_TLS_CERT",
        "IPLEDGER_TLS_KEY",
        "IPLEDGER_ADMIN_TOKEN_FILE",
        "IPLEDGER_METRICS_TOKEN_FILE",
        "IPLEDGER_SIGNING_KEY",
    ] {
        // A single node may keep the data directory's own signing key.
        let Some(file) = env.get(name) else {
            assert_eq!(name, "IPLEDGER_SIGNING_KEY", "{name} is not set");
            continue;
        };
        assert!(mounts.iter().any(|m| file.starts_with(&format!("{m}/"))), "{name} is not on a volume");
    }
    mounts
}
