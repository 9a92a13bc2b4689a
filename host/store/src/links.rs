//! Links to blobs (WIT `store.share-blob`): a long random token that anyone may fetch the
//! blob with until the link expires, with no API key, as OpenAI's image URLs are fetched. A
//! shared blob belongs to its link from then on: the sweep removes the two together.

use sqlx::Row;
use tokio::fs::File;

use crate::blobs::Blob;
use crate::{Store, StoreError, ids, now};

/// What a link serves.
#[derive(Debug)]
pub struct SharedBlob {
    pub blob: Blob,
    pub file: File,
    pub content_type: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The longest a content type may be (it is sent back as a header).
const MAX_CONTENT_TYPE: usize = 128;

/// Whether `token` could be one [`Store::share_blob`] made.
pub fn is_link_token(token: &str) -> bool {
    token.starts_with("link-") && ids::is_store_id(token)
}

impl Store {
    /// Makes a link to `owner`'s blob `id` served as `content_type` until `expires_at` (unix
    /// seconds); the token. The blob is no longer pending on the request that wrote it: the
    /// link keeps it, and the sweep after `expires_at` removes both.
    pub async fn share_blob(
        &self,
        owner: &str,
        id: &str,
        content_type: &str,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
        if content_type.is_empty()
            || content_type.len() > MAX_CONTENT_TYPE
            || !printable(content_type)
        {
            return Err(StoreError::BadLink(format!(
                "content type {content_type:?}: 1 to {MAX_CONTENT_TYPE} printable ASCII characters"
            )));
        }
        if self.blob(owner, id).await?.is_none() {
            return Err(StoreError::NotFound {
                collection: "blobs".into(),
                id: id.to_owned(),
            });
        }
        // Two ids' worth of randomness: the token is the only key to what it serves.
        let token = format!("{}{}", ids::new_id("link-"), ids::new_id(""));
        let mut tx = self.pool.begin().await?;
        let q = self.sql(
            "INSERT INTO blob_links (token, blob, owner, content_type, expires_at) VALUES (?, ?, ?, ?, ?)",
        );
        sqlx::query(q.clone())
            .bind(&token)
            .bind(id)
            .bind(owner)
            .bind(content_type)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        let q =
            self.sql("UPDATE blobs SET job = NULL, job_holder = NULL WHERE id = ? AND owner = ?");
        sqlx::query(q.clone())
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The blob the link `token` serves, unless there is no such link or it has expired.
    pub async fn shared_blob(&self, token: &str) -> Result<Option<SharedBlob>, StoreError> {
        if !is_link_token(token) {
            return Ok(None);
        }
        let q = self.sql(
            "SELECT blob, owner, content_type, expires_at FROM blob_links WHERE token = ? AND expires_at > ?",
        );
        let row = sqlx::query(q.clone())
            .bind(token)
            .bind(now())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let blob: String = row.try_get("blob")?;
        let owner: String = row.try_get("owner")?;
        let Some((blob, file)) = self.open_blob(&owner, &blob).await? else {
            return Ok(None);
        };
        Ok(Some(SharedBlob {
            blob,
            file,
            content_type: row.try_get("content_type")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Removes the links that expired before `before` (unix seconds) with their blobs; how
    /// many. Any process may call it.
    pub async fn sweep_links(&self, before: i64) -> Result<usize, StoreError> {
        let q = self.sql("SELECT token, blob, owner FROM blob_links WHERE expires_at <= ?");
        let rows = sqlx::query(q.clone())
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        let mut removed = 0;
        for row in rows {
            let token: String = row.try_get("token")?;
            let blob: String = row.try_get("blob")?;
            let owner: String = row.try_get("owner")?;
            self.delete_blob(&owner, &blob).await?;
            let q = self.sql("DELETE FROM blob_links WHERE token = ?");
            let gone = sqlx::query(q.clone())
                .bind(&token)
                .execute(&self.pool)
                .await?;
            removed += gone.rows_affected() as usize;
        }
        if removed > 0 {
            tracing::info!(removed, "removed expired links and their blobs");
        }
        Ok(removed)
    }
}
