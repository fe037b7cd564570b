//! The human-readable end-of-run table (stderr): one `figure | value` row per figure of the
//! report that applies to the scenario.

use crate::latency::LatencySummary;
use crate::report::Report;

/// Renders the report as an aligned two-column table.
pub fn render(r: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
    row(
        "scenario",
        format!("{} ({} worker process(es))", r.scenario, r.procs),
    );
    row(
        "connected / target",
        format!("{} / {} ({} failed)", r.connected, r.target, r.failed),
    );
    let e = &r.connect_errors;
    if r.failed > 0 {
        row(
            "connect errors",
            format!(
                "refused {} timeout {} handshake {} reset {} other {}",
                e.refused, e.timeout, e.handshake, e.reset, e.other
            ),
        );
    }
    row(
        "ramp",
        format!(
            "{:.2} s, {:.0} connections/s",
            r.ramp_seconds, r.connect_rate_per_s
        ),
    );
    if let Some(l) = &r.connect_latency {
        row("connect + handshake", latency(l));
    }
    row("closed by server", r.closed_by_server.to_string());
    if r.protocol_errors > 0 {
        row("protocol errors", r.protocol_errors.to_string());
    }
    row(
        "messages received",
        format!(
            "{} ({} bytes), {:.0}/s",
            r.messages, r.bytes, r.deliveries_per_s
        ),
    );
    row(
        "sequence",
        format!(
            "{} gaps, {} dups ({} out of order)",
            r.seq_gaps, r.seq_dups, r.seq_out_of_order
        ),
    );
    row("pings answered", r.pings.to_string());
    if let Some(l) = &r.latency {
        let label = if r.scenario == "echo" {
            "round trip"
        } else {
            "publish -> receive"
        };
        row(label, latency(l));
    }
    if let Some(p) = &r.push {
        row(
            "published",
            format!(
                "{} to {} channels ({} errors), {:.0}/s",
                p.published, p.channels, p.publish_errors, p.publish_rate_per_s
            ),
        );
        row(
            "deliveries",
            format!(
                "{} expected, {} unique, {} lost, {} duplicated, {} out of order",
                p.expected_deliveries, p.delivered_unique, p.lost, p.duplicated, p.out_of_order
            ),
        );
    }
    if let Some(t) = &r.tick {
        row(
            "ticks",
            format!(
                "{} published, {} received, {} reached every connection",
                t.ticks_published, t.ticks_received, t.ticks_complete
            ),
        );
        if let Some(s) = &t.spread {
            row("arrival spread per tick", latency(s));
        }
        if let Some(s) = &t.to_last_arrival {
            row("publish -> last arrival", latency(s));
        }
    }
    if let Some(x) = &r.echo {
        row(
            "echo",
            format!(
                "{} sent, {} received, {} lost, {:.0}/s",
                x.sent, x.received, x.lost, x.echoes_per_s
            ),
        );
    }
    if let Some(c) = &r.churn {
        row(
            "churn",
            format!(
                "{} closed, {} reopened, {} failed, {} interrupted by the stop",
                c.closed, c.reconnects, c.reconnect_failures, c.interrupted
            ),
        );
        if let Some(l) = &c.reconnect_latency {
            row("reconnect latency", latency(l));
        }
    }
    if let Some(x) = &r.resume {
        row(
            "resume",
            format!(
                "{} server closes, {} reconnect retries, {} recovered, {} NOT recovered, \
                 {} caught up",
                x.server_closes, x.retries, x.recovered, x.not_recovered, x.caught_up
            ),
        );
        if let Some(l) = &x.reconnect_latency {
            row("reconnect latency", latency(l));
        }
        if let Some(l) = &x.recovery_latency {
            row("loss -> caught up", latency(l));
        }
    }
    let c = &r.client;
    row(
        "wsload CPU",
        format!(
            "{:.2} s ({:.2} ramp, {:.2} measured phase), {:.3} s per 1M messages",
            c.cpu_s, c.ramp_cpu_s, c.hold_cpu_s, c.cpu_s_per_million_messages
        ),
    );
    row(
        "wsload memory",
        format!(
            "{:.1} MiB RSS, {:.0} B per connection ({})",
            c.rss_bytes as f64 / 1_048_576.0,
            c.rss_per_conn_bytes,
            c.rss_per_conn_basis
        ),
    );
    if !r.missing_workers.is_empty() {
        row("workers without report", format!("{:?}", r.missing_workers));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$} | {v}\n"))
        .collect()
}

fn latency(l: &LatencySummary) -> String {
    format!(
        "p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::EchoFigures;

    #[test]
    fn shows_the_scenario_sections() {
        let report = Report {
            scenario: "echo".into(),
            procs: 1,
            connected: 3,
            target: 3,
            latency: Some(LatencySummary {
                count: 5,
                p50_ms: 0.25,
                ..LatencySummary::default()
            }),
            echo: Some(EchoFigures {
                sent: 5,
                received: 5,
                ..EchoFigures::default()
            }),
            ..Report::default()
        };
        let text = render(&report);
        assert!(
            text.contains("connected / target | 3 / 3 (0 failed)"),
            "{text}"
        );
        assert!(text.contains("round trip"), "{text}");
        assert!(text.contains("5 sent, 5 received"), "{text}");
        assert!(!text.contains("connect errors"), "{text}");
        assert!(!text.contains("ticks"), "{text}");
    }
}
