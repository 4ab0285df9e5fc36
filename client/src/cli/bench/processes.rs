//! The system under test as separate processes (server, daemon), so each one's CPU time and peak memory can
//! be read from `/proc` while it runs.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// CPU seconds (user + system) and peak RSS (MiB) of a running process, where `/proc` tells.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
}

pub fn usage(pid: u32) -> Option<Usage> {
    let (_, cpu_seconds) = cpu(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())?;
    Some(Usage {
        cpu_seconds,
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

/// A process's resident memory now (MiB), where `/proc` tells.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())?;
    Some(kib / 1024.0)
}

/// The CPU seconds the server `pid`'s SQLite writer connection has used so far: sqlx runs each SQLite
/// connection on a thread of its own (`sqlx-sqlite-worker-N`, made as the connection opens), and the server
/// opens its writer first. On SQLite the writer's cycle is the serial path, and this thread's time is that
/// path's own work, which moves little between runs where deliveries/s scatter (docs/PERFORMANCE.md, round 2,
/// fifteenth step).
pub fn sqlite_writer_cpu_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let writer = tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|name| name.starts_with("sqlx-sqlite-wor"))
        })
        .min()?;
    cpu_of(&format!("/proc/{pid}/task/{writer}/stat")).map(|(_, seconds)| seconds)
}

/// The CPU seconds (user + system) process `pid` has used so far, where `/proc` tells.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu(pid).map(|(_, seconds)| seconds)
}

/// A process's command name and the CPU seconds (user + system) it has used so far, from `/proc/PID/stat`.
fn cpu(pid: u32) -> Option<(String, f64)> {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// The name and CPU seconds of the process or thread whose `stat` file is `path`.
fn cpu_of(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `PID (name) fields…`: utime and stime are the 12th and 13th fields after the parenthesised name.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
    Some((name, ticks / 100.0))
}

/// The whole machine's CPU time so far, from `/proc/stat`: (busy, all), in clock ticks over every core.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let times: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are the idle time.
    let all: u64 = times.iter().take(8).sum();
    let idle = times.get(3)? + times.get(4).copied().unwrap_or(0);
    Some((all.saturating_sub(idle), all))
}

/// What the whole machine's cores did since a reading of [`machine_ticks`].
pub struct MachineUse {
    /// The CPU seconds they were busy, every core's together.
    pub cpu_seconds: f64,
    /// How busy they were: 1.0 is every core all the time.
    pub busy: Option<f64>,
}

/// What the machine's cores did since `before` (from [`machine_ticks`]).
pub fn machine_since(before: Option<(u64, u64)>) -> Option<MachineUse> {
    let ((busy0, all0), (busy1, all1)) = before.zip(machine_ticks())?;
    let busy = busy1.saturating_sub(busy0);
    Some(MachineUse {
        // Clock ticks of 1/100 s (USER_HZ), as in `cpu_of`.
        cpu_seconds: busy as f64 / 100.0,
        busy: (all1 > all0).then(|| busy as f64 / (all1 - all0) as f64),
    })
}

/// CPU seconds used so far by this machine's PostgreSQL processes (every process named `postgres`: a
/// database on this machine is the only one whose work `/proc` shows).
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(cpu)
        .filter(|(name, _)| name == "postgres")
        .map(|(_, seconds)| seconds)
        .sum()
}

/// A child process that is killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary `name`: beside this executable (both in `target/<profile>/`, or one bin directory), else the
/// first on `PATH` (as after `cargo install`). The error says where it looked.
pub fn system_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.parent().context("executable directory")?.to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_binary(name, &beside, &path)
}

