//! A real Prometheus server (Debian's `prometheus` binary) for one test: its own config,
//! rule files and storage in a scratch directory, on a free loopback port, queried over
//! its HTTP API, stopped by pid and its directory removed when dropped.

use crate::http;
use crate::ports::free_port;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Address of its HTTP API.
    pub addr: SocketAddr,
}

/// One scrape job: a name and its `host:port` targets, scraped every second.
pub struct ScrapeJob {
    /// The `job` label.
    pub name: String,
    /// `host:port` targets, scraped at `/metrics`.
    pub targets: Vec<SocketAddr>,
}

impl Prometheus {
    /// Whether the server binary is installed.
    pub fn available() -> bool {
        Path::new(PROMETHEUS_BIN).exists()
    }

    /// Starts Prometheus scraping `jobs` every second and evaluating `rule_files` (copied
    /// into its directory) every second; waits until it answers `/-/ready`.
    pub fn start(jobs: &[ScrapeJob], rule_files: &[&Path]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "ringcast-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus scratch dir");
        let mut rules = Vec::new();
        for (i, file) in rule_files.iter().enumerate() {
            let copy = dir.join(format!("rules-{i}.yml"));
            std::fs::copy(file, &copy).expect("copy rule file");
            rules.push(format!("  - {}\n", copy.display()));
        }
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if !rules.is_empty() {
            config.push_str("rule_files:\n");
            config.push_str(&rules.concat());
        }
        config.push_str("scrape_configs:\n");
        for job in jobs {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("'{t}'")).collect();
            config.push_str(&format!(
                "  - job_name: {}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
                job.name,
                targets.join(", ")
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting prometheus");
        let server = Prometheus { child, dir, addr };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let every = Duration::from_millis(100);
        if !http::wait_until(self.addr, "/-/ready", 30, every, |_| true) {
            panic!("prometheus did not become ready on {}", self.addr);
        }
    }

    /// `GET path` on the API, parsed as JSON (any status: the API answers errors in JSON).
    pub fn api(&self, path: &str) -> Value {
        let response = http::get(self.addr, path).expect("prometheus API request");
        serde_json::from_str(&response.body).unwrap_or_else(|e| {
            panic!(
                "prometheus answered {} with non-JSON ({e}): {}",
                response.status, response.body
            )
        })
    }

    /// Runs an instant query; `Ok(result array)` or `Err(error text)`.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        if answer["status"] == "success" {
            Ok(answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default())
        } else {
            Err(format!("{}: {}", answer["errorType"], answer["error"]))
        }
    }

    /// Every metric name Prometheus holds (scraped series, `up`/`scrape_*`, recorded rules).
    pub fn metric_names(&self) -> Vec<String> {
        let answer = self.api("/api/v1/label/__name__/values");
        answer["data"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Values of `label` over the series matching `selector` (Grafana's `label_values`).
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let answer = self.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            url_encode(selector)
        ));
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Polls `expr` until its result is non-empty, at most `secs`; returns whether it was.
    pub fn wait_for(&self, expr: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.query(expr).is_ok_and(|r| !r.is_empty()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_escapes_promql() {
        assert_eq!(
            url_encode("sum(rate(x{a=~\"b\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D~%22b%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(url_encode("a b+c"), "a%20b%2Bc");
    }
}
