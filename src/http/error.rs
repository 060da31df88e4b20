//! `ApiError`: the one error type of the HTTP layer. It knows each failure's status code and
//! renders the bodies of docs/contract.md#errors: `{"error","timestamp"}` for handler errors,
//! `{"msg"}` for a parameter the reference's generated wrapper would have refused.
//!
//! Client mistakes are 4xx; 503 is reserved for the database actually failing.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;
use crate::wire::{rfc3339_now, AdminErrorBody, ErrorBody, ParamErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Invalid format for parameter {name}: {detail}")]
    BadParameter { name: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request body not received within {0} s")]
    RequestTimeout(u64),
    #[error("{0}")]
    Unavailable(String),
    /// The agent a request was relayed to did not answer (the MCP proxy).
    #[error("{0}")]
    BadGateway(String),
    /// An `/admin/*` error: its body is `{"error"}` only (docs/contract.md#errors).
    #[error("{1}")]
    Admin(StatusCode, String),
}

impl ApiError {
    pub fn job_not_found(job_id: &str) -> ApiError {
        ApiError::NotFound(format!("job not found: {job_id}"))
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest(format!("Invalid JSON payload: {detail}"))
    }

    /// Maps a store failure to `503 "Failed to <action>: <err>"` (docs/contract.md#errors).
    pub fn store(action: &'static str) -> impl FnOnce(StoreError) -> ApiError {
        move |error| {
            tracing::warn!(%error, "failed to {action}");
            ApiError::Unavailable(format!("Failed to {action}: {error}"))
        }
    }
}

/// 409 body of an executor read whose claim was superseded, matched by SDKs verbatim.
pub const CLAIM_SUPERSEDED: &str = "claim_superseded";
/// 409 body of every write to a job that already ended.
pub const ALREADY_TERMINAL: &str = "job is already in a terminal state";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Admin(status, _) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::BadParameter { .. } => response.json(ParamErrorBody { msg: &message }),
            ApiError::Admin(..) => response.json(AdminErrorBody { error: &message }),
            _ => response.json(ErrorBody {
                error: &message,
                timestamp: rfc3339_now(),
            }),
        }
    }
}
