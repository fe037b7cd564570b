//! Slow consumers under a real publish load: 300 healthy subscribers and 50 clients
//! that never read share one channel at 200 messages/s for 30 s (6 MB per subscriber,
//! more than the kernel's socket buffers can absorb for a stalled reader). The gateway's RSS
//! stays bounded, every healthy subscriber receives every message in order, and the 50
//! are closed with 1008 and counted. (300, not the 1,000 it once had: 200k deliveries/s
//! to debug-build readers saturated both cores of the test machine, so the healthy
//! readers fell seconds behind and were rightly closed as slow consumers themselves.)

use ringcast_tests::gateway::Gateway;
use ringcast_tests::programs::binary;
use ringcast_tests::ws_client::{read_head, upgrade_request};
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEALTHY: u64 = 300;
const STALLED: usize = 50;
const MESSAGES: u64 = 6_000;
const RATE: u64 = 200;
const SIZE: u64 = 1_024;
const MAX_QUEUE: u64 = 256 * 1024;

/// A subscriber that never reads, with a 4 KiB receive buffer set before connecting
/// (so the advertised window stays small) and the kernel does not absorb megabytes on
/// its behalf before the gateway's own queue fills.
fn stalled_subscriber(gateway: &Gateway) -> TcpStream {
    let addr = match gateway.ws_addr() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("IPv4 expected, got {other}"),
    };
    // SAFETY: plain socket calls on a descriptor created here, with pointers to live
    // locals of the exact sizes passed; the fd is handed to TcpStream, which owns it.
    let mut stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    };
    stream
        .write_all(upgrade_request("/feed").as_bytes())
        .expect("upgrade request");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(read_head(&mut stream).expect("101").status, 101);
    stream
}

#[test]
fn stalled_readers_are_closed_while_healthy_ones_get_everything() {
    let max_queue = MAX_QUEUE.to_string();
    // Long ping interval: the stalled readers never answer pings, and this test is
    // about their queues, not ping timeouts.
    let flags = [
        "--max-queue-bytes",
        &max_queue,
        "--ping-interval",
        "300",
        "--pong-timeout",
        "300",
    ];
    let gateway = Gateway::start(2, &flags);
    let ready = std::env::temp_dir().join(format!("ringcast-slow-{}.ready", gateway.pid()));
    let _ = std::fs::remove_file(&ready);
    let healthy = Command::new(binary("wsload"))
        .args(["hold", "--url", &gateway.ws_url("/feed")])
        .args(["--connections", &HEALTHY.to_string(), "--rate", "2000"])
        .args(["--source-ips", "127.0.0.2-127.0.0.3", "--duration", "70"])
        .args(["--expect-messages", &MESSAGES.to_string()])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wsload hold");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "wsload never finished its ramp");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stalled: Vec<TcpStream> = (0..STALLED).map(|_| stalled_subscriber(&gateway)).collect();
    let total = HEALTHY + STALLED as u64;
    gateway.wait_metric("ringcast_subscriptions", 20, |n| n == total as f64);
    gateway.wait_metric("ringcast_channels", 20, |n| n == 1.0);
    let rss_start = gateway.rss_bytes();

    let mut publisher = Command::new(binary("wsload"))
        .args(["publish", "--admin", &format!("http://{}", gateway.admin)])
        .args(["--channel", "feed", "--count", &MESSAGES.to_string()])
        .args(["--rate", &RATE.to_string(), "--size", &SIZE.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("wsload publish");
    let mut rss_max = rss_start;
    let publish_deadline = Instant::now() + Duration::from_secs(MESSAGES / RATE + 30);
    while publisher.try_wait().expect("publisher").is_none() {
        assert!(
            Instant::now() < publish_deadline,
            "publishing took too long"
        );
        rss_max = rss_max.max(gateway.rss_bytes());
        std::thread::sleep(Duration::from_millis(250));
    }

    let out = healthy.wait_with_output().expect("wsload report");
    let line = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(line.lines().last().expect("report")).expect("json");
    assert_eq!(report["conns_complete"], HEALTHY, "{report}");
    assert_eq!(report["seq_gaps"], 0, "{report}");
    assert_eq!(report["closed_by_server"], 0, "{report}");
    let closes = "ringcast_slow_consumer_closes_total";
    let closed = gateway.wait_metric(closes, 10, |n| n >= STALLED as f64);
    assert_eq!(closed, STALLED as f64, "{}", gateway.metrics());
    // Every stalled reader may hold at most its queue bound; allow the same again for
    // allocator slack and the healthy readers' transient queues.
    let bound = 2 * STALLED as u64 * MAX_QUEUE + 64 * 1024 * 1024;
    let grew = rss_max.saturating_sub(rss_start);
    assert!(grew < bound, "RSS grew {grew} bytes (bound {bound})");
    drop(stalled);
    let _ = std::fs::remove_file(&ready);
}
