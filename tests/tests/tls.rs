//! TLS on the listen ports with clients nobody here wrote: certificates made by the
//! `openssl` CLI (a root CA, an intermediate, ECDSA P-256 and RSA 2048 leaves), Python
//! `websockets` over `wss://` trusting the root, curl for SSE and a long poll over
//! `https://`, curl speaking plain HTTP to the TLS port, and `openssl s_client` to see
//! which certificate a new connection gets across reloads (SIGHUP, a changed file, a
//! broken file). With `--admin-tls` the admin port speaks https:// only, curl trusting
//! the same root; without it the admin port stays plain.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::{sum, sum_where};
use ringcast_tests::pki::{EC, Pki, RSA, served_serial};
use ringcast_tests::ports::free_port;
use ringcast_tests::programs::python;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(pki: &Pki) -> Gateway {
    let args = pki.tls_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Gateway::start(1, &args)
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A Python `websockets` subscriber over wss:// that prints what it receives.
struct PySubscriber {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl PySubscriber {
    fn start(url: &str, ca: &Path, count: usize) -> PySubscriber {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/subscriber.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg(url)
            .arg(count.to_string())
            .env("RINGCAST_CA", ca)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Python client");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        assert_eq!(
            lines.next().and_then(Result::ok).as_deref(),
            Some("ready"),
            "the wss:// handshake succeeded"
        );
        PySubscriber { child, lines }
    }

    fn next_text(&mut self) -> String {
        let line = self.lines.next().expect("a message").expect("line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        value["data"].as_str().expect("text").to_owned()
    }
}

impl Drop for PySubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_subscribed(gateway: &Gateway, subscriptions: f64) {
    gateway.wait_metric("ringcast_subscriptions", 10, |n| n >= subscriptions);
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
}

#[test]
fn python_over_wss_and_curl_over_https_with_an_ecdsa_chain() {
    let pki = Pki::new("ecdsa");
    pki.leaf("ec", EC);
    pki.serve("ec");
    let gateway = start(&pki);
    let port = gateway.first_port;
    let mut py = PySubscriber::start(
        &format!("wss://127.0.0.1:{port}/news"),
        &pki.path("root.pem"),
        2,
    );
    wait_subscribed(&gateway, 1.0);
    assert_eq!(gateway.publish("news", b"over tls"), 202);
    assert_eq!(py.next_text(), "over tls");
    // SSE over https with curl, trusting the same root.
    let ca = pki.path("root.pem").display().to_string();
    let sse_url = format!("https://127.0.0.1:{port}/sse/news");
    let sse =
        std::thread::spawn(move || curl(&["-N", "--max-time", "3", "--cacert", &ca, &sse_url]));
    wait_subscribed(&gateway, 2.0);
    assert_eq!(gateway.publish("news", b"to both"), 202);
    assert_eq!(py.next_text(), "to both");
    let (_, events) = sse.join().expect("curl thread");
    assert!(events.contains("data: to both"), "{events}");
    // Plain HTTP to the TLS port: told so, in clear.
    let (_, answer) = curl(&[&format!("http://127.0.0.1:{port}/news")]);
    assert!(answer.contains("This port speaks TLS"), "{answer}");
    // Counters reach /metrics about once a second.
    let plain = || {
        sum_where(
            &gateway.metrics(),
            "ringcast_handshake_failures_total",
            Some(("reason", "tls_plain_http")),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain() < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(plain(), 1.0);
    let text = gateway.metrics();
    assert!(sum(&text, "ringcast_tls_handshakes_total") >= 2.0, "{text}");
    assert!(py.child.wait().expect("python").success());
}

#[test]
fn an_rsa_certificate_serves_a_long_poll_to_curl() {
    let pki = Pki::new("rsa");
    pki.leaf("rsa", RSA);
    pki.serve("rsa");
    let gateway = start(&pki);
    let port = gateway.first_port;
    let ca = pki.path("root.pem").display().to_string();
    let url = format!("https://127.0.0.1:{port}/poll/updates");
    let poll = std::thread::spawn(move || curl(&["--cacert", &ca, &url]));
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
    assert_eq!(gateway.publish("updates", b"polled over tls"), 202);
    let (ok, body) = poll.join().expect("curl thread");
    assert!(ok && body.contains("polled over tls"), "{body}");
}

#[test]
fn a_reload_serves_new_connections_the_new_certificate_and_keeps_the_old_ones() {
    let pki = Pki::new("reload");
    let first = pki.leaf("first", EC);
    let second = pki.leaf("second", EC);
    let third = pki.leaf("third", RSA);
    pki.serve("first");
    let gateway = start(&pki);
    let port = gateway.first_port;
    assert_eq!(served_serial(port), first);
    let mut py = PySubscriber::start(
        &format!("wss://127.0.0.1:{port}/news"),
        &pki.path("root.pem"),
        3,
    );
    wait_subscribed(&gateway, 1.0);
    // SIGHUP: new connections get the second certificate; the open one stays.
    pki.serve("second");
    gateway.signal(libc::SIGHUP);
    gateway.wait_metric("ringcast_tls_reloads_total", 10, |n| n >= 1.0);
    assert_eq!(served_serial(port), second);
    assert_eq!(gateway.publish("news", b"after reload"), 202);
    assert_eq!(py.next_text(), "after reload");
    // A broken file: logged, counted, the second certificate stays.
    std::fs::write(
        pki.path("served.pem"),
        b"-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .expect("write");
    gateway.signal(libc::SIGHUP);
    gateway.wait_metric("ringcast_tls_reload_errors_total", 10, |n| n >= 1.0);
    assert_eq!(served_serial(port), second);
    // A changed file is noticed without a signal (checked every 5 s).
    pki.serve("third");
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_serial(port) != third {
        assert!(
            Instant::now() < deadline,
            "the changed files were not loaded"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(gateway.publish("news", b"still up"), 202);
    assert_eq!(py.next_text(), "still up");
    assert_eq!(gateway.publish("news", b"last"), 202);
    assert_eq!(py.next_text(), "last");
    assert!(py.child.wait().expect("python").success());
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_at_startup() {
    let pki = Pki::new("mismatch");
    pki.leaf("a", EC);
    pki.leaf("b", EC);
    std::fs::copy(pki.path("a.chain.pem"), pki.path("served.pem")).expect("copy");
    std::fs::copy(pki.path("b.key"), pki.path("served.key")).expect("copy");
    let out = Command::new(ringcast_tests::programs::binary("ringcast"))
        .args(pki.tls_args())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("running ringcast");
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("does not belong to the certificate"), "{log}");
}

#[test]
fn wsload_pushes_over_wss_with_full_and_resumed_handshakes() {
    let pki = Pki::new("wsload");
    pki.leaf("ec", EC);
    pki.serve("ec");
    let gateway = start(&pki);
    let url = gateway.ws_url("/ch-{ch}").replacen("ws://", "wss://", 1);
    let admin = format!("http://{}", gateway.admin);
    let ca = pki.path("root.pem").display().to_string();
    let out = Command::new(ringcast_tests::programs::binary("wsload"))
        .args(["push", "--url", &url, "--tls-ca", &ca, "--channels", "4"])
        .args([
            "--connections",
            "200",
            "--admin",
            &admin,
            "--publish-rate",
            "100",
        ])
        .args(["--duration", "2"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("running wsload");
    assert!(out.status.success(), "wsload push over wss failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["push"]["lost"], 0, "{report}");
    assert!(report["messages"].as_u64() > Some(0), "{report}");
    // Churn reopens connections with the tickets the gateway sent: resumed handshakes.
    let url = gateway.ws_url("/churn").replacen("ws://", "wss://", 1);
    let out = Command::new(ringcast_tests::programs::binary("wsload"))
        .args([
            "churn",
            "--url",
            &url,
            "--tls-insecure",
            "--connections",
            "50",
        ])
        .args(["--interval", "0.5", "--churn", "50%", "--duration", "2"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("running wsload");
    assert!(out.status.success(), "wsload churn over wss failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert!(report["churn"]["reconnects"].as_u64() > Some(0), "{report}");
}

/// curl over https:// to the admin port trusting `ca`: the HTTP status (0 when curl
/// failed) and the body.
fn admin_https(admin: std::net::SocketAddr, ca: &Path, args: &[&str], path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{admin}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// `ringcast_admin_refused_total{reason="tls_handshake"}` read over https://.
fn tls_handshake_refusals(admin: std::net::SocketAddr, ca: &Path) -> f64 {
    let (status, text) = admin_https(admin, ca, &[], "/metrics");
    assert_eq!(status, 200, "{text}");
    sum_where(
        &text,
        "ringcast_admin_refused_total",
        Some(("reason", "tls_handshake")),
    )
}

#[test]
fn admin_tls_serves_health_publish_and_metrics_over_https_and_refuses_plain_http() {
    let pki = Pki::new("admin-tls");
    let first = pki.leaf("first", EC);
    let second = pki.leaf("second", EC);
    pki.serve("first");
    let ca = pki.path("root.pem");
    let mut args = pki.tls_args();
    args.push("--admin-tls".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = Gateway::start_when(1, &args, &|admin| {
        admin_https(admin, &ca, &[], "/healthz").0 == 200
    });
    let admin = gateway.admin;
    assert_eq!(served_serial(admin.port()), first);
    assert_eq!(tls_handshake_refusals(admin, &ca), 0.0, "exported at 0");
    // A publish over https:// reaches a wss:// subscriber.
    let mut py = PySubscriber::start(
        &format!("wss://127.0.0.1:{}/news", gateway.first_port),
        &ca,
        1,
    );
    let subscribed = || {
        let (_, text) = admin_https(admin, &ca, &[], "/metrics");
        sum(&text, "ringcast_subscriptions") >= 1.0 && sum(&text, "ringcast_channels") >= 1.0
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !subscribed() {
        assert!(Instant::now() < deadline, "the subscriber never showed up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let publish = ["-X", "POST", "--data-binary", "over admin tls"];
    let (status, body) = admin_https(admin, &ca, &publish, "/publish/news");
    assert_eq!(status, 202, "{body}");
    assert_eq!(py.next_text(), "over admin tls");
    assert!(py.child.wait().expect("python").success());
    // Plain HTTP to the admin port gets no answer; the failed handshake is counted.
    let (ok, answer) = curl(&[&format!("http://{admin}/healthz")]);
    assert!(!ok && answer.is_empty(), "plain HTTP answered: {answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls_handshake_refusals(admin, &ca) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the failed handshake was not counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A reload serves the admin port's next connection the new certificate too.
    pki.serve("second");
    gateway.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = admin_https(admin, &ca, &[], "/metrics");
        if sum(&text, "ringcast_tls_reloads_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no reload");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(served_serial(admin.port()), second);
    assert_eq!(admin_https(admin, &ca, &[], "/healthz").0, 200);
}

#[test]
fn without_admin_tls_the_admin_port_stays_plain_http() {
    let pki = Pki::new("admin-plain");
    let serial = pki.leaf("ec", EC);
    pki.serve("ec");
    // Started and checked healthy over plain http://.
    let gateway = start(&pki);
    assert_eq!(served_serial(gateway.first_port), serial);
    let (status, _) = admin_https(gateway.admin, &pki.path("root.pem"), &[], "/healthz");
    assert_eq!(status, 0, "the admin port spoke TLS without --admin-tls");
    assert_eq!(gateway.publish("news", b"plain admin"), 202);
    let text = gateway.metrics();
    assert!(text.contains("ringcast_admin_refused_total{reason=\"tls_handshake\"} 0"));
}
