//! The registry's event log as `GET /events` reads it: the agents' lifecycle, recorded by the
//! store in the same transaction as each change (domain::registry_events).

use tracing::Instrument;

use super::{store_span, Registry};
use crate::store::{MeshEvent, MeshEventQuery, StoreError};

impl Registry {
    /// The most recent events that pass the query's filters, newest first.
    pub async fn mesh_events(&self, query: &MeshEventQuery) -> Result<Vec<MeshEvent>, StoreError> {
        self.store
            .mesh_events(query)
            .instrument(store_span("mesh_events"))
            .await
    }
}
