//! What a run spent: the CPU counters read as publishing starts, and what they read once the last delivery
//! has arrived, less those (the whole machine's, the server's, the daemon's, PostgreSQL's), with the
//! processes' whole usage and what the receivers counted meanwhile.

use std::sync::atomic::Ordering;

use super::{
    figures, linger, processes, processes::Usage, receivers::Tally, target::Target, BenchArgs,
};

/// The CPU counters as publishing starts: what the run spent is what they read as it ends, less these.
pub struct Counters {
    server: Option<u32>,
    daemon: Option<u32>,
    machine: Option<(u64, u64)>,
    postgres_cpu: f64,
    server_cpu: Option<f64>,
    daemon_cpu: Option<f64>,
}

impl Counters {
    pub fn read(system: &Target) -> Counters {
        let server = system.server.as_ref().map(|p| p.0.id());
        let daemon = system.daemon.as_ref().map(|p| p.0.id());
        Counters {
            server,
            daemon,
            machine: processes::machine_ticks(),
            postgres_cpu: processes::postgres_cpu_seconds(),
            server_cpu: server.and_then(processes::cpu_seconds),
            daemon_cpu: daemon.and_then(processes::cpu_seconds),
        }
    }

    /// What the run spent since [`Counters::read`] (and the processes' whole usage), once the last delivery
    /// arrived; then lingers, with `--linger`.
    pub async fn spent(
        self,
        args: &BenchArgs,
        system: &Target,
        tally: &Tally,
        handshakes_before: u64,
    ) -> Spent {
        let since = |pid: Option<u32>, before: Option<f64>| {
            Some(pid.and_then(processes::cpu_seconds)? - before?)
        };
        let machine = processes::machine_since(self.machine);
        Spent {
            machine_busy: machine.as_ref().and_then(|m| m.busy),
            machine_cpu: machine.map(|m| m.cpu_seconds),
            server_cpu: since(self.server, self.server_cpu),
            daemon_cpu: since(self.daemon, self.daemon_cpu),
            postgres_cpu: (system.database == "postgresql")
                .then(|| processes::postgres_cpu_seconds() - self.postgres_cpu),
            server: self.server.and_then(processes::usage),
            server_writer_cpu: self
                .server
                .filter(|_| system.database == "sqlite")
                .and_then(processes::sqlite_writer_cpu_seconds),
            daemon: self.daemon.and_then(processes::usage),
            database: system.database.clone(),
            tls_handshakes: args
                .tls
                .then(|| tally.tls_handshakes.load(Ordering::Relaxed) - handshakes_before),
            daemon_idle: linger(args, system).await,
        }
    }
}

/// What the run cost, read as it ended.
pub struct Spent {
    pub machine_busy: Option<f64>,
    /// CPU seconds from the first publish to the last receipt: the whole machine's, the server's, the
    /// daemon's.
    pub machine_cpu: Option<f64>,
    pub server_cpu: Option<f64>,
    pub daemon_cpu: Option<f64>,
    pub postgres_cpu: Option<f64>,
    pub server: Option<Usage>,
    pub server_writer_cpu: Option<f64>,
    pub daemon: Option<Usage>,
    pub database: String,
    /// TLS handshakes the receivers completed from the first publish to the last receipt (`--tls`).
    pub tls_handshakes: Option<u64>,
    pub daemon_idle: Option<figures::Idle>,
}
