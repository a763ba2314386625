//! The services over real HTTP on loopback, request by request as the clients send them, and
//! every refusal a job (or a stranger) can provoke. The unmodified clients themselves run
//! against the services in the CLI's end-to-end tests (`caches.rs`).

// Harness code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use azlin_services::{CacheOutcome, JobScope, Limits, Services, ServicesConfig, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};

const CACHE: &str = "twirp/github.actions.results.api.v1.CacheService";
const ARTIFACT: &str = "twirp/github.actions.results.api.v1.ArtifactService";

fn scope(repository: &str, run: &str, job: &str) -> JobScope {
    JobScope {
        repository: repository.into(),
        git_ref: "refs/heads/feature".into(),
        fallback_refs: vec!["refs/heads/main".into()],
        run_id: run.into(),
        job_id: job.into(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store_dir: std::path::PathBuf,
    services: Services,
    base: String,
    http: reqwest::Client,
}

async fn start(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("services");
    let services = Services::start(ServicesConfig {
        dir: store_dir.clone(),
        limits,
        cache_protocol: Default::default(),
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        port: None,
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}/", services.port());
    Fixture {
        _dir: dir,
        store_dir,
        services,
        base,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    fn token(&self, scope: &JobScope) -> String {
        self.services.token(scope)
    }

    async fn twirp(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A call of the cache service's method `method`.
    async fn cache(&self, token: &str, method: &str, body: Value) -> (StatusCode, Value) {
        self.twirp(token, &format!("{CACHE}/{method}"), body).await
    }

    /// A call of the artifact service's method `method`.
    async fn artifact(&self, token: &str, method: &str, body: Value) -> (StatusCode, Value) {
        self.twirp(token, &format!("{ARTIFACT}/{method}"), body)
            .await
    }

    async fn put(&self, url: &str, body: Vec<u8>) -> StatusCode {
        self.http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn get(&self, url: &str) -> (StatusCode, Vec<u8>) {
        let response = self.http.get(url).send().await.unwrap();
        (response.status(), response.bytes().await.unwrap().to_vec())
    }

    fn store(&self) -> Store {
        Store::open(&self.store_dir).unwrap()
    }

    fn uploads_are_empty(&self) -> bool {
        std::fs::read_dir(self.store_dir.join("uploads"))
            .unwrap()
            .next()
            .is_none()
    }
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    azlin_services::store::hex(&sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn cache_v2_saves_by_blocks_and_restores_by_exact_key_and_by_prefix() {
    let f = start(Limits::default()).await;
    let job = scope("octo/app", "1", "build");
    let token = f.token(&job);
    let (status, created) = f
        .cache(
            &token,
            "CreateCacheEntry",
            json!({"key": "deps-abc", "version": "v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let upload = created["signed_upload_url"].as_str().unwrap().to_string();
    // Two blocks, committed in order, as the storage client does for large files.
    let (a, b) = (vec![1u8; 1000], vec![2u8; 500]);
    for (id, bytes) in [("QUFB", a.clone()), ("QkJC", b.clone())] {
        let status = f
            .http
            .put(format!("{upload}&comp=block&blockid={id}"))
            .body(bytes)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    let list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QUFB</Latest><Latest>QkJC</Latest></BlockList>";
    let status = f
        .http
        .put(format!("{upload}&comp=blocklist"))
        .body(list)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::CREATED);
    let (status, done) = f
        .cache(
            &token,
            "FinalizeCacheEntryUpload",
            json!({"key": "deps-abc", "version": "v1", "size_bytes": "1500"}),
        )
        .await;
    assert_eq!(
        (status, done["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{done}"
    );

    // Another job of a later run on the same ref restores it by a restore-key prefix.
    let later = f.token(&scope("octo/app", "2", "test"));
    let (_, found) = f
        .cache(
            &later,
            "GetCacheEntryDownloadURL",
            json!({"key": "deps-xyz", "restore_keys": ["deps-"], "version": "v1"}),
        )
        .await;
    assert_eq!(found["matched_key"], "deps-abc");
    let (status, bytes) = f.get(found["signed_download_url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, [a, b].concat());
    assert_eq!(
        f.services.take_cache_uses("2", "test")[0].outcome,
        CacheOutcome::RestoreKeyHit
    );

    // Another repository never sees it; another version neither.
    let stranger = f.token(&scope("evil/app", "3", "x"));
    let (_, miss) = f
        .cache(
            &stranger,
            "GetCacheEntryDownloadURL",
            json!({"key": "deps-abc", "version": "v1"}),
        )
        .await;
    assert_eq!(miss["ok"], false);
    let (_, miss) = f
        .cache(
            &later,
            "GetCacheEntryDownloadURL",
            json!({"key": "deps-abc", "version": "v2"}),
        )
        .await;
    assert_eq!(miss["ok"], false);
    // Saving the same key again on the same ref is refused (ok: false), as on GitHub.
    let (_, again) = f
        .cache(
            &token,
            "CreateCacheEntry",
            json!({"key": "deps-abc", "version": "v1"}),
        )
        .await;
    assert_eq!(again["ok"], false);
}

#[tokio::test]
async fn cache_v1_saves_in_chunks_and_restores_through_its_archive_location() {
    let f = start(Limits::default()).await;
    let token = f.token(&scope("octo/app", "1", "build"));
    let api = format!("{}_apis/artifactcache", f.base);
    let reserved: Value = f
        .http
        .post(format!("{api}/caches"))
        .bearer_auth(&token)
        .json(&json!({"key": "k1", "version": "v", "cacheSize": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = reserved["cacheId"].as_i64().unwrap();
    // Chunks may arrive out of order.
    for (range, bytes) in [("bytes 5-9/*", b"world"), ("bytes 0-4/*", b"hello")] {
        let status = f
            .http
            .patch(format!("{api}/caches/{id}"))
            .bearer_auth(&token)
            .header("Content-Range", range)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let status = f
        .http
        .post(format!("{api}/caches/{id}"))
        .bearer_auth(&token)
        .json(&json!({"size": 10}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = f
        .http
        .get(format!("{api}/cache?keys=k1,k&version=v"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let hit: Value = response.json().await.unwrap();
    assert_eq!(hit["cacheKey"], "k1");
    let (_, bytes) = f.get(hit["archiveLocation"].as_str().unwrap()).await;
    assert_eq!(bytes, b"helloworld");
    let miss = f
        .http
        .get(format!("{api}/cache?keys=nothing&version=v"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn artifacts_go_up_and_come_back_within_their_run() {
    let f = start(Limits::default()).await;
    let upload_job = scope("octo/app", "7", "build");
    let token = f.token(&upload_job);
    let ids = json!({"workflow_run_backend_id": "7", "workflow_job_run_backend_id": "build"});
    let with = |extra: Value| {
        let mut body = ids.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, created) = f
        .artifact(
            &token,
            "CreateArtifact",
            with(json!({"name": "dist", "version": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let zip = zip_of(&[("a.txt", b"alpha"), ("sub/b.bin", &[7u8; 4096])]);
    assert_eq!(
        f.put(created["signed_upload_url"].as_str().unwrap(), zip.clone())
            .await,
        StatusCode::CREATED
    );
    let (status, done) = f
        .artifact(&token, "FinalizeArtifact",
            with(json!({"name": "dist", "size": zip.len().to_string(), "hash": format!("sha256:{}", sha256(&zip))})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");

    // A later job of the same run lists and downloads it.
    let reader = f.token(&scope("octo/app", "7", "deploy"));
    let reader_ids =
        json!({"workflow_run_backend_id": "7", "workflow_job_run_backend_id": "deploy"});
    let (_, listed) = f
        .artifact(&reader, "ListArtifacts", reader_ids.clone())
        .await;
    assert_eq!(listed["artifacts"][0]["name"], "dist");
    assert_eq!(listed["artifacts"][0]["size"], zip.len().to_string());
    let mut get = reader_ids.clone();
    get["name"] = json!("dist");
    let (_, url) = f.artifact(&reader, "GetSignedArtifactURL", get).await;
    let (status, bytes) = f.get(url["signed_url"].as_str().unwrap()).await;
    assert_eq!((status, bytes), (StatusCode::OK, zip.clone()));

    // The store extracts it for `azlin artifacts download`.
    let out = tempfile::tempdir().unwrap();
    let store = f.store();
    let entry = &store.artifacts(None, "7").unwrap()[0];
    azlin_services::extract(&store, entry, out.path()).unwrap();
    assert_eq!(
        std::fs::read(out.path().join("sub/b.bin")).unwrap(),
        vec![7u8; 4096]
    );

    // Another run sees nothing of it.
    let other = f.token(&scope("octo/app", "8", "build"));
    let (_, empty) = f
        .artifact(
            &other,
            "ListArtifacts",
            json!({"workflow_run_backend_id": "8", "workflow_job_run_backend_id": "build"}),
        )
        .await;
    assert_eq!(empty["artifacts"], json!([]));
}

#[tokio::test]
async fn refusals_store_nothing() {
    let f = start(Limits {
        artifact_bytes: 64 * 1024,
        ..Limits::default()
    })
    .await;
    let job = scope("octo/app", "7", "build");
    let token = f.token(&job);
    let ids = |name: &str| json!({"workflow_run_backend_id": "7", "workflow_job_run_backend_id": "build", "name": name, "version": 4});
    let create = format!("{ARTIFACT}/CreateArtifact");

    // No token, a forged one, one signed by another key.
    let (status, body) = f.twirp("", &create, ids("a")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let mut forged: Vec<String> = token.split('.').map(str::to_string).collect();
    let evil = f.token(&scope("evil/app", "7", "build"));
    forged[1] = evil.split('.').nth(1).unwrap().to_string();
    let (status, _) = f.twirp(&forged.join("."), &create, ids("a")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign_key =
        azlin_services::SigningKey::load_or_create(&elsewhere.path().join("k")).unwrap();
    let foreign = foreign_key.issue(&job, std::time::Duration::from_secs(60));
    let (status, _) = f.twirp(&foreign, &create, ids("a")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another run's token, used on this run's artifacts.
    let other_run = f.token(&scope("octo/app", "8", "build"));
    let (status, _) = f.twirp(&other_run, &create, ids("a")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Traversal in a name.
    for name in ["../../etc/passwd", "a/b", "..\\x"] {
        let (status, body) = f.twirp(&token, &create, ids(name)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }

    // Traversal in a file path inside the zip.
    let (_, created) = f.twirp(&token, &create, ids("evil")).await;
    let zip = zip_of(&[("../../escape.sh", b"boom")]);
    f.put(created["signed_upload_url"].as_str().unwrap(), zip.clone())
        .await;
    let (status, body) = f
        .artifact(&token, "FinalizeArtifact",
            json!({"workflow_run_backend_id": "7", "workflow_job_run_backend_id": "build", "name": "evil", "size": zip.len().to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Over the size limit.
    let (_, created) = f.twirp(&token, &create, ids("big")).await;
    let status = f
        .put(
            created["signed_upload_url"].as_str().unwrap(),
            vec![0u8; 200 * 1024],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A signed URL altered to reach another upload.
    let (_, created) = f.twirp(&token, &create, ids("c")).await;
    let url = created["signed_upload_url"].as_str().unwrap();
    let (path, query) = url.split_once('?').unwrap();
    let (prefix, id) = path.rsplit_once('/').unwrap();
    let moved = format!("{prefix}/{}?{query}", id.parse::<i64>().unwrap() + 1);
    assert_eq!(f.put(&moved, b"x".to_vec()).await, StatusCode::FORBIDDEN);
    // A download URL is not an upload URL.
    let read_only = url.replace("sp=w", "sp=r");
    assert_eq!(
        f.put(&read_only, b"x".to_vec()).await,
        StatusCode::FORBIDDEN
    );
    f.store()
        .abandon(azlin_services::store::Kind::Artifact, id.parse().unwrap())
        .unwrap();

    assert!(f.store().artifacts(None, "7").unwrap().is_empty());
    assert!(f.uploads_are_empty(), "staged bytes were left behind");
    let blobs = std::fs::read_dir(f.store_dir.join("blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn caches_artifacts_and_tokens_survive_a_restart() {
    let f = start(Limits::default()).await;
    let job = scope("octo/app", "1", "build");
    let token = f.token(&job);
    let (_, created) = f
        .cache(
            &token,
            "CreateCacheEntry",
            json!({"key": "k", "version": "v"}),
        )
        .await;
    f.put(
        created["signed_upload_url"].as_str().unwrap(),
        b"kept".to_vec(),
    )
    .await;
    f.cache(
        &token,
        "FinalizeCacheEntryUpload",
        json!({"key": "k", "version": "v", "size_bytes": "4"}),
    )
    .await;
    let Fixture {
        _dir,
        store_dir,
        services,
        http,
        ..
    } = f;
    services.shutdown().await;

    let again = Services::start(ServicesConfig {
        dir: store_dir,
        limits: Limits::default(),
        cache_protocol: Default::default(),
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        port: None,
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}/", again.port());
    // The token issued before the restart still works, and the cache is still there.
    let found: Value = http
        .post(format!("{base}{CACHE}/GetCacheEntryDownloadURL"))
        .bearer_auth(&token)
        .json(&json!({"key": "k", "version": "v"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = found["signed_download_url"].as_str().unwrap();
    let bytes = http.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"kept");
}
