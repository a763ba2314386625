//! Upload and download by signed URL, in the dialect of Azure Blob Storage that the storage
//! client inside `actions/cache` and `@actions/artifact` speaks: a whole blob in one `PUT`, or
//! blocks (`?comp=block&blockid=ID`) and then their list (`?comp=blocklist`); `GET` and `HEAD`
//! with ranges.
//!
//! A URL is `/blob/KIND/ID?sp=ACCESS&se=EXPIRY&sig=SIGNATURE`: the signature covers the path,
//! the access (`r` or `w`) and the expiry, so it opens exactly one upload or one download.

use crate::http::ApiError;
use crate::server::Shared;
use crate::store::Kind;
use crate::token::JobScope;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// How long a signed URL works.
const URL_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// Downloads at least this large report their progress to the job's log.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// What a signature covers: the path, and the job a download reports its progress to.
fn signed_subject(path: &str, job: Option<&str>) -> String {
    match job {
        Some(job) => format!("{path}#{job}"),
        None => path.to_string(),
    }
}

/// A signed URL of upload or download `id` of `kind`, on the server at `base`; a download for
/// job `for_job` reports its progress to that job's log.
pub(crate) fn signed_url(
    shared: &Shared,
    base: &str,
    kind: Kind,
    id: i64,
    access: &str,
    for_job: Option<&JobScope>,
) -> String {
    let path = format!("/blob/{}/{id}", kind.as_str());
    let expires = jiff::Timestamp::now().as_second()
        + i64::try_from(URL_TTL.as_secs()).unwrap_or(i64::MAX / 2);
    let job = for_job.map(|s| format!("{}/{}", s.run_id, s.job_id));
    let sig = shared
        .key
        .url_signature(&signed_subject(&path, job.as_deref()), access, expires);
    let job = job.map(|j| format!("&job={j}")).unwrap_or_default();
    format!("{base}{path}?sp={access}&se={expires}{job}&sig={sig}")
}

#[derive(Debug, Deserialize)]
pub(crate) struct BlobQuery {
    sp: String,
    se: i64,
    sig: String,
    job: Option<String>,
    comp: Option<String>,
    blockid: Option<String>,
}

/// `PUT|GET|HEAD /blob/{kind}/{id}`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((kind, id)): Path<(String, i64)>,
    Query(query): Query<BlobQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let kind = Kind::parse(&kind)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such blob"))?;
        let access = if method == Method::PUT { "w" } else { "r" };
        if query.sp != access {
            return Err(ApiError::forbidden("the URL does not grant this access"));
        }
        let path = format!("/blob/{}/{id}", kind.as_str());
        shared
            .key
            .verify_url(
                &signed_subject(&path, query.job.as_deref()),
                access,
                query.se,
                &query.sig,
            )
            .map_err(|e| ApiError::forbidden(format!("signed URL refused: {e}")))?;
        match method {
            Method::PUT => upload(&shared, kind, id, &query, body).await,
            Method::GET | Method::HEAD => {
                let watcher = query.job.as_deref().filter(|_| method == Method::GET);
                download(&shared, kind, id, &headers, method == Method::HEAD, watcher).await
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported method",
            )),
        }
    }
    .await;
    result.unwrap_or_else(ApiError::blob)
}

fn limit(shared: &Shared, kind: Kind) -> u64 {
    match kind {
        Kind::Cache => shared.limits.cache_bytes,
        Kind::Artifact => shared.limits.artifact_bytes,
    }
}

async fn upload(
    shared: &Shared,
    kind: Kind,
    id: i64,
    query: &BlobQuery,
    body: Body,
) -> Result<Response, ApiError> {
    if !shared.store.is_uploading(kind, id)? {
        return Err(ApiError::new(StatusCode::CONFLICT, "the upload is closed"));
    }
    let limit = limit(shared, kind);
    let store = &shared.store;
    match query.comp.as_deref() {
        None => {
            write_body(
                shared,
                kind,
                id,
                &store.staging_path(kind, id),
                0,
                true,
                body,
                limit,
            )
            .await?;
        }
        Some("block") => {
            let block_id = query
                .blockid
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("blockid is required"))?;
            let dir = store.blocks_dir(kind, id);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(ApiError::internal)?;
            let staged = staged_bytes(&dir).await;
            let path = dir.join(block_file(block_id));
            write_body(
                shared,
                kind,
                id,
                &path,
                0,
                true,
                body,
                limit.saturating_sub(staged),
            )
            .await?;
        }
        Some("blocklist") => {
            let list = axum::body::to_bytes(body, 4 << 20)
                .await
                .map_err(|e| ApiError::bad_request(format!("block list: {e}")))?;
            let ids = block_ids(&String::from_utf8_lossy(&list));
            let dir = store.blocks_dir(kind, id);
            let mut parts: Vec<PathBuf> = Vec::with_capacity(ids.len());
            for block in &ids {
                let part = dir.join(block_file(block));
                if !part.exists() {
                    return Err(ApiError::bad_request(format!(
                        "block {block} was not staged"
                    )));
                }
                parts.push(part);
            }
            concatenate(&parts, &store.staging_path(kind, id)).await?;
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "comp={other} is not supported"
            )));
        }
    }
    Ok(created())
}

/// The file name of a staged block: a digest of its id, so that no id names a path.
fn block_file(block_id: &str) -> String {
    crate::store::hex(&Sha256::digest(block_id.as_bytes()))
}

