//! `funmatch-hub`: fetching models from the Hugging Face Hub.
//!
//! It speaks the Hub's download protocol and keeps files in the cache layout of Python's
//! `huggingface_hub` (`models--owner--name/{blobs,snapshots,refs}`, relative symlinks,
//! `.locks`), configured by the same environment variables (`HF_HOME`, `HF_HUB_CACHE`,
//! `HF_HUB_OFFLINE`, `HF_TOKEN` and the token file, `HF_ENDPOINT`), so a model fetched by
//! either tool is found by the other.
//!
//! - [`resolve_model`]: `owner/name[@revision]` → a local folder with `config.json` and the
//!   weights (safetensors, sharded safetensors or a BiT `.npz`); pickle-only repositories are
//!   refused, naming a safetensors revision when the Hub has one.
//! - [`fetch`] and [`fetch_file`]: a chosen set of files, or all of them.
//! - [`check_safetensors_header`]: a bound on the header before anything is allocated.
//! - [`looks_like_hub_id`]: for callers deciding between a local path and a Hub id.
//!
//! Guarantees: a file enters the cache only after its size and hash match what the Hub
//! announced (sha256 for LFS files, git's blob sha1 for small ones); broken downloads are
//! resumed with HTTP ranges; concurrent fetches of one file take turns on a lock file; file
//! names from users or servers that would leave the cache are refused; the token is sent to
//! the Hub's host only (never to the CDN) and never printed. Offline (`HF_HUB_OFFLINE`), or
//! when the Hub cannot be reached, a complete cached snapshot is served and anything missing
//! is named.
//!
//! The cache is shared safely with huggingface_hub: both lock `.locks/<repo>/<etag>.lock`
//! with `flock`, so a download by one tool waits for the other's.
//!
//! # Why not the hf-hub crate
//!
//! We implement the protocol on `ureq` rather than use `hf-hub`. Its 0.4 sync API (ureq 2)
//! follows the CDN redirects correctly since 0.4.2 but does not check sha256, appends a
//! resumed body without checking that the server answered 206 (a server ignoring `Range`
//! corrupts the file), does not check the final size, ignores `HF_HUB_CACHE` and
//! `HF_HUB_OFFLINE`, does not read the Hub's `X-Error-Code`, does not validate file names,
//! and pulls in native-tls (OpenSSL). Version 1.0 is async (tokio + reqwest) and downloads
//! without `Range` resume or a hash check either. The protocol is small — a HEAD, a GET
//! with `Range`, two JSON endpoints — and owning it lets us meet each requirement above.
//!
//! # Errors and panics
//!
//! Everything a user, a file, the cache or the network can cause is a [`HubError`]. Panics
//! are reserved for broken invariants of this crate (a constant template that fails to
//! parse, a path without a parent that was built with one).

mod cache;
mod download;
mod error;
mod fetch;
mod http;
mod model;
mod options;
mod progress;
mod repo;
mod safetensors_check;

#[cfg(feature = "fake-hub")]
pub mod fake_hub;

pub use error::HubError;
pub use fetch::{fetch, fetch_file, FileSelection};
pub use model::resolve_model;
pub use options::{HubOptions, ProgressMode, Token, DEFAULT_ENDPOINT};
pub use repo::{looks_like_hub_id, RepoId, RepoSpec, DEFAULT_REVISION};
pub use safetensors_check::{check_safetensors_header, MAX_SAFETENSORS_HEADER};
