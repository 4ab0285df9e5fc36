//! Where the CLI connects and with which key. A new user types neither: the server defaults to the local
//! one, and the key comes from the key file the server wrote on its first start (`kit-webhooks.keys` in the
//! working directory), the admin key for webhook commands and the publisher key for event commands.

use std::path::PathBuf;

use anyhow::{bail, Context};
use kit_webhooks::key_file;
use kit_webhooks_client::Client;

/// Which key of the key file a command needs.
#[derive(Debug, Clone, Copy)]
pub enum KeyRole {
    Admin,
    Publisher,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "KIT_WEBHOOKS_SERVER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub server: String,
    /// API key [default: from the key file].
    #[arg(
        long,
        global = true,
        env = "KIT_WEBHOOKS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The key file the server wrote on its first start.
    #[arg(long, global = true, env = "KIT_WEBHOOKS_KEY_FILE", default_value = key_file::DEFAULT_FILE_NAME)]
    pub key_file: PathBuf,
}

impl ConnectionArgs {
    pub async fn client(&self, role: KeyRole) -> anyhow::Result<Client> {
        let token = self.token(role)?;
        Ok(Client::connect(&self.server, &token).await?)
    }

    fn token(&self, role: KeyRole) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let text = match std::fs::read_to_string(&self.key_file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "no API key: pass --token, set KIT_WEBHOOKS_TOKEN, or run where the server wrote {}",
                self.key_file.display()
            ),
            Err(err) => return Err(err).with_context(|| format!("reading {}", self.key_file.display())),
        };
        let name = match role {
            KeyRole::Admin => key_file::ADMIN_KEY,
            KeyRole::Publisher => key_file::PUBLISHER_KEY,
        };
        key_file::read(&text, name)
            .with_context(|| format!("{} has no {name}", self.key_file.display()))
    }
}
