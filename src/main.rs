//! `funmatch`: knowledge distillation by function matching, from the command line.

use clap::{Parser, Subcommand};

mod eval;
mod export;
mod fetch;
mod model_arg;
mod models_cmd;
mod predict;
mod train;
mod zoo;

#[derive(Parser)]
#[command(
    name = "funmatch",
    version,
    about = "Distil BiT teachers into compact students by function matching"
)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a model from the Hugging Face Hub into the shared cache and print its folder.
    Fetch(fetch::FetchArgs),
    /// Write a Hub-ready model folder (timm or transformers layout) with a model card.
    Export(export::ExportArgs),
    /// Classify images (or preprocessed tensors) with a model and print the top classes.
    Predict(predict::PredictArgs),
    /// List the model zoo and the registered architectures.
    Models(models_cmd::ModelsArgs),
    /// Evaluate teacher and students on ImageNet, its variants or Fashion-MNIST, side by side.
    Eval(eval::EvalArgs),
    /// Train a model with cross-entropy (teachers on small data, from-scratch baselines).
    Train(train::TrainArgs),
    /// Distil teachers into a student by function matching (T²·KL on shared, mixed views).
    Distill(train::DistillArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // Training and inference reuse their activation buffers instead of faulting in fresh
    // pages every step.
    if !funmatch_kernels::tune_allocator() {
        tracing::debug!("allocator left at its defaults (not glibc, or mallopt refused)");
    }
    let result: anyhow::Result<()> = match cli.command {
        Command::Fetch(args) => fetch::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
        Command::Models(args) => models_cmd::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => train::run_train(args),
        Command::Distill(args) => train::run_distill(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,funmatch=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
