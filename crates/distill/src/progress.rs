//! Progress of a run: a bar with step, epoch, loss, images/s and ETA on a terminal, plain
//! fixed-width lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain-line mode prints at most this often.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// A progress reporter.
pub enum Progress {
    /// Nothing.
    Quiet,
    /// An indicatif bar.
    Bar(indicatif::ProgressBar),
    /// A line every [`LINE_INTERVAL`] and at every log step.
    Lines {
        /// When the last line was printed.
        last: Option<Instant>,
        /// Total steps.
        total: usize,
        /// When training (re)started, and at which step.
        started: Instant,
        /// The step training (re)started at.
        first_step: usize,
    },
}

/// What the reporter shows.
pub struct Status {
    /// Updates done.
    pub step: usize,
    /// Epochs done.
    pub epoch: f64,
    /// Recent mean loss.
    pub loss: f64,
    /// Recent images per second.
    pub images_per_s: f64,
}

impl Progress {
    /// `mode` is `auto`, `bar`, `lines` or `quiet`; the bar goes to stderr.
    pub fn new(mode: &str, start: usize, total: usize) -> Progress {
        let bar = match mode {
            "quiet" => return Progress::Quiet,
            "bar" => true,
            "lines" => false,
            _ => std::io::stderr().is_terminal(),
        };
        if bar {
            let style =
                indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} {msg} eta {eta}")
                    .expect("the template is valid");
            let bar = indicatif::ProgressBar::new(total as u64).with_style(style);
            bar.set_position(start as u64);
            bar.reset_eta();
            return Progress::Bar(bar);
        }
        Progress::Lines { last: None, total, started: Instant::now(), first_step: start }
    }

    /// Reports the state after an update; `force` prints a line regardless of the interval.
    pub fn update(&mut self, s: &Status, force: bool) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                bar.set_position(s.step as u64);
                bar.set_message(format!(
                    "epoch {:.2} loss {:.4} {:.0} img/s",
                    s.epoch, s.loss, s.images_per_s
                ));
            }
            Progress::Lines { last, total, started, first_step } => {
                if !force && last.is_some_and(|l| l.elapsed() < LINE_INTERVAL) {
                    return;
                }
                *last = Some(Instant::now());
                let done = s.step.saturating_sub(*first_step).max(1) as f64;
                let left = total.saturating_sub(s.step) as f64;
                let eta = started.elapsed().as_secs_f64() / done * left;
                eprintln!(
                    "step {:>8}/{:<8} epoch {:>8.2}  loss {:>9.4}  img/s {:>8.1}  eta {}",
                    s.step,
                    total,
                    s.epoch,
                    s.loss,
                    s.images_per_s,
                    hms(eta)
                );
            }
        }
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => bar.println(message),
            Progress::Lines { .. } => eprintln!("{message}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Seconds as `H:MM:SS`.
fn hms(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
