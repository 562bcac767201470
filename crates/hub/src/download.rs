//! Bringing one blob into the cache: resumable, verified, and safe under concurrency.
//!
//! The download runs under an exclusive lock on `.locks/<repo>/<etag>.lock`, so two fetches
//! of the same blob (threads or processes) take turns; the second finds the blob in place
//! and downloads nothing. Bytes go to `blobs/<etag>.incomplete`, which a later attempt
//! resumes with `Range: bytes=N-`. The file is hashed as it arrives (the part already on
//! disk first) and renamed to `blobs/<etag>` only when its size and hash match what the
//! Hub announced: sha256 for LFS files, git's blob sha1 for the others. A file that fails
//! is deleted, never linked.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::cache::{FileLock, RepoCache};
use crate::error::{HubError, Result};
use crate::http::{header, protocol, Client, Ctx, FileMeta};
use crate::options::HubOptions;
use crate::progress::Progress;

/// What the finished file must hash to.
enum Hasher {
    Sha256(Sha256),
    /// git's object id: sha1 over `blob <size>\0` and the contents.
    GitSha1(Sha1),
    /// An etag of an unknown form: only the size is checked.
    Unchecked,
}

impl Hasher {
    fn for_meta(meta: &FileMeta, what: &str) -> Result<Hasher> {
        let hex =
            |len: usize| meta.etag.len() == len && meta.etag.bytes().all(|b| b.is_ascii_hexdigit());
        if meta.lfs {
            if !hex(64) {
                return Err(protocol(
                    what,
                    &meta.location,
                    "gives an X-Linked-Etag that is not a sha256",
                ));
            }
            return Ok(Hasher::Sha256(Sha256::new()));
        }
        if hex(40) {
            let mut sha1 = Sha1::new();
            sha1.update(format!("blob {}\0", meta.size).as_bytes());
            return Ok(Hasher::GitSha1(sha1));
        }
        tracing::debug!(etag = %meta.etag, "etag is neither sha256 nor git sha1: checking the size only");
        Ok(Hasher::Unchecked)
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitSha1(h) => h.update(bytes),
            Hasher::Unchecked => {}
        }
    }

    /// The algorithm name and the hex digest, if checked.
    fn finish(self) -> Option<(&'static str, String)> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        match self {
            Hasher::Sha256(h) => Some(("sha256", hex(&h.finalize()))),
            Hasher::GitSha1(h) => Some(("git sha1", hex(&h.finalize()))),
            Hasher::Unchecked => None,
        }
    }
}

/// Ensures `blobs/<etag>` holds the verified contents of `file`.
pub(crate) fn ensure_blob(
    client: &Client,
    cache: &RepoCache,
    ctx: &Ctx,
    file: &str,
    meta: &FileMeta,
    opts: &HubOptions,
) -> Result<()> {
    let blob = cache.blob_path(&meta.etag);
    if blob.is_file() {
        return Ok(());
    }
    let blobs = blob.parent().expect("a blob path has a folder");
    fs::create_dir_all(blobs).map_err(|e| HubError::io("create folder", blobs, e))?;
    crate::cache::tag_cache_dir(cache.root());

    tracing::debug!(file, etag = %meta.etag, "waiting for the download lock");
    let _lock = FileLock::acquire(&cache.lock_path(&meta.etag))?;
    if blob.is_file() {
        tracing::debug!(file, "another fetch brought the blob meanwhile");
        return Ok(());
    }

    let partial_path = cache.incomplete_path(&meta.etag);
    let what = format!("download of `{file}` from {}@{}", ctx.repo, ctx.revision);
    let mut partial = Partial::open(&partial_path, meta, &what)?;
    let mut progress = Progress::start(opts.progress, file, meta.size, partial.len);
    let mut failures = 0;
    while partial.len < meta.size {
        let before = partial.len;
        let attempt = transfer(client, ctx, &what, meta, &mut partial, &mut progress);
        // A body that ends early without an error still counts as a failure when it brought
        // nothing, so a misbehaving server cannot keep us looping.
        let attempt = match attempt {
            Ok(()) if partial.len == before => {
                let problem = format!("ended without sending bytes from {before} on");
                Err(Failure::Retry(protocol(&what, &meta.location, &problem)))
            }
            other => other,
        };
        match attempt {
            Ok(()) => {}
            Err(Failure::Retry(err)) if failures < opts.retries => {
                failures += 1;
                tracing::warn!("{err}; resuming at byte {} (attempt {failures})", partial.len);
                std::thread::sleep(Duration::from_millis(200 * u64::from(failures)));
            }
            Err(Failure::Retry(err)) | Err(Failure::Fatal(err)) => {
                progress.finish(false);
                return Err(err);
            }
            Err(Failure::Discard(err)) => {
                progress.finish(false);
                let _ = fs::remove_file(&partial_path);
                return Err(err);
            }
        }
    }
    progress.finish(true);

    let verified = partial.verify(ctx, file, meta);
    if verified.is_err() {
        let _ = fs::remove_file(&partial_path);
        return verified;
    }
    fs::rename(&partial_path, &blob).map_err(|e| HubError::io("move into the cache", &blob, e))
}

/// The `.incomplete` file and the hash of what it holds so far.
struct Partial {
    file: File,
    len: u64,
    hasher: Hasher,
}

