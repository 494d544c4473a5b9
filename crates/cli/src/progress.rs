//! Progress for long work: a bar on a terminal, plain lines otherwise (so
//! logs and CI output stay readable).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress of `total` steps.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    next_line: u64,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label.to_string());
            b
        });
        Progress {
            bar,
            label: label.to_string(),
            total,
            done: 0,
            next_line: 0,
        }
    }

    pub fn inc(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.done += n;
        match &self.bar {
            Some(b) => b.inc(n),
            None => {
                if self.done >= self.next_line || self.done == self.total {
                    eprintln!("{}: {}/{}", self.label, self.done, self.total);
                    self.next_line = self.done + (self.total / 4).max(1);
                }
            }
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
