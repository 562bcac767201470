//! Where the Hub is, where the cache lives, and who we are: read from the same environment
//! variables as Python's `huggingface_hub`, so both tools share one cache.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// An access token. Its `Debug` shows only that a token is set; it has no `Display`, so it
/// cannot end up in a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; surrounding whitespace (a trailing newline in a token file) is dropped.
    /// An empty token is no token.
    pub fn new(token: &str) -> Option<Token> {
        let token = token.trim();
        (!token.is_empty()).then(|| Token(token.to_string()))
    }

    /// The secret itself, for the `Authorization` header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How downloads report progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal (stderr), plain lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Always plain lines on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

/// Settings for talking to the Hub. [`HubOptions::from_env`] gives what `huggingface_hub`
/// would use in the same environment.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Base URL of the Hub, without a trailing slash (`HF_ENDPOINT`, default
    /// `https://huggingface.co`).
    pub endpoint: String,
    /// The hub cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, default `$HF_HOME/token`).
    pub token: Option<Token>,
    /// Serve only from the cache (`HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to 1, ON,
    /// YES or TRUE).
    pub offline: bool,
    /// Progress reporting for large files (default [`ProgressMode::Auto`]).
    pub progress: ProgressMode,
    /// How many times a broken download is resumed within one call (default 5).
    pub retries: u32,
    /// Connect and per-read timeout (default 30 s).
    pub timeout: Duration,
}

impl HubOptions {
    /// Reads the process environment.
    pub fn from_env() -> HubOptions {
        HubOptions::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads settings through `var` (a name → value lookup), so tests need not touch the
    /// process environment. Unset and empty variables count as absent.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> HubOptions {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());

        let hf_home = var("HF_HOME").map(|h| expand_home(&h, &var)).unwrap_or_else(|| {
            let cache_home = var("XDG_CACHE_HOME")
                .map(|c| expand_home(&c, &var))
                .unwrap_or_else(|| home_dir(&var).join(".cache"));
            cache_home.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(|c| expand_home(&c, &var))
            .unwrap_or_else(|| hf_home.join("hub"));

        let token = var("HF_TOKEN").and_then(|t| Token::new(&t)).or_else(|| {
            if var("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some_and(|v| is_true(&v)) {
                return None;
            }
            let path = var("HF_TOKEN_PATH")
                .map(|p| expand_home(&p, &var))
                .unwrap_or_else(|| hf_home.join("token"));
            read_token_file(&path)
        });

        let offline = var("HF_HUB_OFFLINE").or_else(|| var("TRANSFORMERS_OFFLINE"));
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());

        HubOptions {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir,
            token,
            offline: offline.is_some_and(|v| is_true(&v)),
            progress: ProgressMode::Auto,
            retries: 5,
            timeout: Duration::from_secs(30),
        }
    }
}

/// huggingface_hub's notion of a true environment value.
fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

fn home_dir(var: &impl Fn(&str) -> Option<String>) -> PathBuf {
    var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// Expands a leading `~`, as Python's `os.path.expanduser` does for these variables.
fn expand_home(path: &str, var: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            home_dir(var).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

fn read_token_file(path: &Path) -> Option<Token> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            tracing::debug!(path = %path.display(), "using the token file");
            Token::new(&text)
        }
        Err(_) => None,
    }
}
