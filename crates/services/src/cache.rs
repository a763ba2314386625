//! The cache service, in both of GitHub's protocols:
//!
//! - v1, REST under `ACTIONS_CACHE_URL`: `GET _apis/artifactcache/cache?keys=&version=`
//!   (200 with an `archiveLocation`, or 204), `POST _apis/artifactcache/caches` to reserve,
//!   `PATCH .../caches/ID` with `Content-Range` chunks, `POST .../caches/ID` to commit;
//! - v2, Twirp `github.actions.results.api.v1.CacheService` under `ACTIONS_RESULTS_URL`:
//!   `GetCacheEntryDownloadURL`, `CreateCacheEntry`, `FinalizeCacheEntryUpload`, with the
//!   bytes going through signed URLs ([`crate::blob`]).
//!
//! Both save on the job's ref and restore by [`crate::store::Store::find_cache`]'s rules.

use crate::blob::{signed_url, write_body};
use crate::http::{ApiError, base_url, int64, job_scope, timestamp, twirp_request, twirp_response};
use crate::server::{CacheOutcome, CacheUse, Shared};
use crate::store::{CacheEntry, Kind};
use crate::token::JobScope;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// GitHub's limit on keys (and on their count, primary plus restore keys).
const MAX_KEY_LENGTH: usize = 512;
const MAX_KEYS: usize = 10;

fn check_keys(keys: &[String]) -> Result<(), ApiError> {
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(ApiError::bad_request(format!(
            "between 1 and {MAX_KEYS} keys are allowed"
        )));
    }
    for key in keys {
        if key.is_empty() || key.len() > MAX_KEY_LENGTH || key.contains(',') {
            return Err(ApiError::bad_request(format!(
                "key '{key}' is empty, longer than {MAX_KEY_LENGTH} characters or has a comma"
            )));
        }
    }
    Ok(())
}

/// Looks a cache up for `scope` and records the outcome for the run report.
fn lookup(
    shared: &Shared,
    scope: &JobScope,
    primary: &str,
    restore_keys: &[String],
    version: &str,
) -> Result<Option<CacheEntry>, ApiError> {
    let mut keys = vec![primary.to_string()];
    keys.extend(restore_keys.iter().cloned());
    check_keys(&keys)?;
    let hit = shared.store.find_cache(
        &scope.repository,
        &scope.readable_refs(),
        primary,
        restore_keys,
        version,
    )?;
    let outcome = match &hit {
        Some(entry) if entry.key == primary => CacheOutcome::Hit,
        Some(_) => CacheOutcome::RestoreKeyHit,
        None => CacheOutcome::Miss,
    };
    shared.record(
        scope,
        CacheUse {
            key: primary.to_string(),
            outcome,
            matched_key: hit.as_ref().map(|e| e.key.clone()),
            size: hit.as_ref().map_or(0, |e| e.size),
        },
    );
    Ok(hit)
}

/// Commits a finished upload (hashing off the async threads) and records it.
async fn commit(
    shared: &Arc<Shared>,
    scope: &JobScope,
    id: i64,
    size: u64,
) -> Result<CacheEntry, ApiError> {
    let worker = shared.clone();
    let limit = shared.limits.cache_bytes;
    let entry = tokio::task::spawn_blocking(move || worker.store.commit_cache(id, size, limit))
        .await
        .map_err(ApiError::internal)??;
    shared.record(
        scope,
        CacheUse {
            key: entry.key.clone(),
            outcome: CacheOutcome::Saved,
            matched_key: None,
            size: entry.size,
        },
    );
    Ok(entry)
}

// ---- protocol v1 ----

#[derive(Debug, Deserialize)]
pub(crate) struct LookupQuery {
    keys: String,
    version: String,
}

/// `GET _apis/artifactcache/cache?keys=K1,K2&version=V`.
pub(crate) async fn v1_lookup(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<LookupQuery>,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        let keys: Vec<String> = query.keys.split(',').map(str::to_string).collect();
        let (primary, restore) = keys
            .split_first()
            .ok_or_else(|| ApiError::bad_request("no keys"))?;
        Ok(
            match lookup(&shared, &scope, primary, restore, &query.version)? {
                Some(entry) => {
                    let location = signed_url(
                        &shared,
                        &base_url(&headers)?,
                        Kind::Cache,
                        entry.id,
                        "r",
                        Some(&scope),
                    );
                    let body = serde_json::json!({
                        "cacheKey": entry.key,
                        "scope": entry.git_ref,
                        "creationTime": timestamp(entry.created_at),
                        "archiveLocation": location,
                    });
                    (StatusCode::OK, axum::Json(body)).into_response()
                }
                None => StatusCode::NO_CONTENT.into_response(),
            },
        )
    }
    .await;
    result.unwrap_or_else(ApiError::rest)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReserveRequest {
    key: String,
    version: String,
    cache_size: Option<u64>,
}

