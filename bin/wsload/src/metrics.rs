//! `--metrics ADDR`: wsload's own Prometheus metrics. The coordinator keeps the latest
//! snapshot of every worker (sent twice a second) on a board and a tiny HTTP server thread
//! renders it in the text exposition format on `GET /metrics`, one series per worker
//! (label `worker`). The names are fixed: the Grafana capacity dashboards use them.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::latency::BUCKET_BOUNDS_S;
use crate::stats::Counters;
use crate::wire::Snapshot;

/// Longest time a scrape may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_REQUEST_BYTES: usize = 8 << 10;

/// The latest snapshot of every worker.
#[derive(Debug)]
pub struct MetricsBoard {
    workers: Mutex<Vec<Snapshot>>,
}

impl MetricsBoard {
    /// A board for workers with these connection targets.
    pub fn new(targets: &[u64]) -> Self {
        let workers = targets
            .iter()
            .map(|&target| Snapshot {
                counters: Counters {
                    target,
                    ..Counters::default()
                },
                ..Snapshot::default()
            })
            .collect();
        Self {
            workers: Mutex::new(workers),
        }
    }

    /// Replaces worker `index`'s snapshot.
    pub fn update(&self, index: usize, snapshot: &Snapshot) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = workers.get_mut(index) {
            *slot = snapshot.clone();
        }
    }

    /// The Prometheus text exposition of every worker's metrics.
    pub fn render(&self) -> String {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        render(&workers)
    }
}

type Field = fn(&Counters) -> u64;

/// Plain gauges and counters: name, type, help, value.
const SIMPLE: [(&str, &str, &str, Field); 9] = [
    (
        "wsload_connections_target",
        "gauge",
        "Connections wsload tries to hold.",
        |c| c.target,
    ),
    (
        "wsload_connections",
        "gauge",
        "WebSocket connections open now.",
        |c| c.open,
    ),
    (
        "wsload_connects_total",
        "counter",
        "Handshakes that succeeded (reconnects included).",
        |c| c.connected,
    ),
    (
        "wsload_closed_by_server_total",
        "counter",
        "Connections the server closed before wsload did.",
        |c| c.closed_by_server,
    ),
    (
        "wsload_messages_received_total",
        "counter",
        "Text and binary messages received.",
        |c| c.messages,
    ),
    (
        "wsload_bytes_received_total",
        "counter",
        "Payload bytes of the messages received.",
        |c| c.bytes,
    ),
    (
        "wsload_pings_received_total",
        "counter",
        "Pings received (each answered with a pong).",
        |c| c.pings,
    ),
    (
        "wsload_seq_gaps_total",
        "counter",
        "Sequence numbers skipped.",
        |c| c.seq_gaps,
    ),
    (
        "wsload_seq_dups_total",
        "counter",
        "Sequence numbers not larger than the last one seen on their connection.",
        |c| c.seq_dups,
    ),
];

/// Renders the snapshots (index = worker label).
pub fn render(workers: &[Snapshot]) -> String {
    let mut out = String::new();
    for (name, kind, help, field) in SIMPLE {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, w) in workers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", field(&w.counters));
        }
    }
    let name = "wsload_connect_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connection attempts that failed, by kind.\n# TYPE {name} counter"
    );
    for (i, w) in workers.iter().enumerate() {
        for (kind, n) in w.counters.connect_errors.by_kind() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\",kind=\"{kind}\"}} {n}");
        }
    }
    let name = "wsload_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Publish to receive latency, or echo round trip.\n# TYPE {name} histogram"
    );
    for (i, w) in workers.iter().enumerate() {
        let l = &w.latency;
        for (k, bound) in BUCKET_BOUNDS_S.iter().enumerate() {
            let n = l.cumulative.get(k).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{worker=\"{i}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{worker=\"{i}\",le=\"+Inf\"}} {}",
            l.count
        );
        let _ = writeln!(out, "{name}_sum{{worker=\"{i}\"}} {}", l.sum_s);
        let _ = writeln!(out, "{name}_count{{worker=\"{i}\"}} {}", l.count);
    }
    out
}

/// Binds `addr` and serves `GET /metrics` from `board` on a background thread until the
/// process exits. Returns the bound address.
pub fn serve(addr: SocketAddr, board: Arc<MetricsBoard>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding --metrics {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("wsload-metrics".to_owned())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &board);
            }
        })
        .context("starting the metrics thread")?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, board: &MetricsBoard) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let wanted = request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?");
    let (status, content_type, body) = if wanted {
        ("200 OK", "text/plain; version=0.0.4", board.render())
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_owned(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latency;

    #[test]
    fn renders_every_name_with_worker_labels() {
        let board = MetricsBoard::new(&[10, 20]);
        let mut latency = Latency::new();
        latency.record_ns(2_000_000);
        let mut snapshot = Snapshot {
            latency: latency.prometheus_buckets(),
            ..Snapshot::default()
        };
        snapshot.counters.target = 20;
        snapshot.counters.open = 7;
        snapshot.counters.connect_errors.reset = 2;
        board.update(1, &snapshot);
        board.update(5, &snapshot);
        let text = board.render();
        for needle in [
            "wsload_connections_target{worker=\"0\"} 10",
            "wsload_connections{worker=\"1\"} 7",
            "wsload_connects_total{worker=\"0\"} 0",
            "wsload_connect_errors_total{worker=\"1\",kind=\"reset\"} 2",
            "wsload_closed_by_server_total{worker=\"1\"} 0",
            "wsload_messages_received_total{worker=\"1\"} 0",
            "wsload_bytes_received_total{worker=\"1\"} 0",
            "wsload_pings_received_total{worker=\"1\"} 0",
            "wsload_seq_gaps_total{worker=\"1\"} 0",
            "wsload_seq_dups_total{worker=\"1\"} 0",
            "# TYPE wsload_latency_seconds histogram",
            "wsload_latency_seconds_bucket{worker=\"1\",le=\"0.001\"} 0",
            "wsload_latency_seconds_bucket{worker=\"1\",le=\"0.0025\"} 1",
            "wsload_latency_seconds_bucket{worker=\"1\",le=\"+Inf\"} 1",
            "wsload_latency_seconds_count{worker=\"1\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(!text.contains("worker=\"2\""));
    }

    #[test]
    fn serves_metrics_and_404() {
        let board = Arc::new(MetricsBoard::new(&[3]));
        let addr = serve("127.0.0.1:0".parse().unwrap(), board).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("wsload_connections_target{worker=\"0\"} 3"));
        assert!(get("/").starts_with("HTTP/1.1 404"));
        assert!(
            serve(addr, Arc::new(MetricsBoard::new(&[]))).is_err(),
            "port in use"
        );
    }
}
