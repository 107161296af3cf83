//! The deploy files stay honest without a Docker engine: they parse, and every flag, environment
//! variable, port and path they use exists in the binary and matches its defaults, and metrics off
//! loopback are served over TLS with a bearer token that the Prometheus example sends.

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
            let name: String = part[i + 6..].chars().take_while(|c| *c != '=').collect();
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
            continue; // the log filter of tracing, documented in the README
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
    ] {
        assert!(mounts.iter().any(|m| env[name].starts_with(&format!("{m}/"))), "{name} is not on a volume");
    }
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
