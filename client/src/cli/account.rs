//! `kit-webhooks keys` and `kit-webhooks audit`: the account's own API keys and its audit log (admin key).

use futures::{StreamExt, TryStreamExt};
use kit_webhooks_client::{ApiKey, AuditEntry, AuditQuery};
use serde_json::{json, Value};

use super::{
    connection::{ConnectionArgs, KeyRole},
    output::{self, Format},
};
use crate::{AuditCommand, KeysCommand};

pub async fn keys(
    connection: &ConnectionArgs,
    format: Format,
    command: KeysCommand,
) -> anyhow::Result<()> {
    let client = connection.client(KeyRole::Admin).await?;
    match command {
        KeysCommand::List => {
            let keys: Vec<ApiKey> = client.list_api_keys().try_collect().await?;
            match format {
                Format::Json => {
                    output::print_json(&Value::Array(keys.iter().map(key_json).collect()))
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = keys
                        .iter()
                        .map(|key| {
                            vec![
                                key.id.clone(),
                                key.role.clone(),
                                output::time(&key.created_at),
                                output::time(&key.last_used_at),
                                output::time(&key.expires_at),
                                output::time(&key.revoked_at),
                            ]
                        })
                        .collect();
                    output::table(
                        &["ID", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED"],
                        &rows,
                    );
                }
            }
        }
        KeysCommand::Create { expires_in } => {
            let (key, secret) = client.create_api_key(expires_in.map(|d| d.0)).await?;
            match format {
                Format::Json => {
                    output::print_json(&json!({ "api_key": key_json(&key), "key": secret }))
                }
                Format::Table => {
                    eprintln!(
                        "created {} (expires {}); the key is shown only now:",
                        key.id,
                        output::time(&key.expires_at)
                    );
                    println!("{secret}");
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let key = client.revoke_api_key(&id).await?;
            match format {
                Format::Json => output::print_json(&key_json(&key)),
                Format::Table => {
                    println!("revoked {} at {}", key.id, output::time(&key.revoked_at))
                }
            }
        }
    }
    Ok(())
}

pub async fn audit(
    connection: &ConnectionArgs,
    format: Format,
    command: AuditCommand,
) -> anyhow::Result<()> {
    let client = connection.client(KeyRole::Admin).await?;
    let AuditCommand::List {
        target,
        since,
        until,
        limit,
    } = command;
    let query = AuditQuery {
        target_id: target,
        since,
        until,
    };
    let entries: Vec<AuditEntry> = client
        .list_audit_entries(query)
        .take(limit.unwrap_or(usize::MAX))
        .try_collect()
        .await?;
    match format {
        Format::Json => output::print_json(&Value::Array(entries.iter().map(entry_json).collect())),
        Format::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|entry| {
                    vec![
                        output::time(&entry.time),
                        entry.key_id.clone(),
                        entry.action.clone(),
                        entry.target_id.clone(),
                        entry.changes_json.clone(),
                    ]
                })
                .collect();
            output::table(&["TIME", "KEY", "ACTION", "TARGET", "CHANGES"], &rows);
        }
    }
    Ok(())
}

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "role": key.role,
        "account_id": key.account_id,
        "created_at": output::time_json(&key.created_at),
        "last_used_at": output::time_json(&key.last_used_at),
        "expires_at": output::time_json(&key.expires_at),
        "revoked_at": output::time_json(&key.revoked_at),
    })
}

fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "time": output::time_json(&entry.time),
        "key_id": entry.key_id,
        "action": entry.action,
        "target_id": entry.target_id,
        "changes": serde_json::from_str::<Value>(&entry.changes_json).unwrap_or(Value::Null),
    })
}
