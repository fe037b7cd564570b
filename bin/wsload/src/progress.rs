//! Live progress on stderr: an indicatif bar (open connections / target, connect rate,
//! errors, messages per second) when stderr is a terminal, one plain line a second
//! otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::Counters;

/// Plain-line period.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// The progress display of one run.
pub struct ProgressView {
    bar: Option<ProgressBar>,
    next_line: Instant,
    last: Option<(Instant, Counters)>,
    rates: (f64, f64),
}

impl ProgressView {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new(target: u64, scenario: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(target), ProgressDrawTarget::stderr());
            let template =
                format!("{scenario} {{elapsed:>4}} [{{bar:30}}] {{pos}}/{{len}} {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            next_line: Instant::now() + LINE_EVERY,
            last: None,
            rates: (0.0, 0.0),
        }
    }

    /// Shows the totals over all workers.
    pub fn update(&mut self, elapsed_s: f64, total: &Counters) {
        let now = Instant::now();
        match &self.last {
            None => self.last = Some((now, *total)),
            Some((then, before)) if now.duration_since(*then) >= LINE_EVERY => {
                let dt = now.duration_since(*then).as_secs_f64();
                self.rates = (
                    total.connected.saturating_sub(before.connected) as f64 / dt,
                    total.messages.saturating_sub(before.messages) as f64 / dt,
                );
                self.last = Some((now, *total));
            }
            Some(_) => {}
        }
        let text = line(total, self.rates.0, self.rates.1);
        match &self.bar {
            Some(bar) => {
                bar.set_position(total.open);
                bar.set_message(text);
            }
            None if now >= self.next_line => {
                self.next_line = now + LINE_EVERY;
                eprintln!("[wsload] {elapsed_s:7.1}s {text}");
            }
            None => {}
        }
    }

    /// Removes the bar before the final table.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `open 10/20 connected 10 failed 0 | 500 conn/s | msgs 30 (100/s)`.
pub fn line(total: &Counters, connect_rate: f64, message_rate: f64) -> String {
    format!(
        "open {}/{} connected {} failed {} | {:.0} conn/s | msgs {} ({:.0}/s)",
        total.open,
        total.target,
        total.connected,
        total.failed(),
        connect_rate,
        total.messages,
        message_rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_target_errors_and_rates() {
        let total = Counters {
            target: 20,
            open: 10,
            connected: 12,
            messages: 30,
            ..Counters::default()
        };
        assert_eq!(
            line(&total, 500.4, 99.6),
            "open 10/20 connected 12 failed 0 | 500 conn/s | msgs 30 (100/s)"
        );
        let mut view = ProgressView::new(20, "hold");
        view.update(1.0, &total);
        view.update(2.0, &total);
        view.finish();
    }
}
