//! The few Hub HTTP calls we make, and the translation of the Hub's error headers.
//!
//! - `HEAD {endpoint}/{repo}/resolve/{revision}/{file}`: file metadata. Redirects that stay
//!   on the Hub's host (a renamed repository, answered with a relative `Location`) are
//!   followed; a redirect to another host is the CDN, and the metadata is read from that
//!   redirect response itself (`X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`).
//! - `GET` of the file (or of its CDN location) with `Range: bytes=N-` to resume.
//! - `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true`: the commit and its
//!   files with sizes and LFS sha256.
//! - `GET {endpoint}/api/models/{repo}/refs?include_prs=1`: branches, tags and pull-request
//!   refs (`refs/pr/N`), used to find a safetensors alternative to a pickle-only repo.
//!
//! The token goes to the Hub's host only, never to the CDN (whose URLs are pre-signed).

use std::io::Read;

use serde::Deserialize;
use ureq::http::Response;
use ureq::Body;

use crate::error::{HubError, Result};
use crate::options::{HubOptions, Token};
use crate::repo::{url_encode, RepoId};

const USER_AGENT: &str = concat!("funmatch/", env!("CARGO_PKG_VERSION"));

/// Redirects followed on the Hub's own host before giving up.
const MAX_HUB_REDIRECTS: usize = 5;

/// What the Hub says about one file at one revision.
#[derive(Clone, Debug)]
pub(crate) struct FileMeta {
    /// The commit the revision resolved to (`X-Repo-Commit`).
    pub(crate) commit: String,
    /// sha256 for LFS files (`X-Linked-Etag`), git sha1 for the others (`ETag`).
    pub(crate) etag: String,
    /// Whether the etag is an LFS sha256 (the file lives on the CDN).
    pub(crate) lfs: bool,
    /// Size in bytes (`X-Linked-Size`, or `Content-Length` of a direct answer).
    pub(crate) size: u64,
    /// Where to download from: the CDN location or the resolve URL.
    pub(crate) location: String,
}

/// `GET /api/models/{repo}/revision/{revision}`, the fields we use.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RevisionInfo {
    pub(crate) sha: String,
    #[serde(default)]
    pub(crate) siblings: Vec<Sibling>,
}

/// One file in [`RevisionInfo`].
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Sibling {
    pub(crate) rfilename: String,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default, rename = "blobId")]
    pub(crate) blob_id: Option<String>,
    #[serde(default)]
    pub(crate) lfs: Option<SiblingLfs>,
}

/// LFS details of a [`Sibling`].
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SiblingLfs {
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

/// `GET /api/models/{repo}/refs`, the fields we use.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct GitRefs {
    #[serde(default)]
    pub(crate) branches: Vec<GitRef>,
    #[serde(default, rename = "pullRequests")]
    pub(crate) pull_requests: Vec<GitRef>,
}

/// One ref in [`GitRefs`].
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct GitRef {
    pub(crate) name: String,
    #[serde(rename = "ref")]
    pub(crate) git_ref: String,
}

/// An HTTP client bound to one endpoint and token.
pub(crate) struct Client {
    endpoint: String,
    endpoint_authority: String,
    token: Option<Token>,
    /// Follows no redirects: the redirect response carries the metadata.
    hub: ureq::Agent,
    /// For downloads: follows redirects, never forwarding `Authorization` (ureq's default).
    download: ureq::Agent,
}

/// The context of a request, for error messages.
pub(crate) struct Ctx<'a> {
    pub(crate) repo: &'a RepoId,
    pub(crate) revision: &'a str,
    pub(crate) file: Option<&'a str>,
}

