//! API key management: `keys create`, and the keys the first start writes for a new user.

use std::{io::Write, path::Path};

use anyhow::Context;

use crate::{
    core::{secret, Role},
    store::Store,
};

/// The account the first start's admin key belongs to.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Creates and stores a key of `role` (bound to `account` for admins); returns the key, shown only now.
pub async fn create(store: &Store, role: Role, account: Option<&str>) -> anyhow::Result<String> {
    let account = match (role, account) {
        (Role::Admin, None) => anyhow::bail!("--account is required for admin keys"),
        (Role::Admin, Some(account)) => {
            crate::core::event::validate_account_id("account", account)?;
            Some(account.to_owned())
        }
        (_, Some(_)) => anyhow::bail!("--account applies to admin keys only"),
        (_, None) => None,
    };
    let key = secret::new_api_key();
    store
        .insert_api_key(secret::hash_api_key(&key), role, account)
        .await?;
    Ok(key)
}

/// On an empty database, creates an admin key for account `default` and a publisher key, and writes both to
/// `path`, readable by its owner only. Returns whether it did.
pub async fn bootstrap(store: &Store, path: &Path) -> anyhow::Result<bool> {
    if store.count_api_keys().await? > 0 {
        return Ok(false);
    }
    let admin = create(store, Role::Admin, Some(DEFAULT_ACCOUNT)).await?;
    let publisher = create(store, Role::Publisher, None).await?;
    let text = kit_webhooks::key_file::render(DEFAULT_ACCOUNT, &admin, &publisher);
    write_private(path, &text)
        .with_context(|| format!("writing the key file {}", path.display()))?;
    Ok(true)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // `mode` applies only to a file it creates: one that existed keeps its mode unless it is set here.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
