//! The publisher of `push` and `tick`: posts timestamped, numbered bodies
//! (`"<seq>:<unix-ns>:<padding>"`, seq counting per channel from 0) through the admin API on
//! keep-alive connections, paced to a rate, for the length of the measured phase.
//! `push` shards the channels over `--publishers` threads (one connection each) and goes
//! round-robin over each thread's channels, at most as fast as the rate and, with a
//! [`DeliveryWindow`], the outstanding deliveries allow; `tick` posts the time once a second.
//! At a fixed rate without a window, a body carries the time its message was due, so a
//! publisher held back by a slow server counts the delay as latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::admin_client::AdminClient;
use crate::delivery_window::DeliveryWindow;
use crate::payload::{realtime_ns, write_body};

/// Consecutive failed requests after which a publisher thread gives up.
const MAX_CONSECUTIVE_ERRORS: u64 = 20;

/// What to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PublishMode {
    /// `rate` messages per second over all channels, bodies of `size` bytes.
    Push {
        /// Messages per second (0 = as fast as the admin API answers).
        rate: f64,
        /// Body bytes.
        size: usize,
        /// Stop after this many messages per channel.
        per_channel: Option<u64>,
    },
    /// One message per second to the first channel.
    Tick,
}

/// A publishing run.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Admin API address.
    pub admin: SocketAddr,
    /// Channel names, by channel number.
    pub channels: Vec<String>,
    /// What and how fast.
    pub mode: PublishMode,
    /// How long.
    pub duration: Duration,
    /// Publisher threads (push).
    pub publishers: usize,
    /// Paced push: the bound on outstanding deliveries (None: rate only).
    pub window: Option<Arc<DeliveryWindow>>,
}

/// What a publishing run achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishStats {
    /// Requests answered 202.
    pub published: u64,
    /// Requests answered otherwise or not at all.
    pub errors: u64,
    /// Seconds from the first request to the last answer.
    pub elapsed_s: f64,
    /// `published / elapsed_s`.
    pub rate_per_s: f64,
    /// Requests answered 202, by channel number.
    #[serde(skip)]
    pub per_channel: Vec<u64>,
}

impl PublishStats {
    fn add(&mut self, other: &Self) {
        self.published += other.published;
        self.errors += other.errors;
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        if self.per_channel.len() < other.per_channel.len() {
            self.per_channel.resize(other.per_channel.len(), 0);
        }
        for (a, b) in self.per_channel.iter_mut().zip(&other.per_channel) {
            *a += b;
        }
    }
}