impl Client {
    pub(crate) fn new(opts: &HubOptions) -> Client {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .max_redirects(redirects)
                .http_status_as_error(false)
                .user_agent(USER_AGENT)
                .timeout_connect(Some(opts.timeout))
                .timeout_per_read(Some(opts.timeout))
                .build()
                .into()
        };
        Client {
            endpoint: opts.endpoint.clone(),
            endpoint_authority: authority(&opts.endpoint).to_string(),
            token: opts.token.clone(),
            hub: agent(0),
            download: agent(10),
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn authenticated(&self) -> bool {
        self.token.is_some()
    }

    /// The resolve URL of `file` at `revision`.
    pub(crate) fn resolve_url(&self, repo: &RepoId, revision: &str, file: &str) -> String {
        let (rev, file) = (url_encode(revision, false), url_encode(file, true));
        format!("{}/{repo}/resolve/{rev}/{file}", self.endpoint)
    }

    /// File metadata from a HEAD on the resolve URL.
    pub(crate) fn file_meta(&self, ctx: &Ctx, file: &str) -> Result<FileMeta> {
        let what = format!("metadata of `{file}` in {}@{}", ctx.repo, ctx.revision);
        let mut url = self.resolve_url(ctx.repo, ctx.revision, file);
        let mut hops = 0;
        let response = loop {
            let request = self.hub.head(&url).header("Accept-Encoding", "identity");
            let response =
                self.with_auth(request, &url).call().map_err(|e| network(&what, &url, e))?;
            let status = response.status().as_u16();
            if !(300..400).contains(&status) {
                break response;
            }
            let target = header(&response, "location")
                .map(|loc| join_url(&url, loc))
                .ok_or_else(|| protocol(&what, &url, "is a redirect without a Location"))?;
            // Another host is the CDN: this response holds the metadata.
            if authority(&target) != self.endpoint_authority {
                break response;
            }
            hops += 1;
            if hops > MAX_HUB_REDIRECTS {
                return Err(protocol(&what, &url, "redirects too many times"));
            }
            tracing::debug!(from = %redact(&url), to = %redact(&target), "following a Hub redirect");
            url = target;
        };

        let status = response.status().as_u16();
        if status >= 400 {
            return Err(self.status_error(&what, &url, &response, ctx));
        }
        let commit = header(&response, "x-repo-commit")
            .ok_or_else(|| {
                protocol(&what, &url, "has no X-Repo-Commit header (is HF_ENDPOINT a Hub?)")
            })?
            .to_string();
        let linked = header(&response, "x-linked-etag");
        let etag = linked
            .or_else(|| header(&response, "etag"))
            .map(normalize_etag)
            .ok_or_else(|| protocol(&what, &url, "has no ETag"))?;
        let size = header(&response, "x-linked-size")
            .or_else(|| (status < 300).then(|| header(&response, "content-length")).flatten())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| protocol(&what, &url, "gives no file size"))?;
        let location = match status {
            300..=399 => join_url(&url, header(&response, "location").unwrap_or_default()),
            _ => url.clone(),
        };
        Ok(FileMeta { commit, etag, lfs: linked.is_some(), size, location })
    }

    /// Starts a GET of `url` from byte `start` on (the whole file when 0).
    pub(crate) fn get_from(&self, what: &str, url: &str, start: u64) -> Result<Response<Body>> {
        let mut request = self.download.get(url).header("Accept-Encoding", "identity");
        if start > 0 {
            request = request.header("Range", format!("bytes={start}-"));
        }
        self.with_auth(request, url).call().map_err(|e| network(what, url, e))
    }

