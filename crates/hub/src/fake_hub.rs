//! A loopback fake of the Hub and its CDN, for tests (feature `fake-hub`).
//!
//! Two HTTP servers on 127.0.0.1 answer the calls this crate makes, the way the real Hub
//! does: `HEAD`/`GET /{repo}/resolve/{revision}/{file}` with `X-Repo-Commit`, `ETag` (git
//! sha1 of small files), and for LFS files a 302 to the CDN host with `X-Linked-Etag`
//! (sha256) and `X-Linked-Size`; the CDN serves `Range` requests with 206 and
//! `Content-Range`; `GET /api/models/{repo}/revision/{revision}`, `.../refs` and `.../tree/{revision}` return the
//! real endpoints' JSON shapes; errors carry `X-Error-Code` (`RepoNotFound`,
//! `RevisionNotFound`, `EntryNotFound`, `GatedRepo`).
//!
//! Faults for tests: drop the connection part-way through a body once, serve corrupted
//! bytes, slow the CDN down; every request is recorded with its headers.
//!
//! Each connection serves one request and closes; servers stop when the [`FakeHub`] drops.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A file in a fake commit.
#[derive(Clone, Debug)]
pub struct FakeFile {
    /// Repository path.
    pub name: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Stored with LFS (served from the CDN, sha256 etag) or in git (git sha1 etag).
    pub lfs: bool,
}

impl FakeFile {
    /// An LFS file (weights).
    pub fn lfs(name: &str, bytes: impl Into<Vec<u8>>) -> FakeFile {
        FakeFile { name: name.to_string(), bytes: bytes.into(), lfs: true }
    }

    /// A small file kept in git (configs, READMEs).
    pub fn regular(name: &str, bytes: impl Into<Vec<u8>>) -> FakeFile {
        FakeFile { name: name.to_string(), bytes: bytes.into(), lfs: false }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `"hub"` or `"cdn"`.
    pub host: &'static str,
    /// `GET` or `HEAD`.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FakeRepo {
    commits: HashMap<String, Vec<FakeFile>>,
    /// Branch, tag or `refs/pr/N` → commit.
    refs: Vec<(String, String)>,
    gated_token: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, FakeRepo>,
    renamed: HashMap<String, String>,
    blobs: HashMap<String, Vec<u8>>,
    drop_once: HashMap<String, usize>,
    corrupt: HashMap<String, bool>,
    cdn_delay: Option<Duration>,
    cdn_ignores_range: bool,
    requests: Vec<Recorded>,
}

/// The fake Hub and CDN. Cheap to start; one per test.
pub struct FakeHub {
    state: Arc<Mutex<State>>,
    hub: Server,
    cdn: Server,
}

impl FakeHub {
    /// Starts both servers on free loopback ports.
    pub fn start() -> FakeHub {
        let state = Arc::new(Mutex::new(State::default()));
        let cdn = Server::start(state.clone(), Role::Cdn, None);
        let hub = Server::start(state.clone(), Role::Hub, Some(cdn.url()));
        FakeHub { state, hub, cdn }
    }

    /// The Hub's base URL, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.hub.url()
    }

    /// The CDN's base URL.
    pub fn cdn_url(&self) -> String {
        self.cdn.url()
    }

    /// Adds a commit with `files` to `repo` (created if new), points `refs` at it (branch
    /// or tag names, or `refs/pr/N`), and returns its hash.
    pub fn commit(&self, repo: &str, refs: &[&str], files: Vec<FakeFile>) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut seed = Sha1::new();
        seed.update(format!("{repo}/{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        for f in &files {
            seed.update(&f.name);
            seed.update(&f.bytes);
        }
        let commit = hex(&seed.finalize());

        let mut state = self.state.lock().unwrap();
        for f in files.iter().filter(|f| f.lfs) {
            state.blobs.insert(sha256_hex(&f.bytes), f.bytes.clone());
        }
        let entry = state.repos.entry(repo.to_string()).or_default();
        entry.commits.insert(commit.clone(), files);
        for r in refs {
            entry.refs.retain(|(name, _)| name != r);
            entry.refs.push((r.to_string(), commit.clone()));
        }
        commit
    }

