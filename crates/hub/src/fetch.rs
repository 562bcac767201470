//! Fetching files and snapshots: online through the Hub, offline from the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::{is_safe_etag, RepoCache, TreeEntry};
use crate::download::ensure_blob;
use crate::error::{HubError, Result};
use crate::http::{protocol, Client, Ctx, RevisionInfo};
use crate::options::HubOptions;
use crate::repo::{check_revision, is_commit_hash, safe_relative_path, RepoId};

/// Which files of a revision [`fetch`] brings into the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSelection {
    /// What a model needs: `config.json` if present plus the weights in a format funmatch
    /// reads (see [`crate::resolve_model`]).
    Model,
    /// Every file of the revision.
    All,
    /// These files (repository paths such as `config.json` or `sub/dir/file`).
    Files(Vec<String>),
}

/// Fetches `files` of `repo` at `revision` (branch, tag, commit or `refs/pr/N`) and returns
/// the snapshot folder `<cache>/models--owner--name/snapshots/<commit>`.
///
/// Offline (`opts.offline`), it serves from the cache and fails with
/// [`HubError::OfflineMissing`] naming each file that is not there.
pub fn fetch(
    repo: &RepoId,
    revision: &str,
    files: &FileSelection,
    opts: &HubOptions,
) -> Result<PathBuf, HubError> {
    check_revision(revision)?;
    let session = Session::new(repo, opts);
    if opts.offline {
        return session.offline_snapshot(revision, files);
    }

    let listing = match session.list(revision) {
        Ok(listing) => listing,
        // As huggingface_hub does: when the Hub cannot be reached, a complete cached snapshot
        // will do; otherwise the connection problem is the error worth reporting.
        Err(err) if is_unreachable(&err) => {
            let cached = session.offline_snapshot(revision, files);
            if let Ok(snapshot) = &cached {
                tracing::warn!("{err}; using the cached {}", snapshot.display());
            }
            return cached.map_err(|_| err);
        }
        Err(err) => return Err(err),
    };
    let names = match files {
        FileSelection::Model => crate::model::choose_online(&session, revision, &listing)?,
        FileSelection::All => listing.siblings.iter().map(|s| s.rfilename.clone()).collect(),
        FileSelection::Files(names) => names.clone(),
    };
    let fetched = session.fetch_at_commit(&listing.sha, &names).and_then(|()| match files {
        FileSelection::Model => crate::model::finish_online(&session, &listing.sha, &names),
        _ => Ok(()),
    });
    // Files were fetched at the listed commit; name the revision the user asked for.
    fetched.map_err(|err| match err {
        HubError::EntryNotFound { repo, file, commit, .. } => {
            let revision = format!("{revision} (commit {})", listing.sha);
            HubError::EntryNotFound { repo, revision, file, commit }
        }
        other => other,
    })?;
    Ok(session.cache.snapshot_dir(&listing.sha))
}

