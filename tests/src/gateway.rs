//! A running `ringcast` process on free loopback ports, stopped by pid when dropped.

use crate::http;
use crate::ports::{free_port, free_range};
use crate::proc_stats;
use crate::programs::binary;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A gateway started for one test.
pub struct Gateway {
    child: Child,
    /// First WebSocket port.
    pub first_port: u16,
    /// Number of WebSocket ports.
    pub ports: u16,
    /// Admin address.
    pub admin: SocketAddr,
}

impl Gateway {
    /// Starts `ringcast --shards 2` on `ports` consecutive ports plus `extra` flags and
    /// waits for /healthz.
    pub fn start(ports: u16, extra: &[&str]) -> Gateway {
        Gateway::start_with_fd_limit(ports, extra, None)
    }

    /// Like [`Gateway::start`], with RLIMIT_NOFILE set to `fd_limit` in the gateway
    /// process when given.
    pub fn start_with_fd_limit(ports: u16, extra: &[&str], fd_limit: Option<u64>) -> Gateway {
        let first_port = free_range(ports);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Gateway::spawn(first_port, ports, admin, extra, fd_limit, None, None)
    }

    /// Like [`Gateway::start`], with the gateway's stderr (its log, `RUST_LOG=warn`)
    /// written to `log`.
    pub fn start_logged(ports: u16, extra: &[&str], log: &Path) -> Gateway {
        let first_port = free_range(ports);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Gateway::spawn(first_port, ports, admin, extra, None, None, Some(log))
    }

    /// Like [`Gateway::start`], but ready once `healthy(admin)` holds (polled, at most
    /// 20 s) instead of a plain-HTTP /healthz: for an admin port that speaks TLS.
    pub fn start_when(ports: u16, extra: &[&str], healthy: &dyn Fn(SocketAddr) -> bool) -> Gateway {
        let first_port = free_range(ports);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Gateway::spawn(first_port, ports, admin, extra, None, Some(healthy), None)
    }

    /// A new process on the same ports and admin address as this one (which must have
    /// exited: a node restarted in place, as a rollout does).
    pub fn start_again(&self, extra: &[&str]) -> Gateway {
        Gateway::spawn(
            self.first_port,
            self.ports,
            self.admin,
            extra,
            None,
            None,
            None,
        )
    }

    fn spawn(
        first_port: u16,
        ports: u16,
        admin: SocketAddr,
        extra: &[&str],
        fd_limit: Option<u64>,
        healthy: Option<&dyn Fn(SocketAddr) -> bool>,
        log: Option<&Path>,
    ) -> Gateway {
        let listen = if ports == 1 {
            format!("127.0.0.1:{first_port}")
        } else {
            format!("127.0.0.1:{first_port}-{}", first_port + ports - 1)
        };
        let mut command = Command::new(binary("ringcast"));
        command
            .args(["--listen", &listen, "--admin", &admin.to_string()])
            .args(["--shards", "2"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("gateway log file"));
        }
        if let Some(limit) = fd_limit {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and only affects the child.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("starting ringcast");
        let gateway = Gateway {
            child,
            first_port,
            ports,
            admin,
        };
        gateway.wait_healthy(healthy);
        gateway
    }

    fn wait_healthy(&self, healthy: Option<&dyn Fn(SocketAddr) -> bool>) {
        let every = Duration::from_millis(50);
        let up = match healthy {
            None => http::wait_until(self.admin, "/healthz", 20, every, |_| true),
            Some(healthy) => {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    if healthy(self.admin) {
                        break true;
                    }
                    if Instant::now() >= deadline {
                        break false;
                    }
                    std::thread::sleep(every);
                }
            }
        };
        if !up {
            panic!("ringcast did not become healthy on {}", self.admin);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://127.0.0.1:FIRST[-LAST]` + `path`, the URL form wsload takes.
    pub fn ws_url(&self, path: &str) -> String {
        if self.ports == 1 {
            format!("ws://127.0.0.1:{}{path}", self.first_port)
        } else {
            format!(
                "ws://127.0.0.1:{}-{}{path}",
                self.first_port,
                self.first_port + self.ports - 1
            )
        }
    }

    /// The first WebSocket address.
    pub fn ws_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.first_port))
    }

    /// The /metrics text.
    pub fn metrics(&self) -> String {
        http::get(self.admin, "/metrics")
            .expect("GET /metrics")
            .body
    }

    /// Publishes `body` to `channel`; returns the HTTP status.
    pub fn publish(&self, channel: &str, body: &[u8]) -> u16 {
        http::post(self.admin, &format!("/publish/{channel}"), body)
            .expect("POST /publish")
            .status
    }

    /// Polls `metric` (summed over series) until `done` holds, or panics after `secs`.
    pub fn wait_metric(&self, metric: &str, secs: u64, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = 0.0;
        while Instant::now() < deadline {
            last = crate::metrics::sum(&self.metrics(), metric);
            if done(last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{metric} stuck at {last}");
    }

    /// utime + stime of the process so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        proc_stats::cpu_seconds(self.pid())
    }

    /// VmRSS of the process in bytes.
    pub fn rss_bytes(&self) -> u64 {
        proc_stats::rss_bytes(self.pid())
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for the process to exit, at most `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        crate::waits::wait_child_exit(&mut self.child, secs)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