    /// Makes `repo` gated: only `Authorization: Bearer <token>` gets in.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.repos.entry(repo.to_string()).or_default().gated_token = Some(token.to_string());
    }

    /// Makes `old` answer with a relative redirect to `new`, as a renamed repository does.
    pub fn rename(&self, old: &str, new: &str) {
        self.state.lock().unwrap().renamed.insert(old.to_string(), new.to_string());
    }

    /// The next GET of the blob with sha256 `sha` sends `after` bytes of its body and then
    /// drops the connection.
    pub fn drop_connection_once(&self, sha: &str, after: usize) {
        self.state.lock().unwrap().drop_once.insert(sha.to_string(), after);
    }

    /// While `on`, the CDN flips one byte in the middle of the blob with sha256 `sha`.
    pub fn corrupt(&self, sha: &str, on: bool) {
        self.state.lock().unwrap().corrupt.insert(sha.to_string(), on);
    }

    /// Slows every CDN body down by `delay` per 64 KiB.
    pub fn set_cdn_delay(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().cdn_delay = delay;
    }

    /// While `on`, the CDN answers every GET with the whole file (200), ignoring `Range`,
    /// as some proxies and CDNs do.
    pub fn set_cdn_ignores_range(&self, on: bool) {
        self.state.lock().unwrap().cdn_ignores_range = on;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// Lower-case hex sha256, the etag of an LFS file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// git's blob id, the etag of a file kept in git.
pub fn git_sha1_hex(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()));
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy)]
enum Role {
    Hub,
    Cdn,
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(state: Arc<Mutex<State>>, role: Role, cdn: Option<String>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (state, cdn) = (state.clone(), cdn.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &state, role, cdn.as_deref());
                });
            }
        });
        Server { addr, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response before it is written.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Drop the connection after this many body bytes.
    cut_after: Option<usize>,
    delay: Option<Duration>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new(), cut_after: None, delay: None }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::new(status).header("X-Error-Code", code).header("X-Error-Message", message)
    }

    fn json(value: serde_json::Value) -> Reply {
        let mut r = Reply::new(200).header("Content-Type", "application/json");
        r.body = value.to_string().into_bytes();
        r
    }
}

fn handle(
    stream: TcpStream,
    state: &Mutex<State>,
    role: Role,
    cdn: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) =
        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let request = Recorded {
        host: match role {
            Role::Hub => "hub",
            Role::Cdn => "cdn",
        },
        method,
        target,
        headers,
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.requests.push(request.clone());
        match role {
            Role::Hub => hub_reply(&mut state, &request, cdn.unwrap_or("")),
            Role::Cdn => cdn_reply(&mut state, &request),
        }
    };
    write_reply(stream, &request, reply)
}

fn write_reply(mut stream: TcpStream, request: &Recorded, reply: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !reply.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if request.method != "HEAD" {
        let body = match reply.cut_after {
            Some(n) => &reply.body[..n.min(reply.body.len())],
            None => &reply.body[..],
        };
        for chunk in body.chunks(64 << 10) {
            if let Some(d) = reply.delay {
                std::thread::sleep(d);
            }
            stream.write_all(chunk)?;
        }
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(digits, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Looks up a repository and a revision with the Hub's errors; `Err` is the reply to send.
/// As on the real Hub, a gated repository's listings are public (`gate` false) and only its
/// files need a token.
fn find<'a>(
    state: &'a State,
    request: &Recorded,
    repo: &str,
    rev: &str,
    gate: bool,
) -> Result<(&'a FakeRepo, String), Reply> {
    let Some(r) = state.repos.get(repo) else {
        return Err(Reply::error(404, "RepoNotFound", "Repository not found"));
    };
    if let Some(token) = r.gated_token.as_ref().filter(|_| gate) {
        match request.header("authorization") {
            Some(auth) if auth == format!("Bearer {token}") => {}
            Some(_) => {
                let msg = format!(
                    "Access to model {repo} is restricted and you are not in the authorized list."
                );
                return Err(Reply::error(403, "GatedRepo", &msg));
            }
            None => {
                let msg = format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
                return Err(Reply::error(401, "GatedRepo", &msg));
            }
        }
    }
    let commit = r
        .refs
        .iter()
        .find(|(name, _)| name == rev)
        .map(|(_, c)| c.clone())
        .or_else(|| r.commits.contains_key(rev).then(|| rev.to_string()));
    match commit {
        Some(c) => Ok((r, c)),
        None => Err(Reply::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))),
    }
}

