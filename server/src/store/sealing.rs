//! The sealing keys a database's secrets are under (ids only, `sealing_keys`), and resealing what webhooks
//! keep sealed (their secrets and headers) in batches: the first start's sealing of clear secrets and `secrets rotate-key` both go through
//! [`Store::reseal_batch`].

use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::{entity::webhook, Store};
use crate::core::{
    sealing::{sealed_with, Keyring},
    time, Error,
};

/// Webhooks read and rewritten per batch.
const RESEAL_BATCH: u64 = 200;

/// Which stored secrets a reseal rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only those still in clear (a database from before secrets were sealed).
    Clear,
    /// Every one not sealed with the keyring's current key (a key rotation).
    NotCurrent,
}

impl Reseal {
    fn wants(self, ring: &Keyring, stored: &str) -> bool {
        match self {
            Reseal::Clear => sealed_with(stored).is_none(),
            Reseal::NotCurrent => sealed_with(stored) != Some(ring.current_id()),
        }
    }
}

/// What one [`Store::reseal_batch`] did.
#[derive(Debug, Default)]
pub struct ResealedBatch {
    /// The last webhook id read, to go on after; `None` when the batch reached the end.
    pub last: Option<String>,
    /// Webhooks holding a secret to reseal.
    pub wanted: u64,
    /// Those rewritten.
    pub rewritten: u64,
}

impl Store {
    /// The ids of the keys the database's secrets may be sealed with.
    pub async fn sealing_key_ids(&self) -> Result<Vec<String>, DbErr> {
        let rows = self
            .writer()
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT id FROM sealing_keys ORDER BY id",
            ))
            .await?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "id"))
            .collect()
    }

    /// Records key `id` as one the secrets may be sealed with; `true` if it was not recorded yet.
    pub async fn register_sealing_key(&self, id: &str) -> Result<bool, DbErr> {
        let insert = Query::insert()
            .into_table("sealing_keys")
            .columns(["id", "created_at"])
            .values_panic([id.into(), time::now_ms().into()])
            .on_conflict(OnConflict::column("id").do_nothing().to_owned())
            .to_owned();
        let result = self.writer().execute(&insert).await?;
        Ok(result.rows_affected() == 1)
    }

    /// Forgets key `id`: no secret is sealed with it any more.
    pub async fn unregister_sealing_key(&self, id: &str) -> Result<(), DbErr> {
        let delete = Query::delete()
            .from_table("sealing_keys")
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        self.writer().execute(&delete).await?;
        Ok(())
    }

    /// Reseals with `ring`'s current key what `which` selects among the secrets of the webhooks after id
    /// `after` (at most a batch of them). A row changed meanwhile (a secret rotated by its admin) is left as
    /// it is, since its update names the values it read: it counts as `wanted` but not `rewritten`, and a
    /// later pass takes it.
    pub async fn reseal_batch(
        &self,
        ring: &Keyring,
        which: Reseal,
        after: &str,
    ) -> Result<ResealedBatch, Error> {
        let rows: Vec<(String, String, Option<String>, String)> = webhook::Entity::find()
            .select_only()
            .columns([
                webhook::Column::Id,
                webhook::Column::Secret,
                webhook::Column::PreviousSecret,
                webhook::Column::Headers,
            ])
            .filter(webhook::Column::Id.gt(after))
            .order_by_asc(webhook::Column::Id)
            .limit(RESEAL_BATCH)
            .into_tuple()
            .all(self.writer())
            .await?;
        let mut batch = ResealedBatch {
            last: (rows.len() as u64 == RESEAL_BATCH).then(|| rows[rows.len() - 1].0.clone()),
            wanted: 0,
            rewritten: 0,
        };
        for (id, secret, previous, headers) in &rows {
            let wants_previous = previous.as_deref().is_some_and(|p| which.wants(ring, p));
            let wants_headers = !headers.is_empty() && which.wants(ring, headers);
            if !which.wants(ring, secret) && !wants_previous && !wants_headers {
                continue;
            }
            batch.wanted += 1;
            let reseal = |stored: &str| -> Result<String, Error> {
                if !which.wants(ring, stored) {
                    return Ok(stored.to_owned());
                }
                let clear = match sealed_with(stored) {
                    None => stored.to_owned(),
                    Some(_) => ring.open(id, stored)?,
                };
                Ok(ring.seal(id, &clear))
            };
            let new_previous = previous.as_deref().map(reseal).transpose()?;
            let new_headers = match headers.is_empty() {
                true => String::new(),
                false => reseal(headers)?,
            };
            let mut update = webhook::Entity::update_many()
                .col_expr(webhook::Column::Secret, Expr::value(reseal(secret)?))
                .col_expr(webhook::Column::PreviousSecret, Expr::value(new_previous))
                .col_expr(webhook::Column::Headers, Expr::value(new_headers))
                .filter(webhook::Column::Id.eq(id.as_str()))
                .filter(webhook::Column::Secret.eq(secret.as_str()))
                .filter(webhook::Column::Headers.eq(headers.as_str()));
            update = match previous {
                Some(previous) => {
                    update.filter(webhook::Column::PreviousSecret.eq(previous.as_str()))
                }
                None => update.filter(webhook::Column::PreviousSecret.is_null()),
            };
            batch.rewritten += update.exec(self.writer()).await?.rows_affected;
        }
        Ok(batch)
    }
}