/// `POST _apis/artifactcache/caches`.
pub(crate) async fn v1_reserve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<ReserveRequest>,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        check_keys(std::slice::from_ref(&request.key))?;
        if let Some(size) = request.cache_size
            && size > shared.limits.cache_bytes
        {
            return Err(ApiError::bad_request(format!(
                "a cache of {size} bytes is over the limit of {} bytes",
                shared.limits.cache_bytes
            )));
        }
        let id = shared.store.reserve_cache(
            &scope.repository,
            &scope.git_ref,
            &request.key,
            &request.version,
        )?;
        Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "cacheId": id })),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::rest)
}

/// `bytes START-END/*` of a chunk.
fn content_range(headers: &HeaderMap) -> Result<(u64, u64), ApiError> {
    let bad = || ApiError::bad_request("a Content-Range of bytes START-END/* is required");
    let value = headers
        .get(axum::http::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad)?;
    let range = value.strip_prefix("bytes ").ok_or_else(bad)?;
    let range = range.split('/').next().ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let (start, end): (u64, u64) = (
        start.parse().map_err(|_| bad())?,
        end.parse().map_err(|_| bad())?,
    );
    if end < start {
        return Err(bad());
    }
    Ok((start, end))
}

/// The v1 upload `id` is in progress and was reserved by a job of this repository and ref.
fn check_own_upload(shared: &Shared, scope: &JobScope, id: i64) -> Result<(), ApiError> {
    let entry = shared.store.pending_cache(&scope.repository, id)?;
    if entry.git_ref != scope.git_ref {
        return Err(ApiError::forbidden("the cache was reserved by another ref"));
    }
    Ok(())
}

/// `PATCH _apis/artifactcache/caches/ID`: one chunk.
pub(crate) async fn v1_upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        check_own_upload(&shared, &scope, id)?;
        let (start, end) = content_range(&headers)?;
        let path = shared.store.staging_path(Kind::Cache, id);
        let written = write_body(
            &shared,
            Kind::Cache,
            id,
            &path,
            start,
            false,
            body,
            shared.limits.cache_bytes,
        )
        .await?;
        if written != end - start + 1 {
            return Err(ApiError::bad_request(format!(
                "the chunk has {written} bytes, its Content-Range says {}",
                end - start + 1
            )));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::rest)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CommitRequest {
    size: u64,
}

/// `POST _apis/artifactcache/caches/ID`: the upload is complete.
pub(crate) async fn v1_commit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Json(request): axum::Json<CommitRequest>,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        check_own_upload(&shared, &scope, id)?;
        commit(&shared, &scope, id, request.size).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::rest)
}

// ---- protocol v2 ----

#[derive(Debug, Deserialize)]
struct DownloadUrlRequest {
    key: String,
    #[serde(default, alias = "restoreKeys")]
    restore_keys: Vec<String>,
    version: String,
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    key: String,
    version: String,
}

#[derive(Debug, Deserialize)]
struct FinalizeRequest {
    key: String,
    version: String,
    #[serde(alias = "sizeBytes", deserialize_with = "int64")]
    size_bytes: i64,
}

/// `POST /twirp/github.actions.results.api.v1.CacheService/METHOD`.
pub(crate) async fn v2(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let scope = job_scope(&headers, &shared.key)?;
        match method.as_str() {
            "GetCacheEntryDownloadURL" => {
                let request: DownloadUrlRequest = twirp_request(&body)?;
                Ok(match lookup(&shared, &scope, &request.key, &request.restore_keys, &request.version)? {
                    Some(entry) => twirp_response(serde_json::json!({
                        "ok": true,
                        "signed_download_url": signed_url(&shared, &base_url(&headers)?, Kind::Cache, entry.id, "r", Some(&scope)),
                        "matched_key": entry.key,
                    })),
                    None => twirp_response(serde_json::json!({ "ok": false })),
                })
            }
            "CreateCacheEntry" => {
                let request: CreateRequest = twirp_request(&body)?;
                check_keys(std::slice::from_ref(&request.key))?;
                match shared.store.reserve_cache(&scope.repository, &scope.git_ref, &request.key, &request.version) {
                    Ok(id) => Ok(twirp_response(serde_json::json!({
                        "ok": true,
                        "signed_upload_url": signed_url(&shared, &base_url(&headers)?, Kind::Cache, id, "w", None),
                    }))),
                    Err(crate::store::StoreError::Exists(what)) => Ok(twirp_response(serde_json::json!({
                        "ok": false,
                        "message": format!("{what} already exists on {} or is being saved", scope.git_ref),
                    }))),
                    Err(e) => Err(e.into()),
                }
            }
            "FinalizeCacheEntryUpload" => {
                let request: FinalizeRequest = twirp_request(&body)?;
                let entry = shared.store.pending_cache_by_key(
                    &scope.repository,
                    &scope.git_ref,
                    &request.key,
                    &request.version,
                )?;
                let size = u64::try_from(request.size_bytes)
                    .map_err(|_| ApiError::bad_request("size_bytes is negative"))?;
                let entry = commit(&shared, &scope, entry.id, size).await?;
                Ok(twirp_response(serde_json::json!({ "ok": true, "entry_id": entry.id.to_string() })))
            }
            other => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no method {other}"))),
        }
    }
    .await;
    result.unwrap_or_else(ApiError::twirp)
}
