//! The on-disk cache, laid out exactly as Python's `huggingface_hub` lays it out, so either
//! tool finds what the other fetched:
//!
//! ```text
//! <cache>/models--owner--name/
//!     blobs/<etag>                       file contents, named by sha256 (LFS) or git sha1
//!     blobs/<etag>.incomplete            a download in progress (resumed on the next try)
//!     snapshots/<commit>/<file>          relative symlink to ../../blobs/<etag>
//!     refs/<revision>                    the commit a branch or tag pointed to (refs/pr/1
//!                                        is stored as refs/refs/pr/1)
//!     .no_exist/<commit>/<file>          empty marker: the file does not exist at <commit>
//!     trees/<commit>.json                the file list of <commit> (format_version 1)
//! <cache>/.locks/models--owner--name/<etag>.lock
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{HubError, Result};
use crate::repo::{is_commit_hash, RepoId};

/// One repository's corner of the cache.
#[derive(Clone, Debug)]
pub(crate) struct RepoCache {
    root: PathBuf,
    repo: RepoId,
    folder: PathBuf,
}

impl RepoCache {
    pub(crate) fn new(root: &Path, repo: &RepoId) -> RepoCache {
        let folder = root.join(repo.cache_folder_name());
        RepoCache { root: root.to_path_buf(), repo: repo.clone(), folder }
    }

    /// The cache root this repository lives in.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, etag: &str) -> PathBuf {
        self.folder.join("blobs").join(etag)
    }

    pub(crate) fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.folder.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub(crate) fn lock_path(&self, etag: &str) -> PathBuf {
        self.root.join(".locks").join(self.repo.cache_folder_name()).join(format!("{etag}.lock"))
    }

    pub(crate) fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.folder.join("snapshots").join(commit)
    }

    /// The commit a branch or tag pointed to when last fetched.
    pub(crate) fn read_ref(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.folder.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// Records that `revision` points to `commit`; written atomically so a concurrent reader
    /// never sees half a hash. Nothing to record when the revision is the commit itself.
    pub(crate) fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit || self.read_ref(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.folder.join("refs").join(revision);
        write_atomically(&path, commit.as_bytes())
    }

    /// The cached copy of `file` at `commit`, if it is there and is what it should be: a
    /// regular file inside this repository's cache folder (a pointer that leads elsewhere,
    /// or to nothing, is not used).
    pub(crate) fn cached_file(&self, commit: &str, file: &Path) -> Option<PathBuf> {
        let pointer = self.snapshot_dir(commit).join(file);
        let target = fs::canonicalize(&pointer).ok()?;
        let folder = fs::canonicalize(&self.folder).ok()?;
        let regular = fs::metadata(&target).map(|m| m.is_file()).unwrap_or(false);
        (regular && target.starts_with(&folder)).then_some(pointer)
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, as
    /// huggingface_hub does. The link is made under a temporary name and renamed into place,
    /// so concurrent fetches of the same file never see a missing or half-made pointer.
    pub(crate) fn link(&self, commit: &str, file: &Path, etag: &str) -> Result<PathBuf> {
        let snapshot = self.snapshot_dir(commit);
        let pointer = snapshot.join(file);
        let parent = pointer.parent().unwrap_or(&snapshot).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| HubError::io("create folder", &parent, e))?;
        self.check_inside_snapshot(commit, file, &parent)?;

        let depth = file.components().count();
        let mut target = PathBuf::new();
        for _ in 0..depth + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);

        let tmp = temp_sibling(&pointer);
        make_symlink(&target, &tmp).map_err(|e| HubError::io("create symlink", &tmp, e))?;
        fs::rename(&tmp, &pointer).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HubError::io("move symlink into place", &pointer, e)
        })?;
        Ok(pointer)
    }

    /// Refuses to write through a folder that is a symlink leading out of the snapshot
    /// (someone could have planted one to make us write elsewhere).
    fn check_inside_snapshot(&self, commit: &str, file: &Path, parent: &Path) -> Result<()> {
        let snapshot = self.snapshot_dir(commit);
        let canon = |p: &Path| fs::canonicalize(p).map_err(|e| HubError::io("resolve", p, e));
        if !canon(parent)?.starts_with(canon(&snapshot)?) {
            return Err(HubError::UnsafePath {
                repo: self.repo.to_string(),
                file: file.display().to_string(),
                reason: format!("{} leads outside the snapshot folder", parent.display()),
            });
        }
        Ok(())
    }

    /// Marks `file` as absent at `commit`, as huggingface_hub does after a 404.
    pub(crate) fn mark_missing(&self, commit: &str, file: &Path) {
        let marker = self.folder.join(".no_exist").join(commit).join(file);
        let made = marker.parent().map(fs::create_dir_all).transpose().and_then(|_| {
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&marker)
        });
        if let Err(err) = made {
            tracing::debug!(path = %marker.display(), %err, "cannot record a missing file");
        }
    }

    /// The file list of `commit`, if either tool recorded it.
    pub(crate) fn read_tree(&self, commit: &str) -> Option<BTreeMap<String, TreeEntry>> {
        let path = self.folder.join("trees").join(format!("{commit}.json"));
        let tree: TreeFile = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        (tree.format_version == TREE_FORMAT_VERSION).then_some(tree.files)
    }

    /// Records the file list of `commit` (immutable, so it never needs refreshing).
    pub(crate) fn write_tree(
        &self,
        commit: &str,
        files: &BTreeMap<String, TreeEntry>,
    ) -> Result<()> {
        let path = self.folder.join("trees").join(format!("{commit}.json"));
        if path.exists() {
            return Ok(());
        }
        let tree = TreeFile { format_version: TREE_FORMAT_VERSION, files: files.clone() };
        let json = serde_json::to_vec_pretty(&tree).expect("a tree listing always serialises");
        write_atomically(&path, &json)
    }
}

