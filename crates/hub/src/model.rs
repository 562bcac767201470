//! Which files make a model, and the refusal of pickle-only repositories.
//!
//! Accepted weights, in order of preference: `model.safetensors` (timm and transformers),
//! `model.safetensors.index.json` with its shards, or a single Google BiT `.npz`. Pickle
//! files (`pytorch_model.bin`, `*.pth`, ...) are never fetched for a model and never
//! loaded. When a repository has only those, we look for a revision that has safetensors:
//! the Hub's refs API (`/api/models/{repo}/refs?include_prs=1`) lists open pull-request
//! refs `refs/pr/N` — where the Hub's conversion bot puts its safetensors conversions —
//! and other branches; the newest few are checked through the revision API. That is one
//! documented call plus a bounded number of listings, cheaper and more direct than
//! reading discussion threads or probing `refs/pr/1..N` blindly.

use std::path::PathBuf;

use crate::error::{HubError, Result};
use crate::fetch::{fetch, list_snapshot, FileSelection, Session};
use crate::http::RevisionInfo;
use crate::options::HubOptions;
use crate::repo::{safe_relative_path, RepoSpec};
use crate::safetensors_check::check_safetensors_header;

const CONFIG: &str = "config.json";
const SAFETENSORS: &str = "model.safetensors";
const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
const PICKLE_SUFFIXES: &[&str] = &[".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle"];

/// What a model needs, for messages when not even the revision is cached.
pub(crate) const MODEL_FILES_HINT: &[&str] = &[
    "config.json (if the repository has one)",
    "model.safetensors (or model.safetensors.index.json with its shards, or a BiT .npz)",
];

/// How many other revisions are listed while looking for a safetensors alternative.
const MAX_ALTERNATIVES_CHECKED: usize = 10;

/// Fetches what the model `spec` (`owner/name` or `owner/name@revision`) needs and returns
/// its local snapshot folder: `config.json` when the repository has one, plus the weights
/// (`model.safetensors`, a sharded safetensors index and its shards, or a BiT `.npz`).
///
/// Local paths are the caller's business: check whether `spec` exists on disk first, then
/// use [`crate::looks_like_hub_id`]. Safetensors files are checked with
/// [`check_safetensors_header`] before the folder is returned.
pub fn resolve_model(spec: &str, opts: &HubOptions) -> Result<PathBuf, HubError> {
    let spec = RepoSpec::parse(spec)?;
    fetch(&spec.repo, &spec.revision, &FileSelection::Model, opts)
}

/// The outcome of looking at a repository's file names.
enum Choice {
    /// Fetch these (config first, then weights or the shard index).
    Files(Vec<String>),
    /// Only pickle weights.
    Pickle(Vec<String>),
    /// Several `.npz` and no rule to pick one.
    Ambiguous(Vec<String>),
    /// Nothing we read.
    Nothing,
}

fn choose(names: &[String]) -> Choice {
    let has = |name: &str| names.iter().any(|n| n == name);
    let mut files: Vec<String> = has(CONFIG).then(|| CONFIG.to_string()).into_iter().collect();

    if has(SAFETENSORS) {
        files.push(SAFETENSORS.to_string());
        return Choice::Files(files);
    }
    if has(SAFETENSORS_INDEX) {
        files.push(SAFETENSORS_INDEX.to_string());
        return Choice::Files(files);
    }
    let npz: Vec<String> = names.iter().filter(|n| n.ends_with(".npz")).cloned().collect();
    match npz.len() {
        0 => {}
        1 => {
            files.extend(npz);
            return Choice::Files(files);
        }
        _ => return Choice::Ambiguous(npz),
    }
    let pickles: Vec<String> =
        names.iter().filter(|n| PICKLE_SUFFIXES.iter().any(|s| n.ends_with(s))).cloned().collect();
    if pickles.is_empty() {
        Choice::Nothing
    } else {
        Choice::Pickle(pickles)
    }
}

/// The files to fetch for a model at `revision`, or why there are none.
pub(crate) fn choose_online(
    session: &Session,
    revision: &str,
    listing: &RevisionInfo,
) -> Result<Vec<String>> {
    let names: Vec<String> = listing.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let (repo, rev) = (session.repo.to_string(), revision.to_string());
    match choose(&names) {
        Choice::Files(files) => Ok(files),
        Choice::Ambiguous(files) => Err(HubError::AmbiguousWeights { repo, revision: rev, files }),
        Choice::Nothing => Err(HubError::NoWeights { repo, revision: rev, files: names }),
        Choice::Pickle(files) => {
            let alternative = find_alternative(session, revision);
            Err(HubError::PickleOnly { repo, revision: rev, files, alternative })
        }
    }
}

/// After the chosen files are in: fetches the shards a safetensors index names, and checks
/// every safetensors header.
pub(crate) fn finish_online(session: &Session, commit: &str, names: &[String]) -> Result<()> {
    let snapshot = session.cache.snapshot_dir(commit);
    let mut weights: Vec<String> =
        names.iter().filter(|n| n.ends_with(".safetensors")).cloned().collect();
    if names.iter().any(|n| n == SAFETENSORS_INDEX) {
        let shards = read_shards(session, &snapshot.join(SAFETENSORS_INDEX))?;
        session.fetch_at_commit(commit, &shards)?;
        weights.extend(shards);
    }
    for name in weights {
        check_safetensors_header(&snapshot.join(safe_relative_path(session.repo, &name)?))?;
    }
    Ok(())
}

