//! Progress of a long command on stderr, drawn by `indicatif` only when stderr is a terminal (a
//! batch job's log gets the result lines, not a thousand redraws).

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Self {
        let bar = ProgressBar::new(0);
        // The template is a constant: it parses, and the default style stands in if it ever did not.
        let style = ProgressStyle::with_template("{msg:<16} [{bar:30}] {pos}/{len} {elapsed}/{eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>.");
        bar.set_style(style);
        bar.set_message(label.into());
        Self { bar }
    }

    /// `done` of `total`; the bar finishes (and keeps its last line) when they meet.
    pub fn update(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if done >= total && !self.bar.is_finished() {
            self.bar.finish();
        }
    }
}
