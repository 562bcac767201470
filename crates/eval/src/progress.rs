//! Progress of one (model, set) run: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always a bar.
    Bar,
    /// Always plain lines on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

/// Plain-line mode prints at most this often (and at the end).
const LINE_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) enum Progress {
    None,
    Bar(indicatif::ProgressBar),
    Lines { label: String, total: u64, started: Instant, last: Instant },
}

impl Progress {
    pub(crate) fn start(mode: ProgressMode, label: &str, total: u64) -> Progress {
        let bar = match mode {
            ProgressMode::Quiet => return Progress::None,
            ProgressMode::Bar => true,
            ProgressMode::Lines => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        let now = Instant::now();
        if !bar {
            eprintln!("eval {label}: {total} images");
            return Progress::Lines { label: label.to_string(), total, started: now, last: now };
        }
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} images {per_sec} eta {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        Progress::Bar(
            indicatif::ProgressBar::new(total).with_style(style).with_message(label.to_string()),
        )
    }

    pub(crate) fn update(&mut self, done: u64) {
        match self {
            Progress::None => {}
            Progress::Bar(bar) => bar.set_position(done),
            Progress::Lines { label, total, started, last } => {
                if last.elapsed() < LINE_INTERVAL {
                    return;
                }
                *last = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!("eval {label}: {done}/{total} images, {rate:.1} images/s");
            }
        }
    }

    pub(crate) fn finish(self, summary: &str) {
        match self {
            Progress::None => {}
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines { label, .. } => eprintln!("eval {label}: {summary}"),
        }
    }
}
