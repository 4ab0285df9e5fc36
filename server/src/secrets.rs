//! The keys that seal webhook signing secrets at rest (`core::sealing`): read from `--secrets-key-file`,
//! checked against the database at start, and rotated by `secrets rotate-key`.
//!
//! The database records the id of every key its secrets may be sealed with (`sealing_keys`). A server starts
//! only if it holds all of them, so a wrong or missing key stops it at once, with the ids to look for, rather
//! than failing at each delivery; and two replicas started with different keys cannot both seal.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::{
    core::sealing::{Keyring, SealingKey},
    store::{sealing::Reseal, Store},
};

/// The keyring a server runs with: the keys of `files` (the first seals), or, with none given, the key in
/// `default`, which a database with no sealed secret yet gets written for it. Every key the database
/// records must be held; the current one is recorded; secrets still in clear (a database from before they
/// were sealed) are sealed.
pub async fn open(store: &Store, files: &[PathBuf], default: &Path) -> anyhow::Result<Keyring> {
    let recorded = store.sealing_key_ids().await?;
    let ring = match files {
        [] if !default.exists() && recorded.is_empty() => {
            crate::keys::write_private(default, &SealingKey::generate())
                .with_context(|| format!("writing the secrets key file {}", default.display()))?;
            tracing::info!(file = %default.display(), "created the key that seals webhook secrets");
            read(&[default.to_path_buf()])?
        }
        [] => read(&[default.to_path_buf()]).with_context(|| {
            format!("the database's secrets are sealed with key {}; give its file with --secrets-key-file", recorded.join(", "))
        })?,
        files => read(files)?,
    };
    check_holds(&ring, &recorded)?;
    let inserted = store.register_sealing_key(ring.current_id()).await?;
    // Another replica may have recorded its own key between the read above and this insert.
    if let Err(err) = check_holds(&ring, &store.sealing_key_ids().await?) {
        if inserted {
            store.unregister_sealing_key(ring.current_id()).await?;
        }
        return Err(err);
    }
    let sealed = reseal(store, &ring, Reseal::Clear).await?;
    if sealed > 0 {
        tracing::info!(
            webhooks = sealed,
            key = ring.current_id(),
            "sealed signing secrets stored in clear"
        );
    }
    Ok(ring)
}

/// `secrets rotate-key`: reseals every secret with the key in `new_file`, opening them with it or the keys
/// of `old_files`, then records that the old keys seal nothing any more. Safe while servers run, as long as
/// every one of them holds the new key (docs/SECURITY.md gives the order). Returns how many webhooks were
/// resealed.
pub async fn rotate_key(
    store: &Store,
    new_file: &Path,
    old_files: &[PathBuf],
) -> anyhow::Result<u64> {
    let mut files = vec![new_file.to_path_buf()];
    files.extend_from_slice(old_files);
    let ring = read(&files)?;
    check_holds(&ring, &store.sealing_key_ids().await?)?;
    store.register_sealing_key(ring.current_id()).await?;
    let resealed = reseal(store, &ring, Reseal::NotCurrent).await?;
    for id in store.sealing_key_ids().await? {
        if id != ring.current_id() {
            store.unregister_sealing_key(&id).await?;
        }
    }
    Ok(resealed)
}

/// Reseals what `which` selects, in passes over every webhook until a pass finds nothing left (a secret
/// its admin rotated during a pass is taken by the next one).
async fn reseal(store: &Store, ring: &Keyring, which: Reseal) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let (mut after, mut wanted) = (String::new(), 0);
        loop {
            let batch = store.reseal_batch(ring, which, &after).await?;
            wanted += batch.wanted;
            total += batch.rewritten;
            match batch.last {
                Some(last) => after = last,
                None => break,
            }
        }
        if wanted == 0 {
            return Ok(total);
        }
    }
}

/// The keyring of `files`: the first seals, every one opens.
fn read(files: &[PathBuf]) -> anyhow::Result<Keyring> {
    let mut keys = files.iter().map(|path| {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secrets key file {}", path.display()))?;
        SealingKey::parse(&text)
            .map_err(|err| anyhow::anyhow!("the secrets key file {} {err}", path.display()))
    });
    let current = keys.next().context("no secrets key file")??;
    Ok(Keyring::new(current, keys.collect::<anyhow::Result<_>>()?))
}

/// Fails unless `ring` holds every key of `recorded`.
fn check_holds(ring: &Keyring, recorded: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&str> = recorded
        .iter()
        .map(String::as_str)
        .filter(|id| ring.ids().all(|held| held != *id))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the database's secrets are sealed with key {}, and the secrets key file(s) hold key {} only: \
         start with the right --secrets-key-file",
        missing.join(", "),
        ring.ids().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
