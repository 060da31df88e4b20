//! Startup migrations: the embedded refinery migrations, applied under a PostgreSQL advisory lock
//! so that replicas booting together migrate exactly once and never race each other.

use super::{Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Advisory-lock key reserved for schema changes ("meshreg1").
const MIGRATION_LOCK_KEY: i64 = 0x6d65_7368_7265_6731;

impl Store {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let client: &mut tokio_postgres::Client = &mut conn;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let applied = embedded::migrations::runner()
            .run_async(client)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()));
        // Unlock even when a migration failed, so this pooled session does not keep the lock.
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        for migration in applied?.applied_migrations() {
            tracing::info!(migration = %migration, "applied schema migration");
        }
        Ok(())
    }
}
