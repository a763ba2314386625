//! A GitHub webhook delivery as it arrives: its headers, its signature checked in constant time,
//! and its id made safe to use as a key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// GitHub's largest delivery: bigger payloads are not sent at all.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// The header naming the event (`push`, `pull_request`, …).
pub const EVENT_HEADER: &str = "x-github-event";
/// The header with the delivery's unique id (kept across GitHub's redeliveries).
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The header with `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The events azlin acts on.
pub const EVENTS: [&str; 4] = ["push", "pull_request", "workflow_dispatch", "ping"];

/// Why a delivery was refused before anything was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `X-Hub-Signature-256` header.
    #[error("the delivery has no X-Hub-Signature-256 signature")]
    MissingSignature,
    /// A signature that does not match the body and the secret.
    #[error("the delivery's signature does not match")]
    BadSignature,
    /// No `X-GitHub-Delivery` or `X-GitHub-Event`, or an id that cannot be a delivery id.
    #[error("{0}")]
    BadHeader(String),
}

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body` keyed by `secret`. The
/// comparison takes the same time wherever the first difference is.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::BadSignature)?;
    let expected = decode_hex(hex).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub sends (tests and benches sign with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // An HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A delivery id as a key: GitHub's are UUIDs; anything of letters, digits and `-` up to 64
/// characters is taken.
pub fn delivery_id(header: Option<&str>) -> Result<String, WebhookError> {
    let id = header
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            WebhookError::BadHeader("the delivery has no X-GitHub-Delivery id".into())
        })?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(WebhookError::BadHeader(format!(
            "X-GitHub-Delivery '{}' is not a delivery id",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const EXPECTED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_signature_verifies() {
        assert_eq!(sign(SECRET, BODY), EXPECTED);
        verify_signature(SECRET, BODY, Some(EXPECTED)).unwrap();
    }

    #[test]
    fn wrong_missing_and_malformed_signatures_are_refused() {
        assert_eq!(
            verify_signature(SECRET, BODY, None),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature(b"other", BODY, Some(EXPECTED)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(SECRET, b"Hello, World?", Some(EXPECTED)),
            Err(WebhookError::BadSignature)
        );
        for bad in ["", "sha1=abc", "sha256=zz", &EXPECTED[..70]] {
            assert_eq!(
                verify_signature(SECRET, BODY, Some(bad)),
                Err(WebhookError::BadSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn delivery_ids_are_checked() {
        let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        assert_eq!(delivery_id(Some(id)).unwrap(), id);
        for bad in [
            None,
            Some(""),
            Some("a/b"),
            Some("x.y"),
            Some(&"a".repeat(65)[..]),
        ] {
            assert!(delivery_id(bad).is_err(), "{bad:?}");
        }
    }
}