fn hub_reply(state: &mut State, request: &Recorded, cdn: &str) -> Reply {
    let path = request.target.split('?').next().unwrap_or("").to_string();
    let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    if segments.first() == Some(&"api") && segments.get(1) == Some(&"models") && segments.len() >= 5
    {
        let repo = format!("{}/{}", segments[2], segments[3]);
        return match (segments[4], segments.get(5)) {
            ("revision", Some(rev)) => {
                revision_reply(state, request, &repo, &percent_decode(rev), query)
            }
            ("refs", None) => refs_reply(state, request, &repo),
            ("tree", Some(rev)) => tree_reply(state, request, &repo, &percent_decode(rev)),
            _ => Reply::error(404, "", "Not found"),
        };
    }

    // /{owner}/{name}/resolve/{rev}/{file...}
    if segments.len() < 5 || segments[2] != "resolve" {
        return Reply::error(404, "", "Not found");
    }
    let repo = format!("{}/{}", segments[0], segments[1]);
    if let Some(new) = state.renamed.get(&repo) {
        let rest = segments[2..].join("/");
        return Reply::new(307).header("Location", format!("/{new}/{rest}"));
    }
    let rev = percent_decode(segments[3]);
    let file = percent_decode(&segments[4..].join("/"));
    let (r, commit) = match find(state, request, &repo, &rev, true) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let Some(f) = r.commits[&commit].iter().find(|f| f.name == file) else {
        return Reply::error(404, "EntryNotFound", &format!("{file} does not exist on \"{rev}\""))
            .header("X-Repo-Commit", commit);
    };
    if f.lfs {
        let sha = sha256_hex(&f.bytes);
        return Reply::new(302)
            .header("Location", format!("{cdn}/blobs/{sha}?X-Amz-Signature=fake-signature"))
            .header("X-Repo-Commit", commit)
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", f.bytes.len().to_string())
            .header("ETag", format!("\"{}\"", git_sha1_hex(sha.as_bytes())));
    }
    let etag = git_sha1_hex(&f.bytes);
    let bytes = f.bytes.clone();
    ranged(request, bytes).header("X-Repo-Commit", commit).header("ETag", format!("\"{etag}\""))
}

fn revision_reply(state: &State, request: &Recorded, repo: &str, rev: &str, query: &str) -> Reply {
    let (r, commit) = match find(state, request, repo, rev, false) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let blobs = query.split('&').any(|kv| kv == "blobs=true" || kv == "blobs=True");
    let siblings: Vec<serde_json::Value> = r.commits[&commit]
        .iter()
        .map(|f| {
            if !blobs {
                return serde_json::json!({ "rfilename": f.name });
            }
            let mut s = serde_json::json!({
                "rfilename": f.name,
                "size": f.bytes.len(),
                "blobId": git_sha1_hex(&f.bytes),
            });
            if f.lfs {
                s["lfs"] = serde_json::json!({
                    "sha256": sha256_hex(&f.bytes), "size": f.bytes.len(), "pointerSize": 134
                });
            }
            s
        })
        .collect();
    Reply::json(serde_json::json!({
        "_id": format!("fake-{commit}"),
        "id": repo,
        "modelId": repo,
        "sha": commit,
        "private": false,
        "disabled": false,
        "gated": if r.gated_token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
        "lastModified": "2024-01-01T00:00:00.000Z",
        "tags": [],
        "siblings": siblings,
    }))
}

