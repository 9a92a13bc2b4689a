//! Objects: one row per object of any family, keyed by collection, owner and id, listed in
//! creation order with cursors and simple filters, updated by compare-and-set.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, ids};

/// One stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub collection: String,
    /// Whose it is (an API key's tenant); every query is scoped to one owner.
    pub owner: String,
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// 1 at creation, bumped by every update.
    pub version: i64,
    /// A lifecycle status the family filters on (`validating`, `completed`, ...).
    pub status: Option<String>,
    /// String pairs (OpenAI's `metadata`), filterable by equality.
    pub metadata: BTreeMap<String, String>,
    /// The family's own fields: JSON text the store keeps as it is given.
    pub body: String,
}

/// What a new object starts with.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub collection: String,
    pub owner: String,
    /// The id's prefix (`file-`); the store makes the rest.
    pub id_prefix: String,
    pub created_at: i64,
    pub status: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub body: String,
    /// The request (by id) recording it: the blobs pending on that request are kept in the
    /// same transaction, as the object may name them.
    pub keeps: Option<String>,
}

/// Which object: its collection, owner and id.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub collection: &'a str,
    pub owner: &'a str,
    pub id: &'a str,
}

impl Key<'_> {
    /// Whether any part holds a NUL character: no stored object's does (see `check_text`).
    fn has_nul(&self) -> bool {
        [self.collection, self.owner, self.id]
            .iter()
            .any(|t| t.contains('\0'))
    }
}

/// A new state for an object.
#[derive(Debug, Clone)]
pub struct Change {
    pub status: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub body: String,
    /// Compare-and-set: apply only if the object is at this version.
    pub expect_version: Option<i64>,
    /// As [`NewObject::keeps`].
    pub keeps: Option<String>,
}

/// Listing order (by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// A listing: `limit` objects of one owner's collection after (or before) a cursor, filtered.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub collection: String,
    pub owner: String,
    pub limit: u32,
    pub order: Order,
    /// Objects that come after this id in `order`.
    pub after: Option<String>,
    /// Objects that come before this id in `order`.
    pub before: Option<String>,
    pub status: Option<String>,
    /// Metadata equality filters, all of which must hold.
    pub metadata: Vec<(String, String)>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<Object>,
    pub has_more: bool,
}

const COLUMNS: &str = "collection, owner, id, created_at, version, status, metadata, body";

fn metadata_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// Refuses NUL characters up front, the same on SQLite as on PostgreSQL (which cannot
/// store them), naming the field.
fn check_text<'a>(
    fields: impl IntoIterator<Item = (&'static str, &'a str)>,
) -> Result<(), StoreError> {
    match fields.into_iter().find(|(_, text)| text.contains('\0')) {
        Some((field, _)) => Err(StoreError::NulCharacter(field)),
        None => Ok(()),
    }
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), StoreError> {
    check_text(
        m.iter()
            .flat_map(|(k, v)| [("metadata", k.as_str()), ("metadata", v.as_str())]),
    )
}

fn object(row: &AnyRow) -> Result<Object, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let metadata: String = row.try_get("metadata")?;
    Ok(Object {
        collection: row.try_get("collection")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?,
        body: row.try_get("body")?,
        id,
    })
}

impl Store {
    /// Creates an object with a fresh id; it lists after every object created before it.
    pub async fn create(&self, new: NewObject) -> Result<Object, StoreError> {
        let id = ids::new_id(&new.id_prefix);
        self.insert(new, id, false).await
    }

    /// Creates the object `id` (the caller's id, not a fresh one) or replaces its status,
    /// metadata and body if it exists; a replaced object keeps its creation time and its
    /// place in listings.
    pub async fn put(&self, new: NewObject, id: &str) -> Result<Object, StoreError> {
        self.insert(new, id.to_owned(), true).await
    }