/// The block ids of a `<BlockList>`, in order (`Latest`, `Committed` or `Uncommitted`).
fn block_ids(xml: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if matches!(tag, "Latest" | "Committed" | "Uncommitted") {
            let end = rest.find('<').unwrap_or(rest.len());
            ids.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    ids
}

async fn staged_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            total += entry.metadata().await.map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

async fn concatenate(parts: &[PathBuf], to: &std::path::Path) -> Result<(), ApiError> {
    let mut out = tokio::fs::File::create(to)
        .await
        .map_err(ApiError::internal)?;
    for part in parts {
        let mut input = tokio::fs::File::open(part)
            .await
            .map_err(ApiError::internal)?;
        tokio::io::copy(&mut input, &mut out)
            .await
            .map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    Ok(())
}

/// Streams `body` into `path` at `offset`. Past `limit` bytes the whole upload is dropped
/// (nothing of it is kept) and refused.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_body(
    shared: &Shared,
    kind: Kind,
    id: i64,
    path: &std::path::Path,
    offset: u64,
    truncate: bool,
    body: Body,
    limit: u64,
) -> Result<u64, ApiError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .open(path)
        .await
        .map_err(ApiError::internal)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(ApiError::internal)?;
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        written += chunk.len() as u64;
        if offset + written > limit {
            drop(file);
            shared.store.abandon(kind, id)?;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is over the limit of {limit} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    Ok(written)
}

fn azure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    let now = jiff::Timestamp::now();
    let http_date = jiff::fmt::rfc2822::to_string(&now.to_zoned(jiff::tz::TimeZone::UTC))
        .unwrap_or_default()
        .replace("+0000", "GMT");
    for (name, value) in [
        ("x-ms-request-id", uuid::Uuid::new_v4().to_string()),
        ("x-ms-version", "2024-11-04".to_string()),
        ("x-ms-request-server-encrypted", "true".to_string()),
        ("date", http_date.clone()),
        ("last-modified", http_date),
        ("etag", format!("\"0x{:X}\"", now.as_nanosecond())),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

fn created() -> Response {
    let mut response = StatusCode::CREATED.into_response();
    azure_headers(&mut response);
    response
}

/// `Range: bytes=A-B` (or `x-ms-range`), clamped to `size`.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers
        .get("x-ms-range")
        .or_else(|| headers.get(header::RANGE))
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("bad range {value}"),
        )
    };
    let spec = value.strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    let (start, end) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let start: u64 = start.parse().map_err(|_| unsatisfiable())?;
    let end: u64 = if end.is_empty() {
        size.saturating_sub(1)
    } else {
        end.parse::<u64>()
            .map_err(|_| unsatisfiable())?
            .min(size.saturating_sub(1))
    };
    if start >= size || end < start {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// Counts the bytes of a download and reports each tenth of it to the job's log.
struct Progress {
    shared: Arc<Shared>,
    run: String,
    job: String,
    what: String,
    total: u64,
    sent: u64,
    next_tenth: u64,
    started: std::time::Instant,
}

impl Progress {
    fn advance(&mut self, bytes: usize) {
        self.sent += bytes as u64;
        let tenths = self.sent * 10 / self.total.max(1);
        if tenths < self.next_tenth {
            return;
        }
        self.next_tenth = tenths + 1;
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "azlin: {} sent {:.1} of {:.1} MB ({}%), {:.0} MB/s",
            self.what,
            self.sent as f64 / 1e6,
            self.total as f64 / 1e6,
            tenths * 10,
            self.sent as f64 / 1e6 / seconds
        );
        self.shared.progress(&self.run, &self.job, line);
    }
}

async fn download(
    shared: &Arc<Shared>,
    kind: Kind,
    id: i64,
    headers: &HeaderMap,
    head_only: bool,
    watcher: Option<&str>,
) -> Result<Response, ApiError> {
    let (digest, what) = match kind {
        Kind::Cache => {
            let entry = shared.store.cache(id)?;
            (entry.digest, format!("cache '{}'", entry.key))
        }
        Kind::Artifact => {
            let entry = shared.store.artifact_by_id(id)?;
            (entry.digest, format!("artifact '{}'", entry.name))
        }
    };
    let digest = digest.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not finished"))?;
    let path = shared.store.blob_path(&digest);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = requested_range(headers, size)?;
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head_only {
        Body::empty()
    } else {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
        let reader = tokio::io::AsyncReadExt::take(file, length);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20);
        let watched = watcher
            .and_then(|w| w.split_once('/'))
            .filter(|_| length >= PROGRESS_MIN_BYTES);
        match watched {
            Some((run, job)) => {
                let mut progress = Progress {
                    shared: shared.clone(),
                    run: run.to_string(),
                    job: job.to_string(),
                    what,
                    total: length,
                    sent: 0,
                    next_tenth: 1,
                    started: std::time::Instant::now(),
                };
                Body::from_stream(stream.inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        progress.advance(chunk.len());
                    }
                }))
            }
            None => Body::from_stream(stream),
        }
    };
    let mut response = (status, body).into_response();
    azure_headers(&mut response);
    let h = response.headers_mut();
    let content_type = match kind {
        Kind::Cache => "application/octet-stream",
        Kind::Artifact => "application/zip",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
    if let Some((start, end)) = range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_give_their_ids_in_order() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QUFB</Latest>\
                   <Uncommitted>QkJC</Uncommitted><Committed> Q0ND </Committed></BlockList>";
        assert_eq!(block_ids(xml), ["QUFB", "QkJC", "Q0ND"]);
        assert!(block_ids("<BlockList></BlockList>").is_empty());
    }

    #[test]
    fn block_ids_never_name_a_path() {
        let file = block_file("../../etc/passwd");
        assert_eq!(file.len(), 64);
        assert!(file.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn ranges_are_parsed_and_clamped() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_range(&h, 10).unwrap(), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some((2, 9)));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=0-99"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some((0, 9)));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=10-11"));
        assert!(requested_range(&h, 10).is_err());
    }
}