    /// The commit and file list of a revision.
    pub(crate) fn revision_info(&self, ctx: &Ctx) -> Result<RevisionInfo> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            ctx.repo,
            url_encode(ctx.revision, false)
        );
        let what = format!("file list of {}@{}", ctx.repo, ctx.revision);
        self.get_json(&what, &url, ctx)
    }

    /// Branches and pull-request refs of a repository.
    pub(crate) fn refs(&self, ctx: &Ctx) -> Result<GitRefs> {
        let url = format!("{}/api/models/{}/refs?include_prs=1", self.endpoint, ctx.repo);
        self.get_json(&format!("refs of {}", ctx.repo), &url, ctx)
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        ctx: &Ctx,
    ) -> Result<T> {
        let request = self.hub.get(url).header("Accept", "application/json");
        let mut response =
            self.with_auth(request, url).call().map_err(|e| network(what, url, e))?;
        if response.status().as_u16() >= 300 {
            return Err(self.status_error(what, url, &response, ctx));
        }
        let mut bytes = Vec::new();
        let read =
            response.body_mut().with_config().limit(64 << 20).reader().read_to_end(&mut bytes);
        read.map_err(|e| network(what, url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| HubError::Json {
            what: what.to_string(),
            source_name: redact(url).to_string(),
            reason: e.to_string(),
        })
    }

    /// Adds the token, for the Hub's own host only.
    fn with_auth<B>(&self, request: ureq::RequestBuilder<B>, url: &str) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) if authority(url) == self.endpoint_authority => {
                request.header("Authorization", format!("Bearer {}", token.secret()))
            }
            _ => request,
        }
    }

    /// Turns an error status into the matching error, using the Hub's `X-Error-Code`.
    pub(crate) fn status_error(
        &self,
        what: &str,
        url: &str,
        response: &Response<Body>,
        ctx: &Ctx,
    ) -> HubError {
        let status = response.status().as_u16();
        let code = header(response, "x-error-code");
        let message = header(response, "x-error-message").map(str::to_string);
        let (repo, revision) = (ctx.repo.to_string(), ctx.revision.to_string());
        let endpoint = self.endpoint.clone();
        let authenticated = self.authenticated();
        match code {
            Some("GatedRepo") => HubError::Gated { repo, endpoint, authenticated },
            Some("RepoNotFound") => HubError::RepoNotFound { repo, endpoint, authenticated },
            Some("RevisionNotFound") => HubError::RevisionNotFound { repo, revision },
            Some("EntryNotFound") => {
                let file = ctx.file.unwrap_or("?").to_string();
                let commit = header(response, "x-repo-commit").map(str::to_string);
                HubError::EntryNotFound { repo, revision, file, commit }
            }
            // The Hub answers 401 for private and missing repositories alike.
            _ if status == 401 && message.as_deref() != Some(INVALID_CREDENTIALS) => {
                HubError::RepoNotFound { repo, endpoint, authenticated }
            }
            _ => HubError::Http {
                what: what.to_string(),
                url: redact(url).to_string(),
                status,
                message,
            },
        }
    }
}

const INVALID_CREDENTIALS: &str = "Invalid credentials in Authorization header";

pub(crate) fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `W/"abc"` and `"abc"` → `abc`.
fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// `scheme://host:port` of a URL (lower-cased), or "" for a relative one.
pub(crate) fn authority(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
}

/// Resolves a `Location` against the URL it came from.
fn join_url(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", authority(base))
    } else {
        let dir = base.split('?').next().unwrap_or(base);
        let dir = &dir[..dir.rfind('/').map_or(dir.len(), |i| i + 1)];
        format!("{dir}{location}")
    }
}

/// A URL without its query string (CDN URLs carry signatures).
pub(crate) fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn network(what: &str, url: &str, err: impl std::fmt::Display) -> HubError {
    HubError::Network {
        what: what.to_string(),
        url: redact(url).to_string(),
        reason: err.to_string(),
    }
}

pub(crate) fn protocol(what: &str, url: &str, problem: &str) -> HubError {
    HubError::Protocol {
        what: what.to_string(),
        url: redact(url).to_string(),
        problem: problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request_url() {
        let base = "https://hub.example/a/b/resolve/main/x.json";
        assert_eq!(
            join_url(base, "/c/d/resolve/main/x.json"),
            "https://hub.example/c/d/resolve/main/x.json"
        );
        assert_eq!(
            join_url(base, "https://cdn.example/blob?sig=1"),
            "https://cdn.example/blob?sig=1"
        );
        assert_eq!(join_url(base, "//cdn.example/blob"), "https://cdn.example/blob");
        assert_eq!(join_url(base, "y.json"), "https://hub.example/a/b/resolve/main/y.json");
    }

    #[test]
    fn authority_ignores_path_and_case() {
        assert_eq!(authority("HTTP://127.0.0.1:80/x?y"), "http://127.0.0.1:80");
        assert_eq!(authority("/relative"), "");
    }

    #[test]
    fn weak_and_quoted_etags_are_normalised() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }
}
