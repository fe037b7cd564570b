//! What the gateway refuses to start with, and what its log looks like: short auth
//! secrets, origins without a scheme, `--max-connections 0`, absurd token TTLs, ports
//! another process already serves (listen and admin), Redis passwords in the log, ANSI
//! colours in a log that is not a terminal, and `--log-format json`.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ports::free_port;
use ringcast_tests::programs::binary;
use ringcast_tests::waits::wait_child_exit;
use ringcast_tests::ws_client::read_head;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A secret long enough to be accepted (32 bytes).
const GOOD_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A `ringcast` process whose stderr goes to a file, stopped by pid when dropped.
struct Logged {
    child: Child,
    log: PathBuf,
    /// The WebSocket address it was told to listen on.
    listen: SocketAddr,
    /// The admin address it was told to use.
    admin: SocketAddr,
}

impl Logged {
    /// Starts `ringcast` with `args` (plus `--listen`/`--admin` on free ports unless
    /// given) and the environment `env`.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Logged {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Logged::start_on(listen, admin, args, env)
    }

    fn start_on(
        listen: SocketAddr,
        admin: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Logged {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log =
            std::env::temp_dir().join(format!("ringcast-startup-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(binary("ringcast"));
        if args.first() != Some(&"token") {
            command
                .args(["--listen", &listen.to_string()])
                .args(["--admin", &admin.to_string()])
                .args(["--shards", "1", "--no-pin"]);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .env_remove("RINGCAST_AUTH_SECRET")
            .env_remove("RINGCAST_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let child = command.spawn().expect("starting ringcast");
        Logged {
            child,
            log,
            listen,
            admin,
        }
    }

    /// Its stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits at most `secs` for the process to exit.
    fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        wait_child_exit(&mut self.child, secs)
    }

    /// Waits at most `secs` for `text` to appear in the log; returns the log.
    fn wait_log(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(Instant::now() < deadline, "no `{text}` in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts the process exits with a failure within a few seconds; returns its log.
    fn expect_refusal(mut self) -> String {
        let status = self.wait_exit(15);
        let log = self.log();
        let status = status.unwrap_or_else(|| panic!("still running; log:\n{log}"));
        assert!(!status.success(), "exited with success; log:\n{log}");
        assert!(
            !log.contains("panicked"),
            "a panic is not an answer:\n{log}"
        );
        log
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The status of a WebSocket upgrade to `/news` with `Origin: origin`.
fn upgrade_status_with_origin(addr: SocketAddr, origin: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    read_head(&mut stream).expect("response").status
}

#[test]
fn short_or_empty_auth_secrets_are_refused_at_startup() {
    let short = "s3cret-but-31-bytes-long-......";
    assert_eq!(short.len(), 31);
    for (args, env) in [
        (vec!["--auth-secret", short], vec![]),
        (vec!["--auth-secret", ""], vec![]),
        (vec![], vec![("RINGCAST_AUTH_SECRET", short)]),
        (vec![], vec![("RINGCAST_AUTH_SECRET", "")]),
        (
            vec!["token", "--auth-secret", short, "--channel", "news"],
            vec![],
        ),
        (
            vec!["token", "--channel", "news"],
            vec![("RINGCAST_AUTH_SECRET", "")],
        ),
    ] {
        let log = Logged::start(&args, &env).expect_refusal();
        assert!(
            log.contains("at least 32 bytes"),
            "{args:?} {env:?}:\n{log}"
        );
        assert!(!log.contains(short), "the secret is never echoed:\n{log}");
    }
    let mut ok = Logged::start(&["--auth-secret", GOOD_SECRET], &[]);
    ok.wait_log("ringcast is serving", 20);
    assert!(ok.wait_exit(0).is_none());
}

#[test]
fn origins_without_a_scheme_are_refused_at_startup() {
    for origin in [
        "app.example.com",
        "*.example.com",
        "*",
        "https://app.example.com/",
    ] {
        let log = Logged::start(&["--allowed-origins", origin], &[]).expect_refusal();
        assert!(log.contains(origin), "names `{origin}`:\n{log}");
    }
}

#[test]
fn an_origin_wildcard_matches_within_one_dns_label() {
    let gateway = Logged::start(
        &[
            "--allowed-origins",
            "https://*.example.com,https://app.example.com*",
        ],
        &[],
    );
    gateway.wait_log("ringcast is serving", 20);
    let addr = gateway.listen;
    assert_eq!(
        upgrade_status_with_origin(addr, "https://a.example.com"),
        101
    );
    assert_eq!(
        upgrade_status_with_origin(addr, "https://app.example.comx"),
        101
    );
    for evil in [
        "https://a.b.example.com",
        "https://app.example.com.evil.net",
        "https://app.example.com:8443",
        "https://evil.net/.example.com",
    ] {
        assert_eq!(upgrade_status_with_origin(addr, evil), 403, "{evil}");
    }
}

#[test]
fn max_connections_zero_is_refused_at_startup() {
    let log = Logged::start(&["--max-connections", "0"], &[]).expect_refusal();
    assert!(log.contains("--max-connections"), "{log}");
}

#[test]
fn huge_token_ttls_are_refused() {
    for ttl in [
        "213503982334602d",
        "213503982334601d",
        "18446744073709551615",
        "1000000d",
        "0",
    ] {
        let args = [
            "token",
            "--auth-secret",
            GOOD_SECRET,
            "--channel",
            "news",
            "--ttl",
            ttl,
        ];
        let log = Logged::start(&args, &[]).expect_refusal();
        assert!(log.contains("--ttl"), "{ttl}:\n{log}");
    }
    let mut ok = Logged::start(
        &["token", "--auth-secret", GOOD_SECRET, "--channel", "news"],
        &[],
    );
    assert!(
        ok.wait_exit(10).is_some_and(|s| s.success()),
        "{}",
        ok.log()
    );
}

#[test]
fn the_redis_password_never_reaches_the_log() {
    let password = "hunter2-do-not-log";
    let closed = free_port();
    let unreachable = format!("redis://ringcast:{password}@127.0.0.1:{closed}/0");
    let gateway = Logged::start(&["--redis", &unreachable], &[]);
    let log = gateway.wait_log("cannot connect to Redis", 20);
    assert!(log.contains("redis://ringcast:***@127.0.0.1"), "{log}");
    assert!(!log.contains(password), "{log}");
    drop(gateway);
    for bad in [
        format!("redis://ringcast:{password}@127.0.0.1:notaport/0"),
        format!("rediss://ringcast:{password}@127.0.0.1:{closed}/0#insecure"),
        format!("redis://{password}@127.0.0.1:{closed}/x"),
    ] {
        let log = Logged::start(&["--redis", &bad], &[]).expect_refusal();
        assert!(log.contains("invalid Redis URL"), "{log}");
        assert!(log.contains("***@127.0.0.1"), "{log}");
        assert!(!log.contains(password), "{log}");
    }
}

#[test]
fn a_second_gateway_on_a_served_listen_port_exits_naming_the_address() {
    let first = Gateway::start(1, &[]);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let second = Logged::start_on(first.ws_addr(), admin, &[], &[]);
    let log = second.expect_refusal();
    assert!(log.contains(&first.ws_addr().to_string()), "{log}");
    assert_eq!(first.publish("news", b"still serving"), 202);
}

#[test]
fn a_second_gateway_on_a_served_admin_port_exits_naming_the_address() {
    let first = Gateway::start(1, &[]);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let second = Logged::start_on(listen, first.admin, &[], &[]);
    let log = second.expect_refusal();
    assert!(log.contains(&first.admin.to_string()), "{log}");
    assert_eq!(first.publish("news", b"still serving"), 202);
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let gateway = Logged::start(&[], &[]);
    let log = gateway.wait_log("ringcast is serving", 20);
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains("INFO"), "plain text stays the default: {log}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("RINGCAST_LOG_FORMAT", "json")]),
    ] {
        let gateway = Logged::start(&args, &env);
        let log = gateway.wait_log("ringcast is serving", 20);
        let mut serving = 0;
        for line in log.lines() {
            let object: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert!(object["level"].is_string(), "{line}");
            if object["fields"]["message"] == "ringcast is serving" {
                serving += 1;
                assert_eq!(object["fields"]["admin"], gateway.admin.to_string());
            }
        }
        assert_eq!(serving, 1, "{log}");
    }
    let log =
        Logged::start(&["--log-format", "json", "--auth-secret", "short"], &[]).expect_refusal();
    let line = log.lines().last().unwrap_or_default();
    let object: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    assert_eq!(object["level"], "ERROR", "{line}");
}
