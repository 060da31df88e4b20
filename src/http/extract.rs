//! Request extraction with the reference's error answers: bodies are read under the configured
//! size cap and decoded as JSON (`Invalid JSON payload: …`, `EOF` for an empty body); query
//! parameters are read leniently, except integers, which fail the way the reference's generated
//! wrapper fails (`{"msg": "Invalid format for parameter …"}`).

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The address of the client at the other end of the connection (what per-client shares are
/// counted by); the unspecified address when the connection has none (a test request).
pub fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |peer| peer.ip())
}

/// Largest accepted request body, in bytes (app data; 1 MiB when absent).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A client must send its whole body within this (a slow client cannot hold a worker's
/// connection by trickling it).
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The raw request body, read up to the `BodyLimit`.
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(1024 * 1024, |limit| limit.0);
        let payload = web::Payload::from_request(req, payload);
        Box::pin(async move {
            let payload = payload.await.map_err(ApiError::invalid_json)?;
            let read = payload.to_bytes_limited(limit);
            match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
                Ok(Ok(Ok(bytes))) => Ok(Body(bytes)),
                Ok(Ok(Err(error))) => Err(ApiError::invalid_json(error)),
                Ok(Err(_)) => Err(ApiError::PayloadTooLarge(limit)),
                Err(_) => Err(ApiError::RequestTimeout(BODY_READ_TIMEOUT.as_secs())),
            }
        })
    }
}

impl Body {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(u8::is_ascii_whitespace)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.is_empty() {
            return Err(ApiError::invalid_json("EOF"));
        }
        parse_json(&self.0)
    }
}

/// Decodes JSON; the error names the offending field (`tools[0].tags: invalid type …`). A NUL
/// anywhere in the document is refused first (see `validate`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    super::validate::no_nul_in_json(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            match error.path().to_string().as_str() {
                "." => ApiError::invalid_json(error.into_inner()),
                path => ApiError::invalid_json(format!("{path}: {}", error.into_inner())),
            }
        })?;
    deserializer.end().map_err(ApiError::invalid_json)?;
    Ok(value)
}

/// A JSON request body decoded into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<JsonBody<T>, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = Body::from_request(req, payload);
        Box::pin(async move { body.await?.json().map(JsonBody) })
    }
}

/// Decoded query-string pairs, in order. The first occurrence of a name wins.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The query string's pairs; a NUL in a name or a value is refused (a 400 naming it).
    pub fn parse(req: &HttpRequest) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        for (name, value) in &pairs {
            let name = super::validate::bounded("query parameter", name, usize::MAX)?;
            super::validate::bounded(name, value, usize::MAX)?;
        }
        Ok(Query(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value given for a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// A string parameter, whitespace-trimmed; empty counts as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// An integer parameter, parsed like Go's `strconv.ParseInt(v, 10, 64)`.
    pub fn int(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        raw.parse::<i64>().map(Some).map_err(|error| {
            let why = match error.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            ApiError::BadParameter {
                name,
                detail: format!(
                    "error binding string parameter: strconv.ParseInt: parsing {raw:?}: {why}"
                ),
            }
        })
    }

    /// A comma-separated list: tokens trimmed, empty ones dropped; `None` when nothing is left.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let tokens: Vec<String> = self
            .get(name)?
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        (!tokens.is_empty()).then_some(tokens)
    }
}

#[cfg(test)]
mod properties {
    //! Whatever a client sends, the decoders answer a client error or a value: never a 5xx,
    //! never a panic.

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::wire::{
        AgentRegistration, BatchRequest, ClaimRequest, CreateJobRequest, PostEventRequest,
        ReleaseRequest,
    };

    fn decodes_or_refuses(bytes: &[u8]) {
        fn check<T: DeserializeOwned>(bytes: &[u8]) {
            if let Err(error) = parse_json::<T>(bytes) {
                let status = actix_web::ResponseError::status_code(&error);
                assert!(status.is_client_error(), "{status} for {error}");
            }
        }
        check::<CreateJobRequest>(bytes);
        check::<ClaimRequest>(bytes);
        check::<BatchRequest>(bytes);
        check::<ReleaseRequest>(bytes);
        check::<PostEventRequest>(bytes);
        check::<AgentRegistration>(bytes);
    }

    /// Any JSON: scalars (strings with NULs and odd characters included), nested arrays and
    /// objects.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// JSON shaped like the requests, with arbitrary values in their fields.
    fn request_like() -> impl Strategy<Value = Value> {
        let fields = prop::sample::select(vec![
            "capability",
            "submitted_by",
            "submitted_payload",
            "max_retries",
            "max_duration",
            "total_deadline",
            "owner_instance_id",
            "instance_id",
            "deltas",
            "id",
            "claim_epoch",
            "status",
            "progress",
            "result",
            "error",
            "recv_cursor",
            "reason",
            "type",
            "payload",
            "agent_id",
            "tools",
            "http_host",
            "http_port",
            "tags",
            "dependencies",
        ]);
        prop::collection::btree_map(fields, json(), 0..8).prop_map(|map| {
            Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_make_a_server_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            decodes_or_refuses(&bytes);
        }

        #[test]
        fn arbitrary_json_never_makes_a_server_error(value in json()) {
            decodes_or_refuses(value.to_string().as_bytes());
        }

        #[test]
        fn request_shaped_json_never_makes_a_server_error(value in request_like()) {
            decodes_or_refuses(value.to_string().as_bytes());
        }
    }

    #[test]
    fn ten_thousand_levels_deep_is_a_client_error() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        decodes_or_refuses(deep.as_bytes());
        let deep = format!(
            r#"{{"submitted_payload":{}1{}}}"#,
            r#"{"a":"#.repeat(10_000),
            "}".repeat(10_000)
        );
        decodes_or_refuses(deep.as_bytes());
    }
}
