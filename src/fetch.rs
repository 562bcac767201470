//! `funmatch fetch`: bring a model (or chosen files) from the Hugging Face Hub into the cache
//! shared with Python's huggingface_hub, and print the snapshot folder.

use anyhow::Context;
use funmatch_hub::{FileSelection, HubOptions, RepoSpec};

/// Fetch a model from the Hugging Face Hub into the shared cache and print its folder.
///
/// Without --file or --all, fetches what a model needs: config.json plus the weights
/// (model.safetensors, sharded safetensors, or a BiT .npz). Reads HF_HOME, HF_HUB_CACHE,
/// HF_HUB_OFFLINE, HF_TOKEN and HF_ENDPOINT like huggingface_hub.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Hub repository: owner/name, or owner/name@REVISION (branch, tag, commit or refs/pr/N).
    #[arg(value_name = "REPO[@REVISION]")]
    pub repo: String,
    /// Fetch only this file of the repository (repeat for more).
    #[arg(long = "file", value_name = "FILE", conflicts_with = "all")]
    pub files: Vec<String>,
    /// Fetch every file of the revision.
    #[arg(long)]
    pub all: bool,
    /// Use only the cache, never the network (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

/// Runs `funmatch fetch`.
pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let spec = RepoSpec::parse(&args.repo)?;
    let mut opts = HubOptions::from_env();
    opts.offline |= args.offline;
    let selection = if args.all {
        FileSelection::All
    } else if !args.files.is_empty() {
        FileSelection::Files(args.files.clone())
    } else {
        FileSelection::Model
    };
    tracing::debug!(repo = %spec.repo, revision = %spec.revision, ?selection, offline = opts.offline, cache = %opts.cache_dir.display(), "fetch");

    let snapshot = funmatch_hub::fetch(&spec.repo, &spec.revision, &selection, &opts)
        .with_context(|| format!("cannot fetch {}", args.repo))?;
    println!("{}", snapshot.display());
    Ok(())
}