/// Publishes until the plan's duration is over or `stop` is set.
pub fn run(plan: &PublishPlan, stop: &AtomicBool) -> PublishStats {
    let start = Instant::now();
    let mut total = PublishStats {
        per_channel: vec![0; plan.channels.len()],
        ..PublishStats::default()
    };
    match plan.mode {
        PublishMode::Tick => {
            let channel = plan.channels.first().map_or("tick", String::as_str);
            let mut client = AdminClient::new(plan.admin);
            let mut stats = PublishStats {
                per_channel: vec![0; plan.channels.len().max(1)],
                ..PublishStats::default()
            };
            let end = start + plan.duration;
            let mut seq = 0u64;
            let mut body = Vec::new();
            loop {
                let due = start + Duration::from_secs(seq);
                if due >= end || !sleep_until(due, stop) {
                    break;
                }
                body.clear();
                write_body(&mut body, seq, realtime_ns(), 0);
                post(&mut client, channel, &body, 0, &mut stats);
                seq += 1;
            }
            stats.elapsed_s = start.elapsed().as_secs_f64();
            total.add(&stats);
        }
        PublishMode::Push {
            rate,
            size,
            per_channel,
        } => {
            let threads = plan.publishers.clamp(1, plan.channels.len().max(1));
            let results: Vec<PublishStats> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        scope.spawn(move || {
                            push_thread(plan, t, threads, (rate, size, per_channel), stop)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for stats in &results {
                total.add(stats);
            }
        }
    }
    total.elapsed_s = start.elapsed().as_secs_f64();
    total.rate_per_s = if total.elapsed_s > 0.0 {
        total.published as f64 / total.elapsed_s
    } else {
        0.0
    };
    total
}

/// Publisher thread `t` of `threads`: channels `c` with `c % threads == t`, round-robin;
/// `(rate, size, per_channel)` as in [`PublishMode::Push`].
fn push_thread(
    plan: &PublishPlan,
    t: usize,
    threads: usize,
    (rate, size, per_channel): (f64, usize, Option<u64>),
    stop: &AtomicBool,
) -> PublishStats {
    let mine: Vec<usize> = (t..plan.channels.len()).step_by(threads).collect();
    let mut stats = PublishStats {
        per_channel: vec![0; plan.channels.len()],
        ..PublishStats::default()
    };
    if mine.is_empty() {
        return stats;
    }
    let my_rate = rate * mine.len() as f64 / plan.channels.len() as f64;
    let mut client = AdminClient::new(plan.admin);
    let start = Instant::now();
    let end = start + plan.duration;
    let mut body = Vec::with_capacity(size + 32);
    let mut consecutive_errors = 0;
    for j in 0u64.. {
        // At a fixed rate a message is stamped with the time it was due, not the time
        // it left: a server that answers publishes late holds the publisher back, and
        // that wait is part of the message's latency (no coordinated omission). Paced
        // by a window, the wait for room is the point, so it is stamped when it leaves.
        let mut due_at = None;
        if my_rate > 0.0 {
            let due = start + Duration::from_secs_f64(j as f64 / my_rate);
            if due >= end || !sleep_until(due, stop) {
                break;
            }
            if plan.window.is_none() {
                due_at = Some(due);
            }
        } else if Instant::now() >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let n = mine.len() as u64;
        if consecutive_errors >= MAX_CONSECUTIVE_ERRORS || per_channel.is_some_and(|m| j >= m * n) {
            break;
        }
        if let Some(window) = &plan.window
            && !window.wait_for_room(stop, end)
        {
            break;
        }
        let channel = mine[(j % n) as usize];
        body.clear();
        // Now on the wall clock, less how late the message is on the monotonic one.
        let late = due_at.map_or(0, |due| {
            Instant::now().saturating_duration_since(due).as_nanos()
        });
        let stamp_ns = realtime_ns().saturating_sub(late as u64);
        write_body(&mut body, j / n, stamp_ns, size);
        let accepted = stats.published;
        if post(
            &mut client,
            &plan.channels[channel],
            &body,
            channel,
            &mut stats,
        ) {
            if let Some(window) = &plan.window
                && stats.published > accepted
            {
                window.published(channel);
            }
            consecutive_errors = 0;
        } else {
            consecutive_errors += 1;
        }
    }
    stats.elapsed_s = start.elapsed().as_secs_f64();
    stats
}

/// Posts one message; returns whether the server answered at all.
fn post(
    client: &mut AdminClient,
    channel: &str,
    body: &[u8],
    channel_number: usize,
    stats: &mut PublishStats,
) -> bool {
    match client.post(&format!("/publish/{channel}"), body) {
        Ok(202) => {
            stats.published += 1;
            if let Some(n) = stats.per_channel.get_mut(channel_number) {
                *n += 1;
            }
            true
        }
        Ok(_) => {
            stats.errors += 1;
            true
        }
        Err(_) => {
            stats.errors += 1;
            false
        }
    }
}

/// Sleeps until `due` in steps of at most 50 ms; `false` if `stop` was set meanwhile.
pub fn sleep_until(due: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// `(path, body)` of every request.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// An admin API that answers 202 to everything and records (path, body).
    fn fake_admin() -> (SocketAddr, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let path = request_line.split(' ').nth(1).unwrap().to_owned();
                        record
                            .lock()
                            .unwrap()
                            .push((path, String::from_utf8(body).unwrap()));
                        writer
                            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                    }
                });
            }
        });
        (addr, seen)
    }

    #[test]
    fn push_numbers_each_channel_from_zero() {
        let (admin, seen) = fake_admin();
        let plan = PublishPlan {
            admin,
            channels: vec!["a".into(), "b".into(), "c".into()],
            mode: PublishMode::Push {
                rate: 200.0,
                size: 40,
                per_channel: None,
            },
            duration: Duration::from_millis(300),
            publishers: 2,
            window: None,
        };
        let stats = run(&plan, &AtomicBool::new(false));
        assert!(stats.published >= 30, "{stats:?}");
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.per_channel.iter().sum::<u64>(), stats.published);
        let seen = seen.lock().unwrap();
        for channel in ["a", "b", "c"] {
            let seqs: Vec<u64> = seen
                .iter()
                .filter(|(p, _)| p == &format!("/publish/{channel}"))
                .map(|(_, body)| {
                    assert_eq!(body.len(), 40);
                    body.split(':').next().unwrap().parse().unwrap()
                })
                .collect();
            assert!(!seqs.is_empty());
            assert!(
                seqs.iter().enumerate().all(|(i, &s)| s == i as u64),
                "{seqs:?}"
            );
        }
    }

    #[test]
    fn push_stops_after_the_per_channel_count() {
        let (admin, seen) = fake_admin();
        let plan = PublishPlan {
            admin,
            channels: vec!["a".into(), "b".into(), "c".into()],
            mode: PublishMode::Push {
                rate: 0.0,
                size: 0,
                per_channel: Some(5),
            },
            duration: Duration::from_secs(20),
            publishers: 2,
            window: None,
        };
        let stats = run(&plan, &AtomicBool::new(false));
        assert_eq!(stats.published, 15);
        assert_eq!(stats.per_channel, vec![5, 5, 5]);
        assert_eq!(seen.lock().unwrap().len(), 15);
    }

    #[test]
    fn paced_push_waits_for_deliveries() {
        let (admin, seen) = fake_admin();
        let window = Arc::new(DeliveryWindow::new(6, vec![2, 2]));
        let plan = PublishPlan {
            admin,
            channels: vec!["a".into(), "b".into()],
            mode: PublishMode::Push {
                rate: 0.0,
                size: 0,
                per_channel: None,
            },
            duration: Duration::from_millis(400),
            publishers: 1,
            window: Some(Arc::clone(&window)),
        };
        let stats = std::thread::scope(|scope| {
            let publisher = scope.spawn(|| run(&plan, &AtomicBool::new(false)));
            std::thread::sleep(Duration::from_millis(150));
            assert_eq!(seen.lock().unwrap().len(), 3, "6 deliveries = 3 publishes");
            window.received(4);
            publisher.join().unwrap()
        });
        assert_eq!(stats.published, 5);
        assert_eq!(window.outstanding(), 6);
    }

    #[test]
    fn tick_posts_the_time_once_a_second_and_stops_when_told() {
        let (admin, seen) = fake_admin();
        let plan = PublishPlan {
            admin,
            channels: vec!["tick".into()],
            mode: PublishMode::Tick,
            duration: Duration::from_millis(1500),
            publishers: 1,
            window: None,
        };
        let stats = run(&plan, &AtomicBool::new(false));
        assert_eq!(stats.published, 2);
        let seen = seen.lock().unwrap();
        assert!(seen[1].1.starts_with("1:"));
        let stopped = run(&plan, &AtomicBool::new(true));
        assert_eq!(stopped.published, 0);
    }

    #[test]
    fn unreachable_admin_counts_errors_and_gives_up() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = listener.local_addr().unwrap();
        drop(listener);
        let plan = PublishPlan {
            admin,
            channels: vec!["a".into()],
            mode: PublishMode::Push {
                rate: 0.0,
                size: 0,
                per_channel: None,
            },
            duration: Duration::from_secs(5),
            publishers: 1,
            window: None,
        };
        let stats = run(&plan, &AtomicBool::new(false));
        assert_eq!(stats.published, 0);
        assert_eq!(stats.errors, MAX_CONSECUTIVE_ERRORS);
    }
}
