//! Progress of a run: a bar with step, epoch, loss, images/s and ETA on a terminal, plain
//! fixed-width lines otherwise.
//!
//! The ETA is the training steps' own rate times the steps left plus the mean time of an
//! evaluation times the evaluations left, so it does not jump after each mid-run evaluation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain-line mode prints at most this often.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// A progress reporter.
pub enum Progress {
    /// Nothing.
    Quiet,
    /// An indicatif bar.
    Bar(indicatif::ProgressBar, Eta),
    /// A line every [`LINE_INTERVAL`] and at every log step.
    Lines {
        /// When the last line was printed.
        last: Option<Instant>,
        /// The time left.
        eta: Eta,
    },
}

/// The time a run has left, from this session's steps and evaluations.
pub struct Eta {
    /// When training (re)started.
    started: Instant,
    /// The step training (re)started at.
    first_step: usize,
    /// Total steps.
    total: usize,
    /// Evaluations timed so far, and their total time.
    evals: u32,
    eval_time: Duration,
}

impl Eta {
    fn new(start: usize, total: usize) -> Eta {
        Eta {
            started: Instant::now(),
            first_step: start,
            total,
            evals: 0,
            eval_time: Duration::ZERO,
        }
    }

    /// Seconds left after `step`, with `evals_left` evaluations still to run.
    fn seconds_left(&self, step: usize, evals_left: usize) -> f64 {
        self.seconds_left_at(self.started.elapsed(), step, evals_left)
    }

    fn seconds_left_at(&self, elapsed: Duration, step: usize, evals_left: usize) -> f64 {
        let done = step.saturating_sub(self.first_step).max(1) as f64;
        let left = self.total.saturating_sub(step) as f64;
        let training = elapsed.saturating_sub(self.eval_time).as_secs_f64();
        let per_eval = if self.evals == 0 {
            0.0
        } else {
            self.eval_time.as_secs_f64() / f64::from(self.evals)
        };
        training / done * left + per_eval * evals_left as f64
    }
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
    /// Evaluations still to run, the final one included.
    pub evals_left: usize,
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
            let style = indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} {msg}")
                .expect("the template is valid");
            let bar = indicatif::ProgressBar::new(total as u64).with_style(style);
            bar.set_position(start as u64);
            return Progress::Bar(bar, Eta::new(start, total));
        }
        Progress::Lines { last: None, eta: Eta::new(start, total) }
    }

    /// Counts `took` as evaluation time, out of the training steps' rate.
    pub fn evaluated(&mut self, took: Duration) {
        if let Progress::Bar(_, eta) | Progress::Lines { eta, .. } = self {
            eta.evals += 1;
            eta.eval_time += took;
        }
    }

    /// Reports the state after an update; `force` prints a line regardless of the interval.
    pub fn update(&mut self, s: &Status, force: bool) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar, eta) => {
                bar.set_position(s.step as u64);
                bar.set_message(format!(
                    "epoch {:.2} loss {:.4} {:.0} img/s eta {}",
                    s.epoch,
                    s.loss,
                    s.images_per_s,
                    hms(eta.seconds_left(s.step, s.evals_left))
                ));
            }
            Progress::Lines { last, eta } => {
                if !force && last.is_some_and(|l| l.elapsed() < LINE_INTERVAL) {
                    return;
                }
                *last = Some(Instant::now());
                eprintln!(
                    "step {:>8}/{:<8} epoch {:>8.2}  loss {:>9.4}  img/s {:>8.1}  eta {}",
                    s.step,
                    eta.total,
                    s.epoch,
                    s.loss,
                    s.images_per_s,
                    hms(eta.seconds_left(s.step, s.evals_left))
                );
            }
        }
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar, _) => bar.println(message),
            Progress::Lines { .. } => eprintln!("{message}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }
}

/// Seconds as `H:MM:SS`.
fn hms(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Evaluations left after step `done` of `total`: one every `every` steps before the end,
/// plus the final one, when there is an eval set.
pub fn evals_left(done: usize, total: usize, every: usize, has_eval: bool) -> usize {
    if !has_eval {
        return 0;
    }
    let mid = if every == 0 || done >= total {
        0
    } else {
        // Multiples of `every` in (done, total).
        (total - 1) / every - done / every
    };
    mid + usize::from(done < total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evals_left_counts_mid_run_and_final_evaluations() {
        // Evaluations after steps 600 and 1 200, and the final one at 1 800.
        assert_eq!(evals_left(0, 1800, 600, true), 3);
        assert_eq!(evals_left(599, 1800, 600, true), 3);
        assert_eq!(evals_left(600, 1800, 600, true), 2);
        assert_eq!(evals_left(1200, 1800, 600, true), 1);
        assert_eq!(evals_left(1799, 1800, 600, true), 1);
        assert_eq!(evals_left(1800, 1800, 600, true), 0);
        assert_eq!(evals_left(10, 1800, 0, true), 1);
        assert_eq!(evals_left(10, 1800, 600, false), 0);
    }

    #[test]
    fn eta_leaves_evaluation_time_out_of_the_step_rate() {
        let mut eta = Eta::new(0, 200);
        // 100 steps in 10 s of training plus one 30 s evaluation; one evaluation left.
        eta.evals = 1;
        eta.eval_time = Duration::from_secs(30);
        let left = eta.seconds_left_at(Duration::from_secs(40), 100, 1);
        assert!((left - (10.0 + 30.0)).abs() < 1e-9, "{left}");
        // No evaluation timed yet: only the steps count.
        let fresh = Eta::new(50, 150);
        let left = fresh.seconds_left_at(Duration::from_secs(5), 100, 2);
        assert!((left - 5.0).abs() < 1e-9, "{left}");
    }
}
