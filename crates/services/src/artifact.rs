//! The artifact service, protocol v4: Twirp `github.actions.results.api.v1.ArtifactService`
//! (`CreateArtifact`, `FinalizeArtifact`, `ListArtifacts`, `GetSignedArtifactURL`,
//! `DeleteArtifact`) with the zip going up and down through signed URLs ([`crate::blob`]).
//!
//! Artifacts belong to a run: a job sees the artifacts of its own run, and uploads under its
//! own job. Names are checked as GitHub checks them, and a zip whose entries would land
//! outside the folder it is extracted into is refused before it is stored.

use crate::blob::signed_url;
use crate::http::{ApiError, base_url, int64, job_scope, timestamp, twirp_request, twirp_response};
use crate::server::Shared;
use crate::store::{ArtifactEntry, Kind, Store, StoreError};
use crate::token::JobScope;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

/// Characters GitHub refuses in artifact names.
const FORBIDDEN: &[char] = &['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];
/// The longest name accepted.
const MAX_NAME: usize = 256;

/// Why an artifact name is refused, if it is.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name == "." || name == ".." {
        return Err(format!("'{name}' is not an artifact name"));
    }
    if name.len() > MAX_NAME {
        return Err(format!("an artifact name is at most {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control())
    {
        return Err(format!(
            "the artifact name '{}' has the character {c:?}, which is not allowed",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Why a zip is refused: it is not a zip, or an entry would land outside its folder.
pub fn check_zip(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip: {e}"))?;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| format!("not a zip: {e}"))?;
        let name = entry.name().map_err(|e| format!("not a zip: {e}"))?;
        let absolute = name.starts_with('/') || name.starts_with('\\');
        let climbs = name.split(['/', '\\']).any(|part| part == "..");
        if absolute || climbs || entry.enclosed_name().is_none() {
            return Err(format!(
                "the path '{}' leaves the artifact's folder",
                name.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Extracts artifact `entry` into `dir`; returns the files written. Entries are placed by
/// their enclosed names only, so nothing lands outside `dir`.
pub fn extract(
    store: &Store,
    entry: &ArtifactEntry,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let digest = entry
        .digest
        .as_deref()
        .ok_or_else(|| StoreError::NotFound(format!("artifact '{}'", entry.name)))?;
    let file = std::fs::File::open(store.blob_path(digest))?;
    let bad =
        |e: zip::result::ZipError| StoreError::Rejected(format!("artifact '{}': {e}", entry.name));
    let mut zip = zip::ZipArchive::new(file).map_err(bad)?;
    let mut written = Vec::new();
    for i in 0..zip.len() {
        let mut item = zip.by_index(i).map_err(bad)?;
        let Some(relative) = item.enclosed_name() else {
            return Err(StoreError::Rejected(format!(
                "artifact '{}': the path '{}' leaves its folder",
                entry.name,
                item.name().unwrap_or_default()
            )));
        };
        let target = dir.join(relative);
        if item.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)?;
        std::io::copy(&mut item, &mut out)?;
        written.push(target);
    }
    Ok(written)
}

#[derive(Debug, Deserialize)]
struct Ids {
    #[serde(alias = "workflowRunBackendId")]
    workflow_run_backend_id: String,
    #[serde(alias = "workflowJobRunBackendId")]
    workflow_job_run_backend_id: String,
}

impl Ids {
    /// The run (and for `writing`, the job) must be the token's own.
    fn check(&self, scope: &JobScope, writing: bool) -> Result<(), ApiError> {
        if self.workflow_run_backend_id != scope.run_id
            || (writing && self.workflow_job_run_backend_id != scope.job_id)
        {
            return Err(ApiError::forbidden(
                "the runtime token does not belong to this run and job",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(flatten)]
    ids: Ids,
    name: String,
}

#[derive(Debug, Deserialize)]
struct FinalizeRequest {
    #[serde(flatten)]
    ids: Ids,
    name: String,
    #[serde(deserialize_with = "int64")]
    size: i64,
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListRequest {
    #[serde(flatten)]
    ids: Ids,
    #[serde(default, alias = "nameFilter")]
    name_filter: Option<String>,
    #[serde(default, alias = "idFilter", deserialize_with = "optional_int64")]
    id_filter: Option<i64>,
}

fn optional_int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "int64")] i64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

fn listed(entry: &ArtifactEntry) -> serde_json::Value {
    serde_json::json!({
        "workflow_run_backend_id": entry.run_id,
        "workflow_job_run_backend_id": entry.job_id,
        "database_id": entry.id.to_string(),
        "name": entry.name,
        "size": entry.size.to_string(),
        "created_at": timestamp(entry.created_at),
        "digest": entry.digest.as_ref().map(|d| format!("sha256:{d}")),
    })
}

/// `POST /twirp/github.actions.results.api.v1.ArtifactService/METHOD`.
pub(crate) async fn twirp(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        let store = &shared.store;
        match method.as_str() {
            "CreateArtifact" => {
                let request: Named = twirp_request(&body)?;
                request.ids.check(&scope, true)?;
                check_name(&request.name).map_err(ApiError::bad_request)?;
                let retention = i64::try_from(shared.limits.artifact_retention.as_millis()).unwrap_or(i64::MAX / 2);
                let id = store.create_artifact(
                    &scope.repository,
                    &scope.run_id,
                    &scope.job_id,
                    &request.name,
                    crate::store::now_ms().saturating_add(retention),
                )?;
                Ok(twirp_response(serde_json::json!({
                    "ok": true,
                    "signed_upload_url": signed_url(&shared, &base_url(&headers)?, Kind::Artifact, id, "w", None),
                })))
            }
            "FinalizeArtifact" => {
                let request: FinalizeRequest = twirp_request(&body)?;
                request.ids.check(&scope, true)?;
                let entry = store.artifact(&scope.repository, &scope.run_id, &request.name, true)?;
                let size = u64::try_from(request.size).map_err(|_| ApiError::bad_request("size is negative"))?;
                let digest = match request.hash.as_deref().filter(|h| !h.is_empty()) {
                    Some(hash) => Some(
                        hash.strip_prefix("sha256:")
                            .ok_or_else(|| ApiError::bad_request("hash must be sha256:HEX"))?
                            .to_string(),
                    ),
                    None => None,
                };
                let worker = shared.clone();
                let id = entry.id;
                let done = tokio::task::spawn_blocking(move || {
                    let staged = worker.store.staging_path(Kind::Artifact, id);
                    if let Err(why) = check_zip(&staged) {
                        worker.store.abandon(Kind::Artifact, id)?;
                        return Err(StoreError::Rejected(why));
                    }
                    worker.store.finalize_artifact(id, size, digest.as_deref())
                })
                .await
                .map_err(ApiError::internal)??;
                tracing::info!(name = %done.name, run = %done.run_id, size = done.size, "artifact stored");
                Ok(twirp_response(serde_json::json!({ "ok": true, "artifact_id": done.id.to_string() })))
            }
            "ListArtifacts" => {
                let request: ListRequest = twirp_request(&body)?;
                request.ids.check(&scope, false)?;
                let artifacts: Vec<serde_json::Value> = store
                    .artifacts(Some(&scope.repository), &scope.run_id)?
                    .iter()
                    .filter(|a| request.name_filter.as_ref().is_none_or(|n| &a.name == n))
                    .filter(|a| request.id_filter.is_none_or(|id| a.id == id))
                    .map(listed)
                    .collect();
                Ok(twirp_response(serde_json::json!({ "artifacts": artifacts })))
            }
            "GetSignedArtifactURL" => {
                let request: Named = twirp_request(&body)?;
                request.ids.check(&scope, false)?;
                let entry = store.artifact(&scope.repository, &scope.run_id, &request.name, false)?;
                Ok(twirp_response(serde_json::json!({
                    "signed_url": signed_url(&shared, &base_url(&headers)?, Kind::Artifact, entry.id, "r", Some(&scope)),
                })))
            }
            "DeleteArtifact" => {
                let request: Named = twirp_request(&body)?;
                request.ids.check(&scope, false)?;
                let entry = store.artifact(&scope.repository, &scope.run_id, &request.name, false)?;
                store.delete_artifact(&entry)?;
                Ok(twirp_response(serde_json::json!({ "ok": true, "artifact_id": entry.id.to_string() })))
            }
            other => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no method {other}"))),
        }
    }
    .await;
    result.unwrap_or_else(ApiError::twirp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_github_does() {
        assert!(check_name("dist").is_ok());
        assert!(check_name("my artifact (1)").is_ok());
        for bad in [
            "", " ", ".", "..", "../x", "a/b", "a\\b", "a:b", "a*", "a\nb",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&"x".repeat(257)).is_err());
    }

    fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        for name in names {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut zip, b"x").unwrap();
        }
        zip.finish().unwrap();
        file
    }

    #[test]
    fn zips_whose_entries_leave_their_folder_are_refused() {
        assert!(check_zip(zip_with(&["a.txt", "dir/b.txt"]).path()).is_ok());
        assert!(check_zip(zip_with(&["../escape.txt"]).path()).is_err());
        assert!(check_zip(zip_with(&["/etc/cron.d/x"]).path()).is_err());
        assert!(check_zip(zip_with(&["a/../../b"]).path()).is_err());
        let not_zip = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_zip.path(), b"plain").unwrap();
        assert!(check_zip(not_zip.path()).is_err());
    }
}
