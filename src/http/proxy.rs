//! `GET`/`POST /proxy/{host}:{port}/mcp…`: the MCP proxy `meshctl call` uses by default
//! (docs/contract.md#proxy). The answer is streamed back as the agent sends it.

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::extract::Body;
use crate::service::{ProxyCall, ProxyError, ProxyMethod, Registry};

pub async fn post(
    registry: Data<Registry>,
    req: HttpRequest,
    target: Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    relay(
        registry,
        req,
        target.into_inner(),
        ProxyMethod::Post,
        body.0,
    )
    .await
}

pub async fn get(
    registry: Data<Registry>,
    req: HttpRequest,
    target: Path<String>,
) -> Result<HttpResponse, ApiError> {
    relay(
        registry,
        req,
        target.into_inner(),
        ProxyMethod::Get,
        Default::default(),
    )
    .await
}

async fn relay(
    registry: Data<Registry>,
    req: HttpRequest,
    target: String,
    method: ProxyMethod,
    body: actix_web::web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let call = ProxyCall {
        method,
        target,
        headers,
        body,
    };
    let relay = registry.proxy(call).await.map_err(|error| match error {
        ProxyError::MissingPath | ProxyError::NotMcp => ApiError::BadRequest(error.to_string()),
        ProxyError::NotRegistered(_) => ApiError::Forbidden(error.to_string()),
        ProxyError::Busy(_) => ApiError::Unavailable(error.to_string()),
        ProxyError::Unreachable(_) => ApiError::BadGateway(error.to_string()),
        ProxyError::Store(store) => ApiError::store("validate agent")(store),
    })?;
    let status = StatusCode::from_u16(relay.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in relay.headers {
        response.append_header((name, value));
    }
    Ok(match relay.content_length {
        Some(length) => response.body(SizedStream::new(length, relay.body)),
        None => response.streaming(relay.body),
    })
}
