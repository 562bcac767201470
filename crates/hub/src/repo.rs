//! Repository ids, revisions and repository file names: parsing and the checks that keep
//! them from escaping the cache folder.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::{HubError, Result};

/// The default branch.
pub const DEFAULT_REVISION: &str = "main";

/// A model repository id, `owner/name`, checked against the Hub's naming rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoId {
    owner: String,
    name: String,
}

impl RepoId {
    /// Parses `owner/name`. Both parts use letters, digits, `-`, `_` and `.`, do not start
    /// or end with `-` or `.`, contain no `--` or `..`, and the whole id has at most 96
    /// characters (the Hub's own rules).
    pub fn parse(id: &str) -> Result<RepoId> {
        let invalid = |reason: &str| HubError::InvalidRepoId {
            spec: id.to_string(),
            reason: reason.to_string(),
        };
        let (owner, name) = id.split_once('/').ok_or_else(|| invalid("expected owner/name"))?;
        if id.len() > 96 {
            return Err(invalid("longer than 96 characters"));
        }
        for part in [owner, name] {
            if let Some(reason) = check_name_part(part) {
                return Err(invalid(reason));
            }
        }
        if name.ends_with(".git") {
            return Err(invalid("the name must not end in .git"));
        }
        Ok(RepoId { owner: owner.to_string(), name: name.to_string() })
    }

    /// The folder name huggingface_hub uses in the cache: `models--owner--name`.
    pub fn cache_folder_name(&self) -> String {
        format!("models--{}--{}", self.owner, self.name)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn check_name_part(part: &str) -> Option<&'static str> {
    if part.is_empty() {
        return Some("empty owner or name");
    }
    if !part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Some("only letters, digits, '-', '_' and '.' are allowed");
    }
    if part.contains("--") || part.contains("..") {
        return Some("'--' and '..' are not allowed");
    }
    let edge = |c: char| matches!(c, '-' | '.');
    if part.starts_with(edge) || part.ends_with(edge) {
        return Some("owner and name must not start or end with '-' or '.'");
    }
    None
}

/// A repository and a revision, as written on the command line: `owner/name[@revision]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// The repository.
    pub repo: RepoId,
    /// Branch, tag, 40-hex commit or `refs/pr/N`; `main` when not given.
    pub revision: String,
}

impl RepoSpec {
    /// Parses `owner/name` or `owner/name@revision`.
    pub fn parse(spec: &str) -> Result<RepoSpec> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) => (id, rev),
            None => (spec, DEFAULT_REVISION),
        };
        let repo = RepoId::parse(id).map_err(|err| match err {
            HubError::InvalidRepoId { reason, .. } => {
                HubError::InvalidRepoId { spec: spec.to_string(), reason }
            }
            other => other,
        })?;
        check_revision(revision)?;
        Ok(RepoSpec { repo, revision: revision.to_string() })
    }
}

/// Whether `spec` has the shape of a Hub id (`owner/name[@revision]`).
///
/// Callers decide between a local path and a Hub id; a spec that exists as a local path
/// should win, so check the file system first. Paths that start with `/`, `.` or `~`, or
/// that have more than one `/` before the `@`, are never Hub ids.
pub fn looks_like_hub_id(spec: &str) -> bool {
    RepoSpec::parse(spec).is_ok()
}

/// Checks a branch, tag, commit or `refs/pr/N` for use as a path under `refs/`.
pub(crate) fn check_revision(revision: &str) -> Result<()> {
    let invalid = |reason: &str| HubError::InvalidRevision {
        revision: revision.to_string(),
        reason: reason.to_string(),
    };
    if revision.is_empty() {
        return Err(invalid("empty"));
    }
    if revision.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid("control characters and backslashes are not allowed"));
    }
    if revision.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(invalid("empty, '.' or '..' path components are not allowed"));
    }
    Ok(())
}

/// Whether `revision` is a full commit hash (which never needs a ref file).
pub(crate) fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40
        && revision.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a repository file name (`/`-separated, relative to the repo root) and turns it
/// into a relative path that stays inside whatever folder it is joined to.
///
/// Refused: empty names, absolute paths, Windows drive or UNC forms, backslashes, control
/// characters, and `.`, `..` or empty components.
pub(crate) fn safe_relative_path(repo: &RepoId, file: &str) -> Result<PathBuf> {
    let refuse = |reason: &str| HubError::UnsafePath {
        repo: repo.to_string(),
        file: file.to_string(),
        reason: reason.to_string(),
    };
    if file.is_empty() {
        return Err(refuse("empty file name"));
    }
    if file.starts_with('/') {
        return Err(refuse("absolute path"));
    }
    if file.chars().any(|c| c.is_control() || c == '\\') {
        return Err(refuse("control characters and backslashes are not allowed"));
    }
    let mut path = PathBuf::new();
    for part in file.split('/') {
        if matches!(part, "" | "." | "..") {
            return Err(refuse("'.', '..' and empty path components are not allowed"));
        }
        // `C:` would be a drive prefix on Windows; refuse it everywhere so a cache copied
        // between systems stays safe.
        if part.len() >= 2 && part.as_bytes()[1] == b':' {
            return Err(refuse("drive-letter components are not allowed"));
        }
        path.push(part);
    }
    let escapes = path.components().any(|c| !matches!(c, Component::Normal(_)));
    if escapes || Path::new(file).is_absolute() {
        return Err(refuse("path would leave the snapshot folder"));
    }
    Ok(path)
}

/// Percent-encodes `text` for a URL path; `/` is kept when `keep_slash` (file names) and
/// encoded otherwise (revisions such as `refs/pr/1` are one path segment on the Hub).
pub(crate) fn url_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let plain = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if plain || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_recognised_and_paths_are_not() {
        for spec in [
            "timm/resnetv2_50x1_bit.goog_distilled_in1k",
            "google/bit-50",
            "google/bit-50@main",
            "google/bit-50@refs/pr/3",
            "a/b@0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(looks_like_hub_id(spec), "{spec} should look like a Hub id");
        }
        for spec in [
            "resnet50",
            "./models/x",
            "/abs/path",
            "runs/a/b",
            "~/x",
            "a/b@",
            "a/../b",
            "a/b@refs/../../x",
            "owner/name.git",
            "a--b/c",
            "model.safetensors",
            "dir/model.safetensors/x",
        ] {
            assert!(!looks_like_hub_id(spec), "{spec} should not look like a Hub id");
        }
    }

    #[test]
    fn spec_without_revision_means_main() {
        let spec = RepoSpec::parse("timm/x").unwrap();
        assert_eq!(spec.revision, "main");
        assert_eq!(spec.repo.cache_folder_name(), "models--timm--x");
        assert_eq!(RepoSpec::parse("timm/x@v1.0").unwrap().revision, "v1.0");
    }

    #[test]
    fn file_names_that_escape_are_refused() {
        let repo = RepoId::parse("a/b").unwrap();
        for bad in
            ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./x", "C:/x", "a\\..\\x", "x\0"]
        {
            assert!(safe_relative_path(&repo, bad).is_err(), "`{bad:?}` must be refused");
        }
        assert_eq!(
            safe_relative_path(&repo, "sub/dir/f.json").unwrap(),
            Path::new("sub/dir/f.json")
        );
    }

    #[test]
    fn revisions_are_one_url_segment() {
        assert_eq!(url_encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(url_encode("sub dir/a+b.json", true), "sub%20dir/a%2Bb.json");
    }
}
