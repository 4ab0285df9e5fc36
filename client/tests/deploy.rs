//! The deployment files in `deploy/`, checked with what runs here: every YAML file parses; every flag and
//! environment variable they pass is one the binaries accept; the Kubernetes probes, ports and grace fit the
//! processes' own settings; compose's services and Prometheus' targets name each other; the Dockerfile builds
//! the workspace's packages and binaries and runs as a non-root user; the systemd units pass `systemd-analyze
//! verify` (when it is installed). Building the image needs a container runtime, which this suite does not
//! assume: with a working `docker` it builds the image too.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    common::root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every file under `deploy/`.
fn files() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![deploy()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn yaml(path: &Path) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// What the binaries' `--help` says, every command that deployment files run.
fn helps() -> String {
    let runs: [(&str, &[&str]); 4] = [
        ("kit-webhooks-server", &["serve", "--help"]),
        ("kit-webhooks-server", &["keys", "create", "--help"]),
        ("kit-webhooks-server", &["migrate", "--help"]),
        ("kit-webhooks-daemon", &["--help"]),
    ];
    let mut text = String::new();
    for (bin, args) in runs {
        let out = Command::new(common::workspace_bin(bin))
            .args(args)
            .env_remove("KIT_WEBHOOKS_DATABASE_URL")
            .output()
            .expect("--help");
        assert!(out.status.success(), "{bin} {args:?}");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

/// The words of `text` that start with `prefix` and go on with `allowed` characters.
fn words(text: &str, prefix: &str, allowed: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let word: String = rest[at + prefix.len()..]
            .chars()
            .take_while(|c| allowed(*c))
            .collect();
        if !word.is_empty() {
            found.insert(format!("{prefix}{word}"));
        }
        rest = &rest[at + prefix.len()..];
    }
    found
}

#[test]
fn deployment_files_use_only_flags_and_variables_the_binaries_know() {
    let help = helps();
    let flag = |c: char| c.is_ascii_lowercase() || c == '-';
    let env = |c: char| c.is_ascii_uppercase() || c == '_';
    let known_flags = words(&help, "--", flag);
    let known_env = words(&help, "KIT_WEBHOOKS_", env);
    let mut checked = 0;
    for path in files() {
        let text = read(&path);
        // The lines that run one of the binaries (not cargo, apt-get or docker).
        let runs_ours = |line: &&str| {
            (line.contains("kit-webhooks-server") || line.contains("kit-webhooks-daemon"))
                && !line.contains("cargo ")
                && !line.contains("target/release/")
        };
        let commands: String = text
            .lines()
            .filter(runs_ours)
            .collect::<Vec<_>>()
            .join("\n");
        for name in words(&commands, "--", flag) {
            if name == "--" || name.starts_with("---") {
                continue;
            }
            assert!(
                known_flags.contains(&name),
                "{} passes `{name}`, which no binary takes",
                path.display()
            );
            checked += 1;
        }
        for name in words(&text, "KIT_WEBHOOKS_", env) {
            assert!(
                known_env.contains(&name),
                "{} sets `{name}`, which no binary reads",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} flags and variables found");
}

#[test]
fn every_yaml_file_parses() {
    let yaml_files: Vec<PathBuf> = files()
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    assert!(yaml_files.len() >= 6, "{yaml_files:?}");
    for path in yaml_files {
        yaml(&path);
    }
}

/// The port of `--metrics-listen HOST:PORT` in a container's arguments.
fn metrics_port(args: &[&str]) -> i64 {
    let at = args
        .iter()
        .position(|a| *a == "--metrics-listen")
        .expect("--metrics-listen");
    let addr: std::net::SocketAddr = args[at + 1].parse().expect("an address");
    i64::from(addr.port())
}

#[test]
fn the_kubernetes_probes_and_ports_fit_the_processes() {
    let deployment = yaml(&deploy().join("kubernetes/deployment.yaml"));
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let spec = &deployment["spec"]["template"]["spec"];
    // More than the processes' default --shutdown-grace, so that they finish before they are killed.
    let grace = spec["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("grace");
    let default_grace = kit_webhooks_server::config::DEFAULT_SHUTDOWN_GRACE.as_secs() as i64;
    assert!(grace > default_grace, "{grace} s");
    assert_eq!(
        kit_webhooks_daemon::DEFAULT_SHUTDOWN_GRACE,
        kit_webhooks_server::config::DEFAULT_SHUTDOWN_GRACE
    );
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let containers = spec["containers"].as_vec().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["server", "daemon"]);
    let mut port_names = BTreeSet::new();
    for container in containers {
        let args: Vec<&str> = container["args"]
            .as_vec()
            .expect("args")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let metrics = metrics_port(&args);
        let ports = container["ports"].as_vec().expect("ports");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{probe}");
            let port_name = get["port"].as_str().expect("a named port");
            let port = ports
                .iter()
                .find(|p| p["name"].as_str() == Some(port_name))
                .unwrap_or_else(|| panic!("no port `{port_name}`"));
            assert_eq!(
                port["containerPort"].as_i64(),
                Some(metrics),
                "{probe} port"
            );
        }
        assert!(container["resources"]["requests"]["cpu"].as_str().is_some());
        assert!(container["resources"]["requests"]["memory"]
            .as_str()
            .is_some());
        for port in ports {
            port_names.insert(port["name"].as_str().expect("name").to_owned());
        }
    }
    // The sidecar streams from the server in its Pod.
    let daemon_args: Vec<&str> = containers[1]["args"]
        .as_vec()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let server_args: Vec<&str> = containers[0]["args"]
        .as_vec()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let listen = server_args[server_args
        .iter()
        .position(|a| *a == "--listen")
        .expect("--listen")
        + 1];
    let port = listen.rsplit(':').next().expect("port");
    let server = daemon_args[daemon_args
        .iter()
        .position(|a| *a == "--server")
        .expect("--server")
        + 1];
    assert_eq!(server, format!("http://127.0.0.1:{port}"));

    let service = yaml(&deploy().join("kubernetes/service.yaml"));
    for port in service["spec"]["ports"].as_vec().expect("ports") {
        let target = port["targetPort"].as_str().expect("a named target port");
        assert!(
            port_names.contains(target),
            "the Service targets `{target}`"
        );
    }
    let secret = yaml(&deploy().join("kubernetes/secret.yaml"));
    let kustomization = yaml(&deploy().join("kubernetes/kustomization.yaml"));
    let resources: Vec<&str> = kustomization["resources"]
        .as_vec()
        .expect("resources")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for resource in &resources {
        assert!(
            deploy().join("kubernetes").join(resource).exists(),
            "{resource}"
        );
    }
    // Every key the containers read from the Secret is in it.
    for container in containers {
        for var in container["env"].as_vec().expect("env") {
            let reference = &var["valueFrom"]["secretKeyRef"];
            if let Some(key) = reference["key"].as_str() {
                assert_eq!(
                    reference["name"].as_str(),
                    secret["metadata"]["name"].as_str()
                );
                assert!(
                    secret["stringData"][key].as_str().is_some(),
                    "the Secret has no `{key}`"
                );
            }
        }
    }
}

#[test]
fn compose_services_and_prometheus_targets_name_each_other() {
    let compose = yaml(&deploy().join("compose.yaml"));
    let services = compose["services"].as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for name in ["postgres", "server", "daemon-1", "daemon-2", "prometheus"] {
        assert!(names.contains(name), "no service `{name}`");
    }
    for (name, service) in services {
        if let Some(depends) = service["depends_on"].as_hash() {
            for dependency in depends.keys().filter_map(Yaml::as_str) {
                assert!(
                    names.contains(dependency),
                    "{name:?} depends on `{dependency}`"
                );
            }
        }
    }
    // Each daemon streams from the server service, and Prometheus scrapes each monitoring listener.
    let prometheus = yaml(&deploy().join("prometheus.yml"));
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_vec()
        .expect("scrape configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_vec().cloned().unwrap_or_default())
        .flat_map(|config| config["targets"].as_vec().cloned().unwrap_or_default())
        .filter_map(|target| target.as_str().map(str::to_owned))
        .collect();
    for name in ["server", "daemon-1", "daemon-2"] {
        let env = &services[&Yaml::String(name.into())]["environment"];
        let listen = env["KIT_WEBHOOKS_METRICS_LISTEN"]
            .as_str()
            .expect("metrics listen");
        let port = listen.rsplit(':').next().expect("port");
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "{name} is not scraped: {targets:?}"
        );
        if name != "server" {
            assert_eq!(
                env["KIT_WEBHOOKS_SERVER"].as_str(),
                Some("http://server:7400")
            );
        }
    }
}

#[test]
fn the_dockerfile_builds_the_workspace_binaries_as_a_non_root_user() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let manifest = |package: &str| {
        let dir = match package {
            "kit-webhooks-server" => "server",
            "kit-webhooks-daemon" => "daemon",
            "kit-webhooks-client" => "client",
            other => panic!("`-p {other}` is not a workspace package"),
        };
        read(&common::root().join(dir).join("Cargo.toml"))
    };
    let build = dockerfile
        .lines()
        .find(|line| line.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let packages: Vec<&str> = build
        .split(" -p ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(packages.len(), 3, "{build}");
    let manifests: String = packages.iter().map(|p| manifest(p)).collect();
    let copied = dockerfile
        .lines()
        .find(|line| line.contains("cp target/release/"))
        .expect("the binaries copied out");
    for bin in copied
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
    {
        assert!(
            manifests.contains(&format!("name = \"{bin}\"")),
            "`{bin}` is not a binary of {packages:?}"
        );
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    for port in ["7400", "9400"] {
        assert!(
            dockerfile.contains(&format!("0.0.0.0:{port}")),
            "{port} listened on"
        );
    }
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("EXPOSE") && l.contains("7400") && l.contains("9400")));
    assert!(deploy().join("Dockerfile.dockerignore").exists());

    let docker_works = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|out| out.status.success());
    if !docker_works {
        eprintln!("no container runtime here: the image is not built");
        return;
    }
    let status = Command::new("docker")
        .args([
            "build",
            "-f",
            "deploy/Dockerfile",
            "-t",
            "kit-webhooks:test",
            ".",
        ])
        .current_dir(common::root())
        .status()
        .expect("docker build");
    assert!(status.success(), "docker build");
}

#[test]
fn the_systemd_units_verify() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|out| out.status.success()) {
        eprintln!("systemd-analyze is not installed: the units are not verified");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let units: Vec<PathBuf> = files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    assert_eq!(units.len(), 2, "{units:?}");
    let mut copies = Vec::new();
    for unit in &units {
        // The binaries as this build made them, where the units expect them installed.
        let text = read(unit);
        for bin in ["kit-webhooks-server", "kit-webhooks-daemon"] {
            if text.contains(&format!("ExecStart=/usr/local/bin/{bin}")) {
                assert!(common::workspace_bin(bin).exists());
            }
        }
        let text = text
            .replace(
                "/usr/local/bin/kit-webhooks-server",
                &common::workspace_bin("kit-webhooks-server")
                    .display()
                    .to_string(),
            )
            .replace(
                "/usr/local/bin/kit-webhooks-daemon",
                &common::workspace_bin("kit-webhooks-daemon")
                    .display()
                    .to_string(),
            );
        let copy = dir.path().join(unit.file_name().expect("name"));
        std::fs::write(&copy, text).expect("copy");
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
