//! API key management: creating keys (`keys create`, `CreateApiKey`), and the keys the first start writes
//! for a new user.

use std::{io::Write, path::Path};

use anyhow::Context;

use crate::{
    core::{id, page::PageRequest, secret, time, Role},
    store::{entity::api_key, keys::new_api_key_row, Store},
};

/// The account the first start's admin key belongs to.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Who the server's command line is in the audit log.
pub const CLI: &str = "cli";

/// Creates and stores a key of `role` (bound to `account` for admins), working until `expires_at` if given,
/// recorded as made by key `by`; returns its row and the key, shown only now.
pub async fn create(
    store: &Store,
    role: Role,
    account: Option<&str>,
    expires_at: Option<i64>,
    by: &str,
) -> anyhow::Result<(api_key::Model, String)> {
    let mut created = create_many(store, role, &[account], expires_at, by).await?;
    created
        .pop()
        .context("the database stored no key and reported no error")
}

/// [`create`] for each of `accounts` (`None` for a key of no account), in their order: every one is checked
/// before any key is made, and the keys are stored in one transaction, so that a bad account or a failed
/// write anywhere makes none of them.
pub async fn create_many(
    store: &Store,
    role: Role,
    accounts: &[Option<&str>],
    expires_at: Option<i64>,
    by: &str,
) -> anyhow::Result<Vec<(api_key::Model, String)>> {
    let mut rows = Vec::with_capacity(accounts.len());
    let mut keys = Vec::with_capacity(accounts.len());
    for account in accounts {
        let account = match (role, account) {
            (Role::Admin, None) => anyhow::bail!("--account is required for admin keys"),
            (Role::Admin, Some(account)) => {
                crate::core::event::validate_account_id("account", account)?;
                Some((*account).to_owned())
            }
            (_, Some(_)) => anyhow::bail!("--account applies to admin keys only"),
            (_, None) => None,
        };
        let id = id::new(id::Kind::ApiKey);
        let key = secret::new_api_key(&id);
        rows.push(new_api_key_row(
            id,
            secret::hash_api_key(&key),
            role,
            account,
            expires_at,
        ));
        keys.push(key);
    }
    let rows = store.insert_api_keys(rows, by).await?;
    Ok(rows.into_iter().zip(keys).collect())
}

/// On an empty database, creates an admin key for account `default` and a publisher key, and writes both to
/// `path`, readable by its owner only. Returns whether it did.
pub async fn bootstrap(store: &Store, path: &Path) -> anyhow::Result<bool> {
    if store.count_api_keys().await? > 0 {
        return Ok(false);
    }
    let (_, admin) = create(store, Role::Admin, Some(DEFAULT_ACCOUNT), None, CLI).await?;
    let (_, publisher) = create(store, Role::Publisher, None, None, CLI).await?;
    let text = kit_webhooks::key_file::render(DEFAULT_ACCOUNT, &admin, &publisher);
    write_private(path, &text)
        .with_context(|| format!("writing the key file {}", path.display()))?;
    Ok(true)
}

/// Writes `text` to `path`, readable by its owner only (the key files).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
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

/// Every key, oldest first (`keys list`).
pub async fn list_all(store: &Store) -> anyhow::Result<Vec<api_key::Model>> {
    let mut rows = Vec::new();
    let mut page = PageRequest {
        limit: crate::core::page::MAX_PAGE_SIZE,
        after: None,
    };
    loop {
        let batch = store.list_api_keys(None, &page).await?;
        let more = batch.len() as u64 > page.limit;
        rows.extend(batch.into_iter().take(page.limit as usize));
        if !more {
            return Ok(rows);
        }
        page.after = rows.last().map(|row| row.id.clone());
    }
}

/// `keys`' lines under a header: id, role, account, created, last used, expiry and revocation (`-` for none).
pub fn table(keys: &[api_key::Model]) -> String {
    let when = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), time::rfc3339);
    let mut text = format!(
        "{:<32} {:<9} {:<16} {:<24} {:<24} {:<24} {}\n",
        "ID", "ROLE", "ACCOUNT", "CREATED", "LAST USED", "EXPIRES", "REVOKED"
    );
    for key in keys {
        text.push_str(&format!(
            "{:<32} {:<9} {:<16} {:<24} {:<24} {:<24} {}\n",
            key.id,
            sea_orm::ActiveEnum::to_value(&key.role),
            key.account_id.as_deref().unwrap_or("-"),
            when(Some(key.created_at)),
            when(key.last_used_at),
            when(key.expires_at),
            when(key.revoked_at),
        ));
    }
    text
}