impl Partial {
    /// Opens (or creates) the partial file and hashes what an earlier attempt left in it.
    fn open(path: &std::path::Path, meta: &FileMeta, what: &str) -> Result<Partial> {
        let io = |e| HubError::io("open partial download", path, e);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut len = file.metadata().map_err(io)?.len();
        if len > meta.size {
            tracing::debug!(
                len,
                size = meta.size,
                "partial file is longer than the file: restarting"
            );
            file.set_len(0).map_err(io)?;
            len = 0;
        }
        let mut partial = Partial { file, len: 0, hasher: Hasher::for_meta(meta, what)? };
        let mut buf = vec![0u8; 1 << 20];
        while partial.len < len {
            let want = buf.len().min((len - partial.len) as usize);
            partial.file.read_exact(&mut buf[..want]).map_err(io)?;
            partial.hasher.update(&buf[..want]);
            partial.len += want as u64;
        }
        partial.file.seek(SeekFrom::Start(len)).map_err(io)?;
        if len > 0 {
            tracing::debug!(len, "resuming a partial download");
        }
        Ok(partial)
    }

    fn restart(&mut self, meta: &FileMeta, what: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        self.hasher = Hasher::for_meta(meta, what).expect("checked when the download started");
        Ok(())
    }

    fn verify(self, ctx: &Ctx, file: &str, meta: &FileMeta) -> Result<()> {
        let (repo, name) = (ctx.repo.to_string(), file.to_string());
        if self.len != meta.size {
            return Err(HubError::SizeMismatch {
                repo,
                file: name,
                expected: meta.size,
                found: self.len,
            });
        }
        self.file.sync_all().map_err(|e| HubError::io("flush", file, e))?;
        match self.hasher.finish() {
            Some((algorithm, found)) if !found.eq_ignore_ascii_case(&meta.etag) => {
                Err(HubError::ChecksumMismatch {
                    repo,
                    file: name,
                    algorithm,
                    expected: meta.etag.clone(),
                    found,
                })
            }
            _ => Ok(()),
        }
    }
}

enum Failure {
    /// Worth resuming (a broken connection, a server hiccup).
    Retry(HubError),
    /// Stop, keeping the partial file for a later attempt.
    Fatal(HubError),
    /// Stop and delete the partial file: its bytes cannot be trusted.
    Discard(HubError),
}

/// One GET from `partial.len` on; appends what arrives until the body ends or breaks.
fn transfer(
    client: &Client,
    ctx: &Ctx,
    what: &str,
    meta: &FileMeta,
    partial: &mut Partial,
    progress: &mut Progress,
) -> std::result::Result<(), Failure> {
    let url = &meta.location;
    let mut response = client.get_from(what, url, partial.len).map_err(Failure::Retry)?;
    let status = response.status().as_u16();
    let io = |e: std::io::Error| Failure::Fatal(HubError::io("write", "partial download", e));

    match status {
        206 => {
            let range = header(&response, "content-range").unwrap_or_default();
            if parse_content_range_start(range) != Some(partial.len) {
                let problem = format!(
                    "answers a request from byte {} with Content-Range `{range}`",
                    partial.len
                );
                return Err(Failure::Discard(protocol(what, url, &problem)));
            }
        }
        200 if partial.len > 0 => {
            // The server ignored the Range header and sends the whole file: start over.
            tracing::debug!("server ignored Range; downloading from the start");
            partial.restart(meta, what).map_err(io)?;
        }
        200 => {}
        // The server thinks the file is shorter than the partial one: start afresh next time.
        416 => return Err(Failure::Discard(client.status_error(what, url, &response, ctx))),
        408 | 429 | 500..=599 => {
            return Err(Failure::Retry(client.status_error(what, url, &response, ctx)));
        }
        _ => return Err(Failure::Fatal(client.status_error(what, url, &response, ctx))),
    }

    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = format!("connection broke after byte {}: {e}", partial.len);
                return Err(Failure::Retry(HubError::Network {
                    what: what.to_string(),
                    url: crate::http::redact(url).to_string(),
                    reason,
                }));
            }
        };
        if partial.len + n as u64 > meta.size {
            let (repo, file) = (ctx.repo.to_string(), ctx.file.unwrap_or("?").to_string());
            let found = partial.len + n as u64;
            return Err(Failure::Discard(HubError::SizeMismatch {
                repo,
                file,
                expected: meta.size,
                found,
            }));
        }
        partial.file.write_all(&buf[..n]).map_err(io)?;
        partial.hasher.update(&buf[..n]);
        partial.len += n as u64;
        progress.update(partial.len);
    }
}

/// `bytes 100-199/200` → 100.
fn parse_content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_parsed() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn git_sha1_matches_git_hash_object() {
        // `printf 'hello\n' | git hash-object --stdin`
        let meta = FileMeta {
            commit: String::new(),
            etag: "ce013625030ba8dba906f756967f9e9ca394464a".into(),
            lfs: false,
            size: 6,
            location: String::new(),
        };
        let mut h = Hasher::for_meta(&meta, "test").unwrap();
        h.update(b"hello\n");
        assert_eq!(h.finish().unwrap().1, meta.etag);
    }
}