/// `GET /api/models/{repo}/tree/{revision}?recursive=true`: what Python's
/// `snapshot_download` lists (always recursive here, in one page).
fn tree_reply(state: &State, request: &Recorded, repo: &str, rev: &str) -> Reply {
    let (r, commit) = match find(state, request, repo, rev, false) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let mut entries = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for f in &r.commits[&commit] {
        let mut parts: Vec<&str> = f.name.split('/').collect();
        parts.pop();
        for depth in 1..=parts.len() {
            let dir = parts[..depth].join("/");
            if !dirs.contains(&dir) {
                entries.push(serde_json::json!({
                    "type": "directory", "oid": git_sha1_hex(dir.as_bytes()), "size": 0, "path": dir
                }));
                dirs.push(dir);
            }
        }
        let mut entry = serde_json::json!({
            "type": "file", "oid": git_sha1_hex(&f.bytes), "size": f.bytes.len(), "path": f.name
        });
        if f.lfs {
            entry["lfs"] = serde_json::json!({
                "oid": sha256_hex(&f.bytes), "size": f.bytes.len(), "pointerSize": 134
            });
        }
        entries.push(entry);
    }
    Reply::json(serde_json::Value::Array(entries))
}

fn refs_reply(state: &State, request: &Recorded, repo: &str) -> Reply {
    let (r, _) = match find(state, request, repo, "main", false) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let item = |name: &str, git_ref: String, commit: &str| serde_json::json!({ "name": name, "ref": git_ref, "targetCommit": commit });
    let prs: Vec<_> = r
        .refs
        .iter()
        .filter(|(n, _)| n.starts_with("refs/pr/"))
        .map(|(n, c)| item(n, n.clone(), c))
        .collect();
    let branches: Vec<_> = r
        .refs
        .iter()
        .filter(|(n, _)| !n.starts_with("refs/"))
        .map(|(n, c)| item(n, format!("refs/heads/{n}"), c))
        .collect();
    let include_prs = request.target.contains("include_prs=1");
    Reply::json(serde_json::json!({
        "branches": branches,
        "converts": [],
        "tags": [],
        "pullRequests": if include_prs { serde_json::json!(prs) } else { serde_json::Value::Null },
    }))
}

fn cdn_reply(state: &mut State, request: &Recorded) -> Reply {
    let path = request.target.split('?').next().unwrap_or("");
    let Some(sha) = path.strip_prefix("/blobs/") else {
        return Reply::new(404);
    };
    let Some(mut bytes) = state.blobs.get(sha).cloned() else {
        return Reply::new(404);
    };
    if state.corrupt.get(sha).copied().unwrap_or(false) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    }
    let mut reply = if state.cdn_ignores_range {
        let mut whole = Reply::new(200);
        whole.body = bytes;
        whole
    } else {
        ranged(request, bytes)
    };
    if request.method == "GET" {
        if let Some(after) = state.drop_once.remove(sha) {
            reply.cut_after = Some(after);
        }
    }
    reply.delay = state.cdn_delay;
    reply
}

/// 200 with the whole body, or 206 with the requested range (`bytes=N-` or `bytes=N-M`).
fn ranged(request: &Recorded, bytes: Vec<u8>) -> Reply {
    let total = bytes.len();
    let range = request.header("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (a, b) = r.split_once('-')?;
        let start: usize = a.parse().ok()?;
        let end: usize = if b.is_empty() { total.saturating_sub(1) } else { b.parse().ok()? };
        Some((start, end.min(total.saturating_sub(1))))
    });
    match range {
        None => {
            let mut r = Reply::new(200).header("Accept-Ranges", "bytes");
            r.body = bytes;
            r
        }
        Some((start, _)) if start >= total => {
            Reply::new(416).header("Content-Range", format!("bytes */{total}"))
        }
        Some((start, end)) => {
            let mut r = Reply::new(206)
                .header("Accept-Ranges", "bytes")
                .header("Content-Range", format!("bytes {start}-{end}/{total}"));
            r.body = bytes[start..=end].to_vec();
            r
        }
    }
}
