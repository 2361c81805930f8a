//! Progress output: an indicatif bar per epoch (batches, loss, img/s, ETA) when stderr is a
//! terminal; otherwise nothing but the one-line-per-epoch log, which always goes to stdout.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of one run.
pub struct Progress {
    interactive: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    images: usize,
}

impl Progress {
    /// Bars only if stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        Progress {
            interactive: !quiet && std::io::stderr().is_terminal(),
            bar: None,
            started: Instant::now(),
            images: 0,
        }
    }

    /// No bars, whatever the terminal (tests, libraries).
    pub fn plain() -> Self {
        Progress {
            interactive: false,
            ..Progress::new(true)
        }
    }

    /// Starts the bar of an epoch with `steps` batches.
    pub fn start_epoch(&mut self, label: &str, steps: usize) {
        self.started = Instant::now();
        self.images = 0;
        if !self.interactive {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        self.bar = Some(bar);
    }

    /// One batch of `images` done, with the running mean loss.
    pub fn step(&mut self, images: usize, mean_loss: f64) {
        self.images += images;
        if let Some(bar) = &self.bar {
            let rate = self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {mean_loss:.4} {rate:.0} img/s"));
            bar.inc(1);
        }
    }

    /// Ends the epoch's bar and prints its log line.
    pub fn finish_epoch(&mut self, line: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{line}");
    }

    /// Prints a message (warnings, notes) without breaking a bar.
    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }
}