    async fn insert(&self, new: NewObject, id: String, upsert: bool) -> Result<Object, StoreError> {
        check_text([
            ("collection", new.collection.as_str()),
            ("owner", &new.owner),
            ("id", &id),
            ("status", new.status.as_deref().unwrap_or("")),
            ("body", &new.body),
        ])?;
        check_metadata(&new.metadata)?;
        let conflict = if upsert {
            " ON CONFLICT (collection, owner, id) DO UPDATE SET version = objects.version + 1, \
             status = excluded.status, metadata = excluded.metadata, body = excluded.body"
        } else {
            ""
        };
        let insert = self.sql(&format!(
            "INSERT INTO objects (collection, owner, id, seq, created_at, version, status, metadata, body) \
             VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?){conflict} RETURNING created_at, version"
        ));
        let metadata = metadata_json(&new.metadata);
        let mut tx = self.pool.begin().await?;
        let seq = self.next_seq(&mut tx, "objects").await?;
        let row = sqlx::query(insert.clone())
            .bind(&new.collection)
            .bind(&new.owner)
            .bind(&id)
            .bind(seq)
            .bind(new.created_at)
            .bind(new.status.clone())
            .bind(&metadata)
            .bind(&new.body)
            .fetch_one(&mut *tx)
            .await?;
        let key = Key {
            collection: &new.collection,
            owner: &new.owner,
            id: &id,
        };
        if upsert {
            self.clear_metadata(&mut tx, key).await?;
        }
        self.put_metadata(&mut tx, key, &new.metadata).await?;
        if let Some(request) = &new.keeps {
            self.keep_request_blobs(&mut tx, request).await?;
        }
        tx.commit().await?;
        Ok(Object {
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
            collection: new.collection,
            owner: new.owner,
            id,
            status: new.status,
            metadata: new.metadata,
            body: new.body,
        })
    }

