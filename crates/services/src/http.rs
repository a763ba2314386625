//! What the service endpoints share: the job's token from `Authorization`, and the error
//! bodies of the three dialects spoken here (Twirp JSON, the v1 cache REST API, Azure Blob XML).

use crate::store::StoreError;
use crate::token::{JobScope, SigningKey, TokenError};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};

/// A refused or failed request, answered in the dialect of its endpoint.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "job services");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// The Twirp error body: `{"code": "...", "msg": "..."}`.
    pub fn twirp(self) -> Response {
        let code = match self.status {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "already_exists",
            StatusCode::PAYLOAD_TOO_LARGE => "out_of_range",
            s if s.is_client_error() => "invalid_argument",
            _ => "internal",
        };
        let body = serde_json::json!({ "code": code, "msg": self.message });
        (self.status, axum::Json(body)).into_response()
    }

    /// The v1 cache API's error body: `{"message": "..."}`.
    pub fn rest(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }

    /// Azure Blob Storage's error body, which the storage client parses.
    pub fn blob(self) -> Response {
        let code = match self.status {
            StatusCode::FORBIDDEN => "AuthenticationFailed",
            StatusCode::NOT_FOUND => "BlobNotFound",
            StatusCode::CONFLICT => "BlobAlreadyExists",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestBodyTooLarge",
            StatusCode::RANGE_NOT_SATISFIABLE => "InvalidRange",
            s if s.is_client_error() => "InvalidInput",
            _ => "InternalError",
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
            xml_escape(&self.message)
        );
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        headers.insert("x-ms-error-code", HeaderValue::from_static(code));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Rejected(_) => ApiError::bad_request(e.to_string()),
            StoreError::Index(_) | StoreError::Io(_) => ApiError::internal(e),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("runtime token refused: {e}"),
        )
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The scope of the job whose token is in `Authorization: Bearer TOKEN`.
pub(crate) fn job_scope(headers: &HeaderMap, key: &SigningKey) -> Result<JobScope, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Missing)?;
    Ok(key.verify(token)?)
}

/// The base URL the client used to reach us (from `Host`), for the URLs handed back to it.
pub(crate) fn base_url(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .ok_or_else(|| ApiError::bad_request("a Host header is required"))?;
    Ok(format!("http://{host}"))
}

/// Unix milliseconds as RFC 3339 with exactly three fractional digits (`...T07:09:40.120Z`),
/// the form protobuf's JSON timestamps take and its parsers accept.
pub(crate) fn timestamp(ms: i64) -> String {
    let seconds = jiff::Timestamp::from_second(ms.div_euclid(1000)).unwrap_or_default();
    format!(
        "{}.{:03}Z",
        seconds.strftime("%Y-%m-%dT%H:%M:%S"),
        ms.rem_euclid(1000)
    )
}

/// Protobuf's JSON form of an int64: a string, or a number from lenient clients.
pub(crate) fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Parses a Twirp JSON request body.
pub(crate) fn twirp_request<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad request: {e}")))
}

/// A Twirp JSON response.
pub(crate) fn twirp_response(value: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_have_three_fractional_digits() {
        assert_eq!(
            super::timestamp(1_764_745_780_120),
            "2025-12-03T07:09:40.120Z"
        );
        assert_eq!(
            super::timestamp(1_764_745_780_000),
            "2025-12-03T07:09:40.000Z"
        );
    }
}