const TREE_FORMAT_VERSION: u32 = 1;

/// One file of a commit, with the fields huggingface_hub keeps in `trees/<commit>.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TreeEntry {
    pub(crate) size: u64,
    pub(crate) blob_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lfs_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lfs_size: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct TreeFile {
    format_version: u32,
    files: BTreeMap<String, TreeEntry>,
}

/// An exclusive lock on a lock file, held until dropped. Other processes and other threads
/// (each opens the file anew) wait on it.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| HubError::io("create folder", parent, e))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| HubError::io("open lock file", path, e))?;
        lock_exclusive(&file).map_err(|e| HubError::io("lock", path, e))?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;

    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

// Limitation: without flock, concurrent downloads of one file are not serialised; the
// sha256 check before the rename still keeps a mixed-up file out of the cache.
#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

// Limitation: Windows allows symlinks only with developer mode or admin rights; there is
// no copy fallback as in huggingface_hub, so fetching fails there without them.
#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// A name next to `path`, unique to this process and call.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Marks the cache root with a `CACHEDIR.TAG` (the standard backup tools honour, which
/// huggingface_hub writes too), if it has none.
pub(crate) fn tag_cache_dir(root: &Path) {
    let tag = root.join("CACHEDIR.TAG");
    if tag.exists() {
        return;
    }
    let text = "Signature: 8a477f597d28d172789f06886806bc55\n\
                # This is a Hugging Face Hub cache (written by funmatch); it can be re-fetched.\n";
    if let Err(err) = write_atomically(&tag, text.as_bytes()) {
        tracing::debug!(%err, "cannot tag the cache folder");
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| HubError::io("create folder", parent, e))?;
    }
    let tmp = temp_sibling(path);
    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(err) = written.and_then(|_| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(HubError::io("write", path, err));
    }
    Ok(())
}

/// Checks an etag before it names a file: hex digits and letters only (sha256 or git sha1).
pub(crate) fn is_safe_etag(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
