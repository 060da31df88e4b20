//! The schema store as `GET /schemas` reads it: the canonical schemas agents published with
//! their tools, content-addressed by hash.

use super::Registry;
use crate::store::{SchemaEntry, StoreError};

impl Registry {
    /// The most recently published schemas, newest first.
    pub async fn schemas(&self, limit: i64) -> Result<Vec<SchemaEntry>, StoreError> {
        self.store.schema_entries(limit).await
    }

    pub async fn schema(&self, hash: &str) -> Result<Option<SchemaEntry>, StoreError> {
        self.store.schema_entry(hash).await
    }
}
