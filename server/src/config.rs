//! Server configuration: what `serve` reads from flags and environment, with DESIGN.md's defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{core::event::DEFAULT_MAX_PAYLOAD_BYTES, store::DEFAULT_DATABASE_URL};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Admit `http://` webhook URLs (development only).
    pub allow_http: bool,
    pub max_payload_bytes: usize,
    /// Where the first start writes its keys; `None` for beside the SQLite file (or the working directory).
    pub key_file: Option<PathBuf>,
    /// The time limit of one delivery request.
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7400))),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            allow_http: false,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            key_file: None,
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl Config {
    /// The key file: as configured, else beside the SQLite database (`x.db` → `x.keys`), else
    /// `kit-webhooks.keys` in the working directory.
    pub fn key_file_path(&self) -> PathBuf {
        if let Some(path) = &self.key_file {
            return path.clone();
        }
        match crate::store::sqlite_path(&self.database_url) {
            Some(db) => db.with_extension("keys"),
            None => PathBuf::from("kit-webhooks.keys"),
        }
    }
}