    /// The object, if it exists and is the owner's.
    pub async fn get(&self, key: Key<'_>) -> Result<Option<Object>, StoreError> {
        if key.has_nul() {
            return Ok(None);
        }
        let q = self.sql(&format!(
            "SELECT {COLUMNS} FROM objects WHERE collection = ? AND owner = ? AND id = ?"
        ));
        let row = sqlx::query(q.clone())
            .bind(key.collection)
            .bind(key.owner)
            .bind(key.id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(object).transpose()
    }

    /// Replaces the object's status, metadata and body (at `expect_version` only, when
    /// given) and returns it at its new version.
    pub async fn update(&self, key: Key<'_>, change: Change) -> Result<Object, StoreError> {
        check_text([
            ("status", change.status.as_deref().unwrap_or("")),
            ("body", &change.body),
        ])?;
        check_metadata(&change.metadata)?;
        if key.has_nul() {
            return Err(StoreError::NotFound {
                collection: key.collection.to_owned(),
                id: key.id.to_owned(),
            });
        }
        let mut tx = self.pool.begin().await?;
        let base = "UPDATE objects SET version = version + 1, status = ?, metadata = ?, body = ? \
                    WHERE collection = ? AND owner = ? AND id = ?";
        let q = match change.expect_version {
            Some(_) => self.sql(&format!("{base} AND version = ?")),
            None => self.sql(base),
        };
        let mut query = sqlx::query(q.clone())
            .bind(change.status.clone())
            .bind(metadata_json(&change.metadata))
            .bind(change.body.clone())
            .bind(key.collection)
            .bind(key.owner)
            .bind(key.id);
        if let Some(v) = change.expect_version {
            query = query.bind(v);
        }
        let updated = query.execute(&mut *tx).await?.rows_affected();
        if updated == 0 {
            drop(tx);
            return Err(match (self.get(key).await?, change.expect_version) {
                (Some(now), Some(expected)) => StoreError::Conflict {
                    id: key.id.to_owned(),
                    expected,
                    actual: now.version,
                },
                _ => StoreError::NotFound {
                    collection: key.collection.to_owned(),
                    id: key.id.to_owned(),
                },
            });
        }
        self.clear_metadata(&mut tx, key).await?;
        self.put_metadata(&mut tx, key, &change.metadata).await?;
        if let Some(request) = &change.keeps {
            self.keep_request_blobs(&mut tx, request).await?;
        }
        tx.commit().await?;
        self.get(key).await?.ok_or_else(|| StoreError::NotFound {
            collection: key.collection.to_owned(),
            id: key.id.to_owned(),
        })
    }

    /// Deletes the object; false if there was none.
    pub async fn delete(&self, key: Key<'_>) -> Result<bool, StoreError> {
        if key.has_nul() {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        // The object row first, as `update` locks it: the two never wait on each other.
        for table in ["objects", "object_metadata"] {
            let q = self.sql(&format!(
                "DELETE FROM {table} WHERE collection = ? AND owner = ? AND id = ?"
            ));
            let n = sqlx::query(q.clone())
                .bind(key.collection)
                .bind(key.owner)
                .bind(key.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if table == "objects" && n == 0 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One page of a listing, newest or oldest first, from a cursor, filtered.
    pub async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        for cursor in [&q.after, &q.before].into_iter().flatten() {
            if cursor.contains('\0') {
                return Err(StoreError::UnknownCursor(cursor.clone()));
            }
        }
        let filters = [&q.collection, &q.owner]
            .into_iter()
            .chain(&q.status)
            .chain(q.metadata.iter().flat_map(|(k, v)| [k, v]));
        if filters.into_iter().any(|t| t.contains('\0')) {
            // Nothing stored has a NUL character: nothing matches.
            return Ok(Page {
                objects: Vec::new(),
                has_more: false,
            });
        }
        let key = |id: &str| -> (String, String, String) {
            (q.collection.clone(), q.owner.clone(), id.to_owned())
        };
        let after = match &q.after {
            Some(id) => Some(self.seq_of(key(id)).await?),
            None => None,
        };
        let before = match &q.before {
            Some(id) => Some(self.seq_of(key(id)).await?),
            None => None,
        };
        let (later, earlier) = match q.order {
            Order::Asc => (">", "<"),
            Order::Desc => ("<", ">"),
        };
        // A page `before` a cursor is the one right next to it: read from the cursor away
        // (the other way round), then turn the page back into the listing's order.
        let backwards = before.is_some() && after.is_none();
        let direction = match (q.order, backwards) {
            (Order::Asc, false) | (Order::Desc, true) => "ASC",
            (Order::Desc, false) | (Order::Asc, true) => "DESC",
        };
        let mut sql =
            format!("SELECT {COLUMNS} FROM objects o WHERE o.collection = ? AND o.owner = ?");
        if q.status.is_some() {
            sql.push_str(" AND o.status = ?");
        }
        for _ in &q.metadata {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM object_metadata m WHERE m.collection = o.collection \
                 AND m.owner = o.owner AND m.id = o.id AND m.key = ? AND m.value = ?)",
            );
        }
        if after.is_some() {
            sql.push_str(&format!(" AND o.seq {later} ?"));
        }
        if before.is_some() {
            sql.push_str(&format!(" AND o.seq {earlier} ?"));
        }
        sql.push_str(&format!(" ORDER BY o.seq {direction} LIMIT ?"));
        let sql = self.sql(&sql);
        let mut query = sqlx::query(sql.clone()).bind(&q.collection).bind(&q.owner);
        if let Some(s) = &q.status {
            query = query.bind(s);
        }
        for (k, v) in &q.metadata {
            query = query.bind(k).bind(v);
        }
        if let Some(s) = after {
            query = query.bind(s);
        }
        if let Some(s) = before {
            query = query.bind(s);
        }
        let rows = query
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut objects = rows.iter().map(object).collect::<Result<Vec<_>, _>>()?;
        let has_more = objects.len() > q.limit as usize;
        objects.truncate(q.limit as usize);
        if backwards {
            objects.reverse();
        }
        Ok(Page { objects, has_more })
    }

    async fn seq_of(
        &self,
        (collection, owner, id): (String, String, String),
    ) -> Result<i64, StoreError> {
        let q = self.sql("SELECT seq FROM objects WHERE collection = ? AND owner = ? AND id = ?");
        let row = sqlx::query(q.clone())
            .bind(&collection)
            .bind(&owner)
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(r.try_get("seq")?),
            None => Err(StoreError::UnknownCursor(id)),
        }
    }

    async fn clear_metadata(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key: Key<'_>,
    ) -> Result<(), StoreError> {
        let q =
            self.sql("DELETE FROM object_metadata WHERE collection = ? AND owner = ? AND id = ?");
        sqlx::query(q.clone())
            .bind(key.collection)
            .bind(key.owner)
            .bind(key.id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn put_metadata(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key: Key<'_>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let q = self.sql(
            "INSERT INTO object_metadata (collection, owner, id, key, value) VALUES (?, ?, ?, ?, ?)",
        );
        for (k, v) in metadata {
            sqlx::query(q.clone())
                .bind(key.collection)
                .bind(key.owner)
                .bind(key.id)
                .bind(k)
                .bind(v)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}
