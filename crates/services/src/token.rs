//! Runtime tokens and signed URLs.
//!
//! Each job gets its own `ACTIONS_RUNTIME_TOKEN`: a JWT (HS256) signed with the services' key,
//! scoped to one repository, run and job, with an expiry. The artifact client reads the run and
//! job from the token's `scp` claim (`Actions.Results:RUN:JOB`), as it does from GitHub's tokens.
//! Upload and download URLs are signed with the same key (a different message prefix), so a
//! URL handed to one job cannot be turned into another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// What one job's token lets it reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobScope {
    /// `owner/name`: caches and artifacts of other repositories are invisible.
    pub repository: String,
    /// The ref caches are saved under (`refs/heads/main`, `refs/pull/1/merge`).
    pub git_ref: String,
    /// Further refs whose caches the job may restore, in order after its own (a pull
    /// request's base branch, the default branch).
    pub fallback_refs: Vec<String>,
    /// The run the job belongs to: artifacts belong to runs.
    pub run_id: String,
    /// The job (unique within the run).
    pub job_id: String,
}

impl JobScope {
    /// The refs whose caches the job sees, its own first, without repeats.
    pub fn readable_refs(&self) -> Vec<&str> {
        let mut refs = vec![self.git_ref.as_str()];
        for r in &self.fallback_refs {
            if !refs.contains(&r.as_str()) {
                refs.push(r);
            }
        }
        refs
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    scope: JobScope,
    /// GitHub's scope string, which the artifact client parses.
    scp: String,
    iat: i64,
    exp: i64,
}

/// Why a token or signed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("no runtime token")]
    Missing,
    /// Not a JWT of ours.
    #[error("malformed runtime token")]
    Malformed,
    /// The signature does not match: forged, or signed by another key.
    #[error("the signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// The secret that signs tokens and URLs, kept in a 0600 file so that tokens survive a
/// restart of the services.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl SigningKey {
    /// The key in `path`, made (32 random bytes, mode 0600) when the file does not exist.
    ///
    /// Safe when several processes start at once: the key is written to a private file first
    /// and published under `path` only if no other process published one before; the loser
    /// reads the winner's.
    pub fn load_or_create(path: &Path) -> std::io::Result<SigningKey> {
        match read_key(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            found => return found,
        }
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut staged = tempfile::NamedTempFile::new_in(dir)?;
        staged.write_all(&key)?;
        match staged.persist_noclobber(path) {
            Ok(_) => Ok(SigningKey(key)),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
            Err(e) => Err(e.error),
        }
    }

    fn mac(&self, domain: &str, message: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(message);
        mac
    }

    /// A token for `scope`, valid for `ttl`.
    pub fn issue(&self, scope: &JobScope, ttl: Duration) -> String {
        let now = now_secs();
        let claims = Claims {
            scp: format!(
                "Actions.GenericRead:00000000-0000-0000-0000-000000000000 Actions.Results:{}:{}",
                scope.run_id, scope.job_id
            ),
            scope: scope.clone(),
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        };
        let claims = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!("{}.{}", B64.encode(JWT_HEADER), B64.encode(claims));
        let signature = self.mac("jwt\n", signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(signature))
    }

    /// The scope of a token this key signed and that has not expired.
    pub fn verify(&self, token: &str) -> Result<JobScope, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, claims) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        self.mac("jwt\n", signed.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        if B64.decode(header).ok().as_deref() != Some(JWT_HEADER.as_bytes()) {
            return Err(TokenError::Malformed);
        }
        let claims = B64.decode(claims).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims.scope)
    }

    /// The signature of a URL path that allows `access` until `expires` (Unix seconds).
    pub fn url_signature(&self, path: &str, access: &str, expires: i64) -> String {
        let message = format!("{access}\n{expires}\n{path}");
        B64.encode(
            self.mac("url\n", message.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a URL signature made by [`SigningKey::url_signature`].
    pub fn verify_url(
        &self,
        path: &str,
        access: &str,
        expires: i64,
        signature: &str,
    ) -> Result<(), TokenError> {
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let message = format!("{access}\n{expires}\n{path}");
        self.mac("url\n", message.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        if expires <= now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The key stored in `path`.
fn read_key(path: &Path) -> std::io::Result<SigningKey> {
    let mut key = [0u8; 32];
    std::fs::File::open(path)?.read_exact(&mut key)?;
    Ok(SigningKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> JobScope {
        JobScope {
            repository: "octo/app".into(),
            git_ref: "refs/heads/feature".into(),
            fallback_refs: vec!["refs/heads/main".into(), "refs/heads/feature".into()],
            run_id: "42".into(),
            job_id: "build".into(),
        }
    }

    fn key_in(dir: &Path) -> SigningKey {
        SigningKey::load_or_create(&dir.join("key")).unwrap()
    }

    #[test]
    fn processes_starting_at_once_share_one_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let barrier = std::sync::Barrier::new(8);
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        SigningKey::load_or_create(&path).unwrap().0
                    })
                })
                .collect();
            starts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "one key for all");
        assert_eq!(std::fs::read(&path).unwrap(), keys[0]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1, "no staged key left behind");
    }

    #[test]
    fn a_token_verifies_with_its_key_and_carries_the_artifact_scope() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path());
        let token = key.issue(&scope(), Duration::from_secs(60));
        assert_eq!(key.verify(&token).unwrap(), scope());
        let claims = B64.decode(token.split('.').nth(1).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert!(
            claims["scp"]
                .as_str()
                .unwrap()
                .split(' ')
                .any(|s| s == "Actions.Results:42:build")
        );
        // The key survives a restart.
        assert_eq!(key_in(dir.path()).verify(&token).unwrap(), scope());
        assert_eq!(
            std::fs::metadata(dir.path().join("key"))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                .unwrap(),
            0o600
        );
    }

    #[test]
    fn forged_foreign_and_expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (key, foreign) = (key_in(dir.path()), key_in(other.path()));
        let token = key.issue(&scope(), Duration::from_secs(60));
        assert_eq!(
            foreign.verify(&token).unwrap_err(),
            TokenError::BadSignature
        );
        // Claims edited to another repository, signature kept.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let forged = JobScope {
            repository: "evil/app".into(),
            ..scope()
        };
        let forged_token = key.issue(&forged, Duration::from_secs(60));
        parts[1] = forged_token.split('.').nth(1).unwrap().to_string();
        assert_eq!(
            key.verify(&parts.join(".")).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(
            key.verify("not a token").unwrap_err(),
            TokenError::Malformed
        );
        let expired = key.issue(&scope(), Duration::ZERO);
        assert_eq!(key.verify(&expired).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn url_signatures_bind_path_access_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path());
        let later = now_secs() + 60;
        let sig = key.url_signature("/blob/cache/1", "r", later);
        assert!(key.verify_url("/blob/cache/1", "r", later, &sig).is_ok());
        assert!(key.verify_url("/blob/cache/2", "r", later, &sig).is_err());
        assert!(key.verify_url("/blob/cache/1", "w", later, &sig).is_err());
        assert!(
            key.verify_url("/blob/cache/1", "r", later + 1, &sig)
                .is_err()
        );
        let past = now_secs() - 1;
        let old = key.url_signature("/blob/cache/1", "r", past);
        assert_eq!(
            key.verify_url("/blob/cache/1", "r", past, &old)
                .unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn readable_refs_start_with_the_jobs_own_and_never_repeat() {
        assert_eq!(
            scope().readable_refs(),
            ["refs/heads/feature", "refs/heads/main"]
        );
    }
}
