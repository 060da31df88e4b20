//! `GET /schemas` and `GET /schemas/{hash}`: the schema store, which `meshctl list --schemas`
//! and `meshctl schema diff` read (docs/contract.md#schemas).

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::extract::Query;
use super::validate::bounded;
use crate::service::Registry;
use crate::store::SchemaEntry;
use crate::wire::{rfc3339, SchemaEntryView, SchemasResponse};

const LIMIT_DEFAULT: i64 = 100;
const LIMIT_MAX: i64 = 1000;

/// `GET /schemas?limit=`: newest first; the limit is clamped to 1..=1000 (100 by default).
pub async fn list(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let limit = Query::parse(&req)?
        .int("limit")?
        .map_or(LIMIT_DEFAULT, |n| n.clamp(1, LIMIT_MAX));
    let schemas: Vec<_> = registry
        .schemas(limit)
        .await
        .map_err(ApiError::store("query schemas"))?
        .into_iter()
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(SchemasResponse {
        count: schemas.len(),
        schemas,
    }))
}

pub async fn get(registry: Data<Registry>, hash: Path<String>) -> Result<HttpResponse, ApiError> {
    let hash = hash.into_inner();
    let not_found = || ApiError::NotFound(format!("schema not found: {hash}"));
    // A hash that could not have been stored names nothing.
    if bounded("hash", &hash, super::validate::MAX_NAME_BYTES).is_err() {
        return Err(not_found());
    }
    match registry
        .schema(&hash)
        .await
        .map_err(ApiError::store("fetch schema"))?
    {
        Some(entry) => Ok(HttpResponse::Ok().json(view(entry))),
        None => Err(not_found()),
    }
}

fn view(entry: SchemaEntry) -> SchemaEntryView {
    SchemaEntryView {
        canonical: entry.canonical,
        created_at: rfc3339(entry.created_at),
        hash: entry.hash,
        runtime_origin: entry.runtime_origin,
    }
}
