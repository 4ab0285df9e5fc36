//! The system under test: a server and a daemon started for the run, or a deployment given by its URL.

use anyhow::{bail, Context};

use super::{processes, progress, shape, BenchArgs};

/// The system under test: started here (server and daemon processes), or an existing deployment.
pub struct Target {
    pub server_url: String,
    /// The accounts events are published to, each with an admin key of its own.
    pub accounts: Vec<(String, String)>,
    pub publisher_key: String,
    // Fields drop in this order: the daemon is stopped before the server it streams from, so it does not
    // log a lost stream at the end of every run.
    pub daemon: Option<processes::Process>,
    pub server: Option<processes::Process>,
    pub database: String,
    /// With `--metrics`: scrapes the started processes until the run ends (held, not read: dropping it stops).
    pub _scraper: Option<processes::Scraper>,
}

impl Target {
    /// `kit-webhooks-server` and `kit-webhooks-daemon` (beside this binary, or on `PATH`), on `--database-url` or a
    /// SQLite file in `dir`.
    pub fn start(
        args: &BenchArgs,
        accounts: usize,
        dir: &std::path::Path,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Target> {
        let database_url = args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
        let free_address = || -> anyhow::Result<String> {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(probe.local_addr()?.to_string())
        };
        let server_bin = processes::system_binary("kit-webhooks-server")?;
        let daemon_bin = processes::system_binary("kit-webhooks-daemon")?;
        if args.backlog > 0 {
            progress::note("seeding the backlog");
            processes::seed_backlog(&server_bin, &database_url, args.backlog, args.backlog_age)?;
        }
        // An account of this run's own, so that on a database used before (PostgreSQL's, typically) the
        // events fan out to this run's webhooks only, not to earlier runs' long-gone receivers.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let run = format!("bench-{}", since_epoch.as_millis());
        if accounts > 1 {
            progress::note(&format!("making {accounts} accounts' admin keys"));
        }
        let names: Vec<String> = match accounts {
            1 => vec![run],
            _ => (0..accounts).map(|n| format!("{run}-{n}")).collect(),
        };
        let keys = processes::create_keys(&server_bin, &database_url, "admin", &names)?;
        let accounts: Vec<(String, String)> = names.into_iter().zip(keys).collect();
        let key = |role| -> anyhow::Result<String> {
            let mut keys = processes::create_keys(&server_bin, &database_url, role, &[])?;
            keys.pop().context("no key printed")
        };
        let publisher_key = key("publisher")?;
        let daemon_key = key("daemon")?;
        let secrets_key = match &args.secrets_key_file {
            Some(path) => path.clone(),
            None => processes::bench_secrets_key(&server_bin, &database_url)?,
        };
        // Chosen just before the server binds them: between the two, another process may be given the same
        // free port (then the bench would talk to it), and the keys and the backlog take seconds to make.
        let listen = free_address()?;
        let metrics = match args.metrics {
            true => Some((free_address()?, free_address()?)),
            false => None,
        };
        let server = processes::start_server(
            &server_bin,
            &listen,
            &database_url,
            dir,
            &secrets_key,
            // One webhook and its account may use the daemon's whole window (the fan-out 1 runs need it); with
            // many accounts the server's defaults hold, as in production.
            shape::one_account(args).then(|| (args.concurrency + args.prefetch).max(16)),
            metrics.as_ref().map(|(server, _)| server.as_str()),
        )?;
        let server_url = format!("http://{listen}");
        let daemon = processes::start_daemon(
            &daemon_bin,
            &server_url,
            &daemon_key,
            args,
            metrics.as_ref().map(|(_, daemon)| daemon.as_str()),
            ca_file,
        )?;
        let scraper =
            metrics.map(|(server, daemon)| processes::Scraper::start(vec![server, daemon]));
        Ok(Target {
            server_url,
            accounts,
            publisher_key,
            server: Some(server),
            daemon: Some(daemon),
            _scraper: scraper,
            database: if database_url.starts_with("postgres") {
                "postgresql"
            } else {
                "sqlite"
            }
            .into(),
        })
    }

    /// A running deployment (`--target`): its daemons must be able to reach this machine's loopback
    /// receivers, and its CPU and memory are not measured.
    pub fn existing(server_url: &str, args: &BenchArgs) -> anyhow::Result<Target> {
        if args.backlog > 0
            || args.database_url.is_some()
            || args.metrics
            || args.tls
            || !shape::one_account(args)
        {
            bail!(
                "--backlog, --database-url, --metrics, --tls, --accounts and --slow-accounts apply to a system \
                 the bench starts, not to --target (its daemons would have to trust the bench's CA; its accounts' \
                 admin keys are made with the server binary)"
            );
        }
        let (Some(admin_key), Some(publisher_key)) = (&args.admin_key, &args.publisher_key) else {
            bail!("--target needs --admin-key and --publisher-key");
        };
        Ok(Target {
            server_url: server_url.to_owned(),
            accounts: vec![(args.account.clone(), admin_key.clone())],
            publisher_key: publisher_key.clone(),
            server: None,
            daemon: None,
            _scraper: None,
            database: "deployment".into(),
        })
    }
}