/// Offline: checks that the cached snapshot of `commit` holds a complete model.
pub(crate) fn check_offline(session: &Session, revision: &str, commit: &str) -> Result<()> {
    let snapshot = session.cache.snapshot_dir(commit);
    let known = session.cache.read_tree(commit).map(|t| t.into_keys().collect::<Vec<_>>());
    let names = known.clone().unwrap_or_else(|| list_snapshot(&snapshot));
    let (repo, rev) = (session.repo.to_string(), revision.to_string());
    let mut required = match choose(&names) {
        Choice::Files(files) => files,
        Choice::Ambiguous(files) => {
            return Err(HubError::AmbiguousWeights { repo, revision: rev, files })
        }
        Choice::Pickle(files) => {
            return Err(HubError::PickleOnly { repo, revision: rev, files, alternative: None })
        }
        Choice::Nothing if known.is_some() => {
            return Err(HubError::NoWeights { repo, revision: rev, files: names })
        }
        Choice::Nothing => {
            return Err(HubError::OfflineMissing {
                repo,
                revision: rev,
                cache: session.cache.root().to_path_buf(),
                note: String::new(),
                missing: vec![format!(
                    "{SAFETENSORS} (or {SAFETENSORS_INDEX} with its shards, or a BiT .npz)"
                )],
            })
        }
    };
    session.cached_or_missing(revision, commit, &required)?;
    if required.iter().any(|n| n == SAFETENSORS_INDEX) {
        let shards = read_shards(session, &snapshot.join(SAFETENSORS_INDEX))?;
        session.cached_or_missing(revision, commit, &shards)?;
        required.extend(shards);
    }
    for name in required.iter().filter(|n| n.ends_with(".safetensors")) {
        check_safetensors_header(&snapshot.join(safe_relative_path(session.repo, name)?))?;
    }
    Ok(())
}

/// The shard files a `model.safetensors.index.json` names, each checked as a safe path.
fn read_shards(session: &Session, index: &std::path::Path) -> Result<Vec<String>> {
    let json_error = |reason: String| HubError::Json {
        what: "safetensors index".to_string(),
        source_name: index.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(index).map_err(|e| HubError::io("read", index, e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| json_error(e.to_string()))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| json_error("no `weight_map` object".to_string()))?;
    let mut shards: Vec<String> = Vec::new();
    for shard in map.values() {
        let shard =
            shard.as_str().ok_or_else(|| json_error("a shard name is not a string".into()))?;
        safe_relative_path(session.repo, shard)?;
        if !shards.iter().any(|s| s == shard) {
            shards.push(shard.to_string());
        }
    }
    shards.sort();
    Ok(shards)
}

/// A revision of the same repository that has safetensors weights, as `owner/name@ref`:
/// newest pull-request refs first, then other branches. Failures only mean "none found".
fn find_alternative(session: &Session, revision: &str) -> Option<String> {
    let refs = match session.client.refs(&session.ctx(revision, None)) {
        Ok(refs) => refs,
        Err(err) => {
            tracing::debug!(%err, "cannot list refs while looking for safetensors");
            return None;
        }
    };
    let pr_number = |r: &str| r.strip_prefix("refs/pr/").and_then(|n| n.parse::<u64>().ok());
    let mut prs: Vec<String> = refs
        .pull_requests
        .iter()
        .filter(|r| pr_number(&r.git_ref).is_some())
        .map(|r| r.git_ref.clone())
        .collect();
    prs.sort_by_key(|r| std::cmp::Reverse(pr_number(r)));
    let branches = refs.branches.iter().map(|b| b.name.clone()).filter(|b| b != revision);

    for candidate in prs.into_iter().chain(branches).take(MAX_ALTERNATIVES_CHECKED) {
        if crate::repo::check_revision(&candidate).is_err() {
            continue;
        }
        match session.client.revision_info(&session.ctx(&candidate, None)) {
            Ok(info) => {
                let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
                if names.iter().any(|n| n == SAFETENSORS || n == SAFETENSORS_INDEX) {
                    return Some(format!("{}@{candidate}", session.repo));
                }
            }
            Err(err) => tracing::debug!(%err, candidate, "cannot list a candidate revision"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn safetensors_is_preferred_over_npz_and_pickle() {
        let choice =
            choose(&names(&["config.json", "pytorch_model.bin", "model.safetensors", "x.npz"]));
        assert!(
            matches!(choice, Choice::Files(f) if f == names(&["config.json", "model.safetensors"]))
        );
    }

    #[test]
    fn a_single_npz_is_taken_and_several_are_ambiguous() {
        assert!(
            matches!(choose(&names(&["BiT-M-R50x1.npz"])), Choice::Files(f) if f == names(&["BiT-M-R50x1.npz"]))
        );
        assert!(matches!(choose(&names(&["a.npz", "b.npz"])), Choice::Ambiguous(_)));
    }

    #[test]
    fn pickle_only_and_empty_repos_are_told_apart() {
        assert!(matches!(choose(&names(&["config.json", "pytorch_model.bin"])), Choice::Pickle(_)));
        assert!(matches!(choose(&names(&["README.md"])), Choice::Nothing));
    }
}