fn find_binary(name: &str, beside: &Path, path: &std::ffi::OsStr) -> anyhow::Result<PathBuf> {
    let mut looked = vec![beside.to_path_buf()];
    looked.extend(std::env::split_paths(path));
    if let Some(found) = looked
        .iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let places: Vec<String> = looked.iter().map(|dir| dir.display().to_string()).collect();
    bail!(
        "{name} not found beside this binary or on PATH (looked in {}); install it with \
         `cargo install --locked --path server` (or `--path daemon`), or build the workspace \
         (`cargo build --release --workspace`) and run target/release/kit-webhooks",
        places.join(", ")
    )
}

/// Starts the server on `database_url` and waits until it listens. Its keys are made beforehand
/// ([`create_keys`]), so it bootstraps none and writes no key file.
pub fn start_server(
    bin: &Path,
    listen: &str,
    database_url: &str,
    dir: &Path,
    secrets_key: &Path,
    whole_window: Option<u32>,
    metrics: Option<&str>,
) -> anyhow::Result<Process> {
    let mut command = Command::new(bin);
    command.args([
        "serve",
        "--listen",
        listen,
        "--database-url",
        database_url,
        "--allow-http",
    ]);
    // One webhook, and so one account, may hold this many leases: the daemon's whole window.
    if let Some(window) = whole_window {
        let window = window.to_string();
        command.args(["--max-in-flight-per-webhook", &window]);
        command.args(["--max-leases-per-account", &window]);
    }
    let child = command
        // Where the server would write a first start's keys: never into the bench's working directory.
        .arg("--key-file")
        .arg(dir.join("bench.keys"))
        .arg("--secrets-key-file")
        .arg(secrets_key)
        .args(metrics_listen(metrics))
        .env("RUST_LOG", log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut process = Process(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        if let Some(status) = process.0.try_wait()? {
            bail!("the server exited before listening on {listen} ({status})");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not start listening on {listen} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(process)
}

/// The secrets key of the bench's servers on `database_url`: one per database, kept in the temporary
/// directory and made with the server's `secrets generate-key` on first use, so that a database benchmarked
/// again (a PostgreSQL one, typically) meets the key its secrets are sealed with.
pub fn bench_secrets_key(bin: &Path, database_url: &str) -> anyhow::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    database_url.hash(&mut hasher);
    let path = std::env::temp_dir().join(format!(
        "kit-webhooks-bench-{:016x}.secrets-key",
        hasher.finish()
    ));
    if !path.exists() {
        let status = Command::new(bin)
            .args(["secrets", "generate-key", "--out"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .context("making a secrets key")?;
        if !status.success() {
            bail!("secrets generate-key failed");
        }
    }
    Ok(path)
}

/// Runs the server's hidden `seed-backlog` command on the database before the server starts.
pub fn seed_backlog(
    bin: &Path,
    database_url: &str,
    deliveries: usize,
    age: Duration,
) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .args([
            "seed-backlog",
            "--database-url",
            database_url,
            "--deliveries",
            &deliveries.to_string(),
            "--age",
            &format!("{}ms", age.as_millis()),
        ])
        .status()
        .context("seeding the backlog")?;
    if !status.success() {
        bail!("seed-backlog failed");
    }
    Ok(())
}

/// Makes keys of `role` with the server binary: one admin key per account of `accounts`, in order, or one
/// key bound to no account when `accounts` is empty. The first call migrates a new database.
pub fn create_keys(
    bin: &Path,
    database_url: &str,
    role: &str,
    accounts: &[String],
) -> anyhow::Result<Vec<String>> {
    // Hundreds of accounts per process: a process per key took most of a 2,000-account run's setup.
    const ACCOUNTS_PER_PROCESS: usize = 500;
    let run = |accounts: &[String]| -> anyhow::Result<Vec<String>> {
        let mut command = Command::new(bin);
        command.args([
            "keys",
            "create",
            "--database-url",
            database_url,
            "--role",
            role,
        ]);
        for account in accounts {
            command.args(["--account", account]);
        }
        let output = command
            .output()
            .with_context(|| format!("creating {role} keys"))?;
        if !output.status.success() {
            bail!(
                "keys create --role {role} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let keys: Vec<String> = String::from_utf8(output.stdout)?
            .lines()
            .map(str::to_owned)
            .collect();
        if keys.len() != accounts.len().max(1) {
            bail!(
                "keys create --role {role} printed {} keys for {} accounts",
                keys.len(),
                accounts.len()
            );
        }
        Ok(keys)
    };
    if accounts.is_empty() {
        return run(&[]);
    }
    let mut keys = Vec::with_capacity(accounts.len());
    for some in accounts.chunks(ACCOUNTS_PER_PROCESS) {
        keys.extend(run(some)?);
    }
    Ok(keys)
}

/// Starts the daemon with the run's window (`--concurrency`, `--prefetch`, `--max-connections-per-host`),
/// trusting `ca_file` besides the system's roots when given (`--tls`).
pub fn start_daemon(
    bin: &Path,
    server: &str,
    token: &str,
    args: &super::BenchArgs,
    metrics: Option<&str>,
    ca_file: Option<&Path>,
) -> anyhow::Result<Process> {
    let (max_in_flight, prefetch) = (args.concurrency, args.prefetch);
    let max_connections_per_host = args.max_connections_per_host;
    let mut command = Command::new(bin);
    if let Some(ca_file) = ca_file {
        command.arg("--ca-file").arg(ca_file);
    }
    if super::shape::one_account(args) {
        // The bench publishes for one account: its share is the whole daemon, as it was before shares. With
        // many accounts the daemon's own shares hold, as in production.
        command.args(["--max-in-flight-per-account", &max_in_flight.to_string()]);
    }
    let child = command
        .args(metrics_listen(metrics))
        .args([
            "--server",
            server,
            "--token",
            token,
            "--allow-network",
            "127.0.0.0/8",
        ])
        .args(["--max-in-flight", &max_in_flight.to_string()])
        .args(["--prefetch", &prefetch.to_string()])
        .args([
            "--max-connections-per-host",
            &max_connections_per_host.to_string(),
        ])
        .env("RUST_LOG", log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Process(child))
}

/// `--metrics-listen ADDR`, when the run serves metrics.
fn metrics_listen(addr: Option<&str>) -> Vec<String> {
    addr.map(|addr| vec!["--metrics-listen".to_owned(), addr.to_owned()])
        .unwrap_or_default()
}

/// Scrapes `/metrics` of each address once a second, as Prometheus would (more often than it usually does),
/// until dropped.
pub struct Scraper(Arc<AtomicBool>);

impl Scraper {
    pub fn start(addrs: Vec<String>) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for addr in &addrs {
                    scrape(addr);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Scraper(stop)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One `GET /metrics`, its answer read to the end and dropped; a failure is of no concern to the run.
fn scrape(addr: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// The log filter of the processes under test: `KIT_BENCH_LOG` when set (e.g. `debug` to see timings),
/// else warnings only.
fn log_filter() -> String {
    std::env::var("KIT_BENCH_LOG").unwrap_or_else(|_| "warn".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_is_found_beside_first_then_on_path() {
        let beside = tempfile::tempdir().expect("dir");
        let on_path = tempfile::tempdir().expect("dir");
        let name = "kit-webhooks-test-binary";
        std::fs::write(on_path.path().join(name), "").expect("write");
        let path = std::env::join_paths([on_path.path()]).expect("PATH");
        assert_eq!(
            find_binary(name, beside.path(), &path).expect("on PATH"),
            on_path.path().join(name)
        );
        std::fs::write(beside.path().join(name), "").expect("write");
        assert_eq!(
            find_binary(name, beside.path(), &path).expect("beside"),
            beside.path().join(name)
        );
        let missing = find_binary("nothing-by-this-name", beside.path(), &path)
            .expect_err("missing")
            .to_string();
        assert!(
            missing.contains("PATH") && missing.contains(&on_path.path().display().to_string()),
            "{missing}"
        );
    }
}
