//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while resolving or fetching from the Hub.
///
/// Messages name the repository, revision and file involved and, where the user can act,
/// say what to do. No variant ever carries the access token; URLs in messages have their
/// query string removed (CDN URLs carry signatures).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The text is not a Hub repository id (`owner/name`).
    #[error("`{spec}` is not a Hub repository id (owner/name[@revision]): {reason}")]
    InvalidRepoId { spec: String, reason: String },

    /// The revision cannot be used (it would escape the cache, or is empty).
    #[error("revision `{revision}` cannot be used: {reason}")]
    InvalidRevision { revision: String, reason: String },

    /// A file name from the user or the server that would land outside the cache folder.
    #[error("refusing file `{file}` of {repo}: {reason}")]
    UnsafePath { repo: String, file: String, reason: String },

    /// The Hub says the repository does not exist (or is private and we may not see it).
    #[error(
        "repository {repo} was not found on {endpoint}{hint}",
        hint = if *.authenticated {
            " (if it is private, check that your token can read it)"
        } else {
            " (if it is private, set HF_TOKEN or log in with `hf auth login`)"
        }
    )]
    RepoNotFound { repo: String, endpoint: String, authenticated: bool },

    /// The repository exists but has no such branch, tag or commit.
    #[error("revision `{revision}` was not found in {repo}")]
    RevisionNotFound { repo: String, revision: String },

    /// The revision exists but has no such file.
    #[error("file `{file}` was not found in {repo} at revision `{revision}`")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
        /// The commit the revision resolved to, when the Hub said.
        commit: Option<String>,
    },

    /// A gated repository: the user must accept its licence on the Hub and use a token.
    #[error(
        "{repo} is a gated repository: accept its licence at {endpoint}/{repo} while logged in, \
         then {what}",
        what = if *.authenticated {
            "make sure the token in HF_TOKEN (or the token file) belongs to that account \
             and can read gated repos"
        } else {
            "set HF_TOKEN to an access token of that account (or log in with `hf auth login`)"
        }
    )]
    Gated { repo: String, endpoint: String, authenticated: bool },

    /// Any other HTTP error status.
    #[error("{what}: HTTP {status} from {url}{detail}", detail = fmt_detail(.message))]
    Http { what: String, url: String, status: u16, message: Option<String> },

    /// The connection failed or broke (after all resume attempts).
    #[error("{what}: cannot reach {url}: {reason}")]
    Network { what: String, url: String, reason: String },

    /// The server's answer lacks something the protocol needs.
    #[error("{what}: the answer from {url} {problem}")]
    Protocol { what: String, url: String, problem: String },

    /// The downloaded file does not have the size the Hub announced.
    #[error("download of `{file}` from {repo}: expected {expected} bytes, got {found}")]
    SizeMismatch { repo: String, file: String, expected: u64, found: u64 },

    /// The downloaded bytes do not hash to the Hub's etag: the file is not used.
    #[error(
        "download of `{file}` from {repo} is corrupt: expected {algorithm} {expected}, \
         got {found}; the bytes were discarded"
    )]
    ChecksumMismatch {
        repo: String,
        file: String,
        algorithm: &'static str,
        expected: String,
        found: String,
    },

    /// Offline mode and the cache lacks what is needed.
    #[error(
        "offline (HF_HUB_OFFLINE is set) and {repo}@{revision} is not complete in the cache \
         {cache}{note}; missing: {}",
        .missing.join(", ")
    )]
    OfflineMissing {
        repo: String,
        revision: String,
        cache: PathBuf,
        /// Why, when more can be said (for example that the revision was never fetched).
        note: String,
        missing: Vec<String>,
    },

    /// The repository has weights only as pickle files, which are never loaded.
    #[error(
        "{repo}@{revision} has weights only as pickle ({}), which funmatch never loads; {}",
        .files.join(", "),
        match .alternative {
            Some(alt) => format!("a safetensors version exists: use `{alt}`"),
            None => "no safetensors version was found (a conversion pull request on the Hub \
                     would provide one)".to_string(),
        }
    )]
    PickleOnly { repo: String, revision: String, files: Vec<String>, alternative: Option<String> },

    /// The repository has no weights in a format we read.
    #[error(
        "{repo}@{revision} has no weights funmatch can read (model.safetensors, a sharded \
         model.safetensors.index.json or a BiT .npz); its files: {}",
        .files.join(", ")
    )]
    NoWeights { repo: String, revision: String, files: Vec<String> },

    /// Several candidate weight files and no rule to choose.
    #[error("{repo}@{revision} has several weight files ({}); fetch one with `--file`", .files.join(", "))]
    AmbiguousWeights { repo: String, revision: String, files: Vec<String> },

    /// A safetensors file whose header is unreasonable or broken.
    #[error("safetensors file {path}: {reason}")]
    SafetensorsHeader { path: PathBuf, reason: String },

    /// A JSON answer or file that does not parse.
    #[error("{what}: cannot parse JSON from {source_name}: {reason}")]
    Json { what: String, source_name: String, reason: String },

    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn fmt_detail(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}

impl HubError {
    /// Builds an [`HubError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io { op, path: path.into(), source }
    }
}

/// Shorthand used inside the crate.
pub(crate) type Result<T, E = HubError> = std::result::Result<T, E>;
