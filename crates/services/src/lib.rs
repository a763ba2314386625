//! The cache and artifact services that workflow jobs reach on the host.
//!
//! They speak GitHub's own protocols, so that the unmodified `actions/cache` and the
//! `@actions/artifact` client (what `upload-artifact` and `download-artifact` use) work:
//! the cache's v1 REST API and v2 Twirp service ([`cache`]), the artifact Twirp service of
//! protocol v4 ([`artifact`]), and uploads and downloads by signed URL in the dialect of
//! Azure Blob Storage ([`blob`]). Every request carries a job's runtime token ([`token`]),
//! which scopes it to one repository, run and job. Bytes are kept content-addressed with an
//! index in SQLite ([`store`]), under a size limit per repository with LRU eviction.

mod artifact;
mod blob;
mod cache;
mod http;
mod server;
pub mod store;
pub mod token;

pub use artifact::{check_name, check_zip, extract};
pub use server::{
    CacheOutcome, CacheProtocol, CacheUse, Limits, Services, ServicesConfig, ServicesError,
};
pub use store::{ArtifactEntry, CacheEntry, Store, StoreError};
pub use token::{JobScope, SigningKey, TokenError};