/// Whether `err` means the Hub could not be reached or is down (not that it said no).
fn is_unreachable(err: &HubError) -> bool {
    match err {
        HubError::Network { .. } => true,
        HubError::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Fetches one file of `repo` at `revision` and returns its path in the snapshot folder.
///
/// A commit revision whose file is cached needs no network; otherwise a HEAD request
/// resolves the revision, and a cached copy is used when the Hub cannot be reached.
pub fn fetch_file(
    repo: &RepoId,
    revision: &str,
    file: &str,
    opts: &HubOptions,
) -> Result<PathBuf, HubError> {
    check_revision(revision)?;
    let session = Session::new(repo, opts);
    let rel = safe_relative_path(repo, file)?;
    if opts.offline {
        let commit = session.offline_commit(revision, &[file.to_string()])?;
        return session
            .cached_or_missing(revision, &commit, &[file.to_string()])
            .map(|_| session.cache.snapshot_dir(&commit).join(&rel));
    }
    session.fetch_one(revision, file)
}

/// One repository, one client, one cache: the state shared by the steps of a fetch.
pub(crate) struct Session<'a> {
    pub(crate) repo: &'a RepoId,
    pub(crate) opts: &'a HubOptions,
    pub(crate) client: Client,
    pub(crate) cache: RepoCache,
}

impl<'a> Session<'a> {
    pub(crate) fn new(repo: &'a RepoId, opts: &'a HubOptions) -> Session<'a> {
        let cache = RepoCache::new(&opts.cache_dir, repo);
        Session { repo, opts, client: Client::new(opts), cache }
    }

    pub(crate) fn ctx<'b>(&'b self, revision: &'b str, file: Option<&'b str>) -> Ctx<'b> {
        Ctx { repo: self.repo, revision, file }
    }

    /// The commit and files of `revision`; records the ref and the file list in the cache.
    pub(crate) fn list(&self, revision: &str) -> Result<RevisionInfo> {
        let info = self.client.revision_info(&self.ctx(revision, None))?;
        if !is_commit_hash(&info.sha) {
            let url =
                format!("{}/api/models/{}/revision/{revision}", self.client.endpoint(), self.repo);
            return Err(protocol(
                "file list",
                &url,
                &format!("names commit `{}`, not a hash", info.sha),
            ));
        }
        self.cache.write_ref(revision, &info.sha)?;
        let tree: BTreeMap<String, TreeEntry> = info
            .siblings
            .iter()
            .map(|s| {
                let entry = TreeEntry {
                    size: s.size.unwrap_or(0),
                    blob_id: s.blob_id.clone().unwrap_or_default(),
                    lfs_sha256: s.lfs.as_ref().map(|l| l.sha256.clone()),
                    lfs_size: s.lfs.as_ref().map(|l| l.size),
                };
                (s.rfilename.clone(), entry)
            })
            .collect();
        // Only a complete listing (with blob ids) is worth keeping for offline use.
        if tree.values().all(|e| !e.blob_id.is_empty()) {
            self.cache.write_tree(&info.sha, &tree)?;
        }
        Ok(info)
    }

    /// Fetches `names` at a known commit. Every name is checked before the first download,
    /// so a listing with one bad name fetches nothing.
    pub(crate) fn fetch_at_commit(&self, commit: &str, names: &[String]) -> Result<()> {
        for name in names {
            safe_relative_path(self.repo, name)?;
        }
        for name in names {
            self.fetch_one(commit, name)?;
        }
        Ok(())
    }

    /// Fetches one file; the heart of the online path.
    pub(crate) fn fetch_one(&self, revision: &str, file: &str) -> Result<PathBuf> {
        let rel = safe_relative_path(self.repo, file)?;
        if is_commit_hash(revision) {
            if let Some(path) = self.cache.cached_file(revision, &rel) {
                return Ok(path);
            }
        }

        let ctx = self.ctx(revision, Some(file));
        let meta = match self.client.file_meta(&ctx, file) {
            Ok(meta) => meta,
            Err(HubError::Network { what, url, reason }) => {
                // As huggingface_hub does: without a connection, a cached copy will do.
                let cached =
                    self.cache.read_ref(revision).and_then(|c| self.cache.cached_file(&c, &rel));
                if let Some(path) = cached {
                    tracing::warn!(
                        "cannot reach the Hub ({reason}); using the cached {}",
                        path.display()
                    );
                    return Ok(path);
                }
                return Err(HubError::Network { what, url, reason });
            }
            Err(HubError::EntryNotFound { repo, revision, file, commit }) => {
                // Recorded as huggingface_hub does, so that either tool knows offline.
                if let Some(c) = commit.as_deref().filter(|c| is_commit_hash(c)) {
                    self.cache.mark_missing(c, &rel);
                    self.cache.write_ref(&revision, c)?;
                }
                return Err(HubError::EntryNotFound { repo, revision, file, commit });
            }
            Err(err) => return Err(err),
        };
        let what = format!("metadata of `{file}`");
        if !is_commit_hash(&meta.commit) {
            return Err(protocol(
                &what,
                &meta.location,
                "has an X-Repo-Commit that is not a commit hash",
            ));
        }
        if !is_safe_etag(&meta.etag) {
            return Err(protocol(&what, &meta.location, "has an etag that cannot name a file"));
        }

        self.cache.write_ref(revision, &meta.commit)?;
        if let Some(path) = self.cache.cached_file(&meta.commit, &rel) {
            return Ok(path);
        }
        ensure_blob(&self.client, &self.cache, &ctx, file, &meta, self.opts)?;
        self.cache.link(&meta.commit, &rel, &meta.etag)
    }

    /// The commit `revision` pointed to when last fetched, or the offline error.
    pub(crate) fn offline_commit(&self, revision: &str, wanted: &[String]) -> Result<String> {
        self.cache.read_ref(revision).ok_or_else(|| HubError::OfflineMissing {
            repo: self.repo.to_string(),
            revision: revision.to_string(),
            cache: self.cache.root().to_path_buf(),
            note: " (this revision was never fetched)".to_string(),
            missing: if wanted.is_empty() {
                vec!["every file".to_string()]
            } else {
                wanted.to_vec()
            },
        })
    }

    /// Fails with the list of `names` not cached at `commit`.
    pub(crate) fn cached_or_missing(
        &self,
        revision: &str,
        commit: &str,
        names: &[String],
    ) -> Result<()> {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| {
                let rel = safe_relative_path(self.repo, n);
                rel.map(|r| self.cache.cached_file(commit, &r).is_none()).unwrap_or(true)
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(HubError::OfflineMissing {
            repo: self.repo.to_string(),
            revision: revision.to_string(),
            cache: self.cache.root().to_path_buf(),
            note: String::new(),
            missing,
        })
    }

    fn offline_snapshot(&self, revision: &str, files: &FileSelection) -> Result<PathBuf> {
        let wanted = match files {
            FileSelection::Files(names) => names.clone(),
            FileSelection::Model => {
                crate::model::MODEL_FILES_HINT.iter().map(|s| s.to_string()).collect()
            }
            FileSelection::All => Vec::new(),
        };
        let commit = self.offline_commit(revision, &wanted)?;
        let snapshot = self.cache.snapshot_dir(&commit);
        match files {
            FileSelection::Files(names) => self.cached_or_missing(revision, &commit, names)?,
            FileSelection::Model => crate::model::check_offline(self, revision, &commit)?,
            FileSelection::All => match self.cache.read_tree(&commit) {
                Some(tree) => {
                    let names: Vec<String> = tree.into_keys().collect();
                    self.cached_or_missing(revision, &commit, &names)?;
                }
                None if snapshot.is_dir() => {
                    tracing::warn!(
                        "offline: no file list of {}@{revision} in the cache, so {} may be incomplete",
                        self.repo,
                        snapshot.display()
                    );
                }
                None => self.cached_or_missing(revision, &commit, &["every file".to_string()])?,
            },
        }
        Ok(snapshot)
    }
}

/// Files present under `dir`, as repository paths (`/`-separated), symlinks included.
pub(crate) fn list_snapshot(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), &format!("{path}/"), out),
                Ok(_) => out.push(path),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}
