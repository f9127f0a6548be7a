//! The progress bar of long offline commands (`fsck`, `export`): bytes
//! done of the total, files done, and the time left once it means
//! something. Drawn on stderr only when it is a terminal and `-q` is not
//! given.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
}

impl Progress {
    /// A bar labelled `verb` ("checking", "exporting"), or `None` when
    /// nothing should be drawn.
    pub fn new(verb: &str) -> Option<Self> {
        if super::quiet() || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {verb} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}}"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Some(Progress {
            bar,
            start: Instant::now(),
        })
    }

    pub fn update(&self, bytes_done: u64, bytes_total: u64, files_done: u64, files_total: u64) {
        let total = bytes_total.max(bytes_done);
        self.bar.set_length(total);
        self.bar.set_position(bytes_done);
        let eta = eta_text(self.start.elapsed(), bytes_done, total)
            .map(|t| format!(" ({t} left)"))
            .unwrap_or_default();
        self.bar
            .set_message(format!("{files_done}/{files_total} files{eta}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The time left, once it means something: after at least 3 seconds and
/// 2% of the bytes. Before that the rate is mostly start-up (unlock, the
/// first directory listings, a cold cache) and the estimate is off by
/// hours ("18h left" for a vault checked in a minute).
pub fn eta_text(elapsed: Duration, done: u64, total: u64) -> Option<String> {
    if total == 0 || done >= total || elapsed.as_secs_f64() < 3.0 || done * 50 < total {
        return None;
    }
    let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
    let secs = left.round() as u64;
    Some(if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    })
}

#[cfg(test)]
mod tests {
    use super::eta_text;
    use std::time::Duration;

    #[test]
    fn eta_waits_until_it_means_something() {
        let s = Duration::from_secs;
        // Too early, or too little done: no estimate at all.
        assert_eq!(eta_text(s(1), 500, 1000), None);
        assert_eq!(eta_text(s(60), 1, 1000), None);
        assert_eq!(eta_text(s(10), 0, 1000), None);
        // Done or nothing to do.
        assert_eq!(eta_text(s(10), 1000, 1000), None);
        assert_eq!(eta_text(s(10), 0, 0), None);
        // Half done in 10 s: 10 s left.
        assert_eq!(eta_text(s(10), 500, 1000).as_deref(), Some("10s"));
        assert_eq!(eta_text(s(90), 500, 1000).as_deref(), Some("1m30s"));
        assert_eq!(eta_text(s(3600), 100, 300).as_deref(), Some("2h00m"));
    }
}
