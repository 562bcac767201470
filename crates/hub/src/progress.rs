//! Progress of one large download: a bar on a terminal, a few plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::options::ProgressMode;

/// Files smaller than this download without any progress report.
const LARGE_FILE: u64 = 8 << 20;

/// Plain-line mode prints at most this often (and at the end).
const LINE_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) enum Progress {
    None,
    Bar(indicatif::ProgressBar),
    Lines { name: String, total: u64, started: Instant, last: Instant, first_byte: u64 },
}

impl Progress {
    /// Starts reporting on `name` of `total` bytes, `done` of which are already on disk.
    pub(crate) fn start(mode: ProgressMode, name: &str, total: u64, done: u64) -> Progress {
        if total < LARGE_FILE {
            return Progress::None;
        }
        let bar = match mode {
            ProgressMode::Quiet => return Progress::None,
            ProgressMode::Bar => true,
            ProgressMode::Lines => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        if bar {
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            let bar =
                indicatif::ProgressBar::new(total).with_style(style).with_message(name.to_string());
            bar.set_position(done);
            return Progress::Bar(bar);
        }
        if done > 0 {
            eprintln!("fetch {name}: resuming at {} of {}", mib(done), mib(total));
        } else {
            eprintln!("fetch {name}: {}", mib(total));
        }
        let now = Instant::now();
        Progress::Lines { name: name.to_string(), total, started: now, last: now, first_byte: done }
    }

    /// Reports that `done` bytes are on disk.
    pub(crate) fn update(&mut self, done: u64) {
        match self {
            Progress::None => {}
            Progress::Bar(bar) => bar.set_position(done),
            Progress::Lines { name, total, started, last, first_byte } => {
                if last.elapsed() < LINE_INTERVAL {
                    return;
                }
                *last = Instant::now();
                let rate =
                    done.saturating_sub(*first_byte) as f64 / started.elapsed().as_secs_f64();
                let percent = 100 * done / (*total).max(1);
                eprintln!(
                    "fetch {name}: {percent:>3}% of {} at {}/s",
                    mib(*total),
                    mib(rate as u64)
                );
            }
        }
    }

    /// Ends the report; `ok` says whether the file arrived whole.
    pub(crate) fn finish(self, ok: bool) {
        match self {
            Progress::None => {}
            Progress::Bar(bar) if ok => bar.finish(),
            Progress::Bar(bar) => bar.abandon(),
            Progress::Lines { name, total, started, .. } if ok => {
                let secs = started.elapsed().as_secs_f64();
                eprintln!("fetch {name}: done, {} in {secs:.1} s", mib(total));
            }
            Progress::Lines { .. } => {}
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_reports_without_panicking() {
        for mode in
            [ProgressMode::Auto, ProgressMode::Bar, ProgressMode::Lines, ProgressMode::Quiet]
        {
            let mut p = Progress::start(mode, "model.safetensors", LARGE_FILE * 2, 10);
            p.update(LARGE_FILE);
            p.finish(true);
        }
        assert!(matches!(Progress::start(ProgressMode::Bar, "small", 10, 0), Progress::None));
    }
}
