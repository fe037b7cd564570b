//! A real browser against the real gateway: headless Chromium (the Debian `chromium`
//! package) loads `tests/browser/page.html` from a tiny static HTTP server, subscribes
//! to one channel with the WebSocket API (permessage-deflate negotiated, `--compression`
//! on) and with EventSource (SSE), and both receive every published message in order.
//! The test drives the page over the Chrome DevTools Protocol (tungstenite client,
//! `Runtime.evaluate` reading `window.results`).

use ringcast_tests::gateway::Gateway;
use ringcast_tests::pki::{EC, Pki};
use ringcast_tests::ports::free_port;
use ringcast_tests::redis_server::RedisServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

const CHANNEL: &str = "news";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Largest HTTP head read (requests to the page server, answers from DevTools).
const MAX_HEAD: usize = 16 * 1024;
/// Metric counting fan-out messages compressed (once each, however many receive them).
const COMPRESSED_METRIC: &str = "ringcast_messages_compressed_total";

/// Polls `probe` every 100 ms until it returns `Some`, or panics naming `what` after
/// `secs`.
fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Serves `tests/browser/page.html`, `recovery.html`, `tokens.html` and
/// `clients/js/ringcast.js` (and
/// 404 for anything else) on a loopback port from
/// a std `TcpListener` thread; stopped and joined when dropped.
struct StaticServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    fn start() -> StaticServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind page server");
        let addr = listener.local_addr().expect("page server address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve_one(stream);
                }
            }
        });
        StaticServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads an HTTP head from `stream`: the head as text and the bytes read after it.
/// `None` on EOF, error or a head larger than [`MAX_HEAD`].
fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = raw.split_off(end + 4);
            return Some((String::from_utf8_lossy(&raw).into_owned(), rest));
        }
        if raw.len() >= MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Answers one HTTP/1.1 request and closes the connection.
fn serve_one(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Some((head, _)) = read_head(&mut stream) else {
        return;
    };
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let file = |relative: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    let html = "text/html; charset=utf-8";
    let (status, content_type, body) = match (head.starts_with("GET "), path) {
        (true, "/page.html") => ("200 OK", html, file("browser/page.html")),
        (true, "/recovery.html") => ("200 OK", html, file("browser/recovery.html")),
        (true, "/tokens.html") => ("200 OK", html, file("browser/tokens.html")),
        (true, "/ringcast.js") => (
            "200 OK",
            "text/javascript",
            file("../clients/js/ringcast.js"),
        ),
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.write_all(&body);
}

/// `GET path` from Chromium's DevTools HTTP endpoint, parsed as JSON. Its server keeps
/// connections alive, so the body is read by Content-Length, not to EOF.
fn devtools_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let (head, mut body) = read_head(&mut stream)?;
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("content-length") {
            return None;
        }
        value.trim().parse().ok()
    })?;
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    serde_json::from_slice(&body[..length]).ok()
}

/// Headless Chromium in its own process group with a fresh profile, driven over the
/// DevTools protocol. Dropping it stops the browser (SIGTERM, then SIGKILL to its
/// group) and removes the profile; when the test is failing it first prints the page's
/// last results and the tail of Chromium's stderr.
struct Browser {
    child: Child,
    profile: PathBuf,
    stderr_log: PathBuf,
    debug_port: u16,
    devtools: Option<WebSocket<TcpStream>>,
    next_id: u64,
    last_results: String,
}

impl Browser {
    fn launch(url: &str) -> Browser {
        Browser::launch_with(url, &[])
    }

    /// Like [`Browser::launch`], with extra Chromium flags.
    fn launch_with(url: &str, extra: &[&str]) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} missing: install the Debian `chromium` package (.ci/apt-packages)"
        );
        let debug_port = free_port();
        let profile = std::env::temp_dir().join(format!(
            "ringcast-chromium-{}-{debug_port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("create the profile dir");
        let stderr_log = profile.join("chromium.stderr");
        let stderr = std::fs::File::create(&stderr_log).expect("create chromium.stderr");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .args(extra)
            .arg(format!(
                "--user-data-dir={}",
                profile.join("data").display()
            ))
            .arg(format!("--remote-debugging-port={debug_port}"))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("starting chromium");
        Browser {
            child,
            profile,
            stderr_log,
            debug_port,
            devtools: None,
            next_id: 0,
            last_results: String::from("(never read)"),
        }
    }

    /// Connects to the DevTools socket of the page whose URL contains `page`.
    fn attach(&mut self, page: &str) {
        let debug = SocketAddr::from(([127, 0, 0, 1], self.debug_port));
        let url = wait_for(20, "the page's DevTools target", || {
            let targets = devtools_json(debug, "/json")?;
            targets.as_array()?.iter().find_map(|target| {
                let is_page = target["type"] == "page"
                    && target["url"].as_str().is_some_and(|u| u.contains(page));
                if !is_page {
                    return None;
                }
                target["webSocketDebuggerUrl"].as_str().map(str::to_owned)
            })
        });
        let stream = TcpStream::connect_timeout(&debug, Duration::from_secs(5))
            .expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        let (socket, _) =
            tungstenite::client::client(url.as_str(), stream).expect("DevTools handshake");
        self.devtools = Some(socket);
    }

    /// Evaluates `expression` in the page and returns its value (by value).
    fn evaluate(&mut self, expression: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let socket = self.devtools.as_mut().expect("attach() first");
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true},
        });
        socket
            .send(Message::text(call.to_string()))
            .expect("send to DevTools");
        loop {
            let text = match socket.read().expect("read from DevTools") {
                Message::Text(text) => text,
                _ => continue,
            };
            let answer: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if answer["id"] != id {
                continue;
            }
            let result = &answer["result"];
            assert!(
                result.get("exceptionDetails").is_none() && answer.get("error").is_none(),
                "evaluating {expression}: {answer}"
            );
            return result["result"]["value"].clone();
        }
    }

    /// The page's `window.results` (null before the page script ran).
    fn results(&mut self) -> Value {
        let text = self.evaluate("JSON.stringify(window.results ?? null)");
        let text = text.as_str().unwrap_or("null").to_owned();
        let results = serde_json::from_str(&text).expect("results JSON");
        self.last_results = text;
        results
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("page results: {}", self.last_results);
            eprintln!("chromium stderr (tail):\n{}", self.stderr_tail());
        }
        self.devtools = None;
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of the browser this test started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: the group was created for the browser (process_group(0)), so its id is
        // the browser's pid; this ends the browser and any helper it left behind.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Strings in `results[transport].messages` (the SSE entries' `data`).
fn received(results: &Value, transport: &str) -> Vec<String> {
    results[transport]["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.as_str().or_else(|| m["data"].as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON object of exactly `bytes` bytes, compressible like real app payloads.
fn json_message(bytes: usize) -> String {
    let head = r#"{"type":"quote","symbol":"RING","items":""#;
    let tail = r#""}"#;
    let mut pad = String::new();
    let mut i = 0u32;
    while pad.len() < bytes - head.len() - tail.len() {
        pad.push_str(&format!("price={}.{:02};", 100 + i % 37, i % 100));
        i += 1;
    }
    pad.truncate(bytes - head.len() - tail.len());
    format!("{head}{pad}{tail}")
}

#[test]
fn chromium_receives_publishes_over_websocket_with_deflate_and_over_event_source() {
    let gateway = Gateway::start(1, &["--compression", "--history-size", "100"]);
    websocket_and_event_source(&gateway, false);
}

/// The same page over `wss://` and `https://` (a gateway with an openssl-made
/// certificate; the test profile ignores certificate errors, so no CA is installed).
#[test]
fn chromium_receives_publishes_over_wss_and_https_event_source() {
    let pki = Pki::new("browser");
    pki.leaf("ec", EC);
    pki.serve("ec");
    let mut args = pki.tls_args();
    args.extend(["--compression", "--history-size", "100"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = Gateway::start(1, &args);
    websocket_and_event_source(&gateway, true);
    let handshakes = gateway.wait_metric("ringcast_tls_handshakes_total", 10, |n| n >= 2.0);
    assert!(handshakes >= 2.0);
}

fn websocket_and_event_source(gateway: &Gateway, tls: bool) {
    let server = StaticServer::start();
    let url = format!(
        "http://{}/page.html?gw={}&channel={CHANNEL}&tls={}",
        server.addr,
        gateway.first_port,
        u8::from(tls)
    );
    let flags: &[&str] = if tls {
        &["--ignore-certificate-errors"]
    } else {
        &[]
    };
    let mut browser = Browser::launch_with(&url, flags);
    browser.attach("/page.html");

    wait_for(20, "the WebSocket and the EventSource to open", || {
        let results = browser.results();
        (results["ws"]["state"] == "open" && results["sse"]["state"] == "open").then_some(())
    });
    gateway.wait_metric("ringcast_subscriptions", 10, |n| n == 2.0);
    // Both subscriptions are live end to end once each client has received a marker;
    // the owner shard learns of each subscribing shard through a mailbox.
    let mut k = 0;
    wait_for(10, "a sync marker on both transports", || {
        k += 1;
        assert_eq!(
            gateway.publish(CHANNEL, format!("sync-{k}").as_bytes()),
            202
        );
        std::thread::sleep(Duration::from_millis(200));
        let results = browser.results();
        let live = !received(&results, "ws").is_empty() && !received(&results, "sse").is_empty();
        live.then_some(())
    });

    let big = json_message(2048);
    let short = "short text ✓";
    assert_eq!(gateway.publish(CHANNEL, big.as_bytes()), 202);
    assert_eq!(gateway.publish(CHANNEL, short.as_bytes()), 202);
    let results = wait_for(10, "both messages on both transports", || {
        let results = browser.results();
        let done = ["ws", "sse"]
            .iter()
            .all(|t| received(&results, t).last().map(String::as_str) == Some(short));
        done.then_some(results)
    });

    for transport in ["ws", "sse"] {
        let got: Vec<String> = received(&results, transport)
            .into_iter()
            .filter(|m| !m.starts_with("sync-"))
            .collect();
        assert_eq!(got, [big.as_str(), short], "{transport} messages in order");
    }
    let ids: Vec<u64> = results["sse"]["messages"]
        .as_array()
        .expect("sse messages")
        .iter()
        .map(|m| {
            // `<epoch>:<offset>`, the position EventSource sends back as Last-Event-ID.
            m["id"]
                .as_str()
                .and_then(|id| id.split_once(':'))
                .and_then(|(_, offset)| offset.parse().ok())
                .expect("id")
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] + 1 == w[1]), "SSE ids {ids:?}");
    assert_eq!(results["ws"]["events"], json!([]), "WebSocket errors");

    let extensions = results["ws"]["extensions"].as_str().unwrap_or("");
    assert!(
        extensions.contains("permessage-deflate"),
        "negotiated extensions: {extensions:?}"
    );
    assert!(
        extensions.contains("server_no_context_takeover"),
        "negotiated extensions: {extensions:?}"
    );
    // Compressed once for the WebSocket client; the markers and the short text are under
    // --compression-min-bytes. Shards flush their counters periodically.
    let compressed = gateway.wait_metric(COMPRESSED_METRIC, 10, |n| n >= 1.0);
    assert_eq!(compressed, 1.0, "only the 2 KiB message is compressed");
}

/// The JavaScript client (`clients/js/ringcast.js`) in Chromium across a node drain:
/// Redis, two gateways and a third that publishes 1,000 messages at a steady rate;
/// the gateway the page is connected to is drained with SIGTERM midway; the client
/// resumes on the other one and has every message once, in order; over WebSocket and
/// over its SSE fallback.
fn js_client_across_a_drain(transport: &str) {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = |extra: &[&str]| {
        let mut args = vec!["--redis", url.as_str(), "--history-size", "2000"];
        args.extend_from_slice(extra);
        let gateway = Gateway::start(1, &args);
        gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
        gateway
    };
    let publisher = node(&[]);
    let mut a = node(&["--drain-seconds", "1"]);
    let b = node(&[]);
    let server = StaticServer::start();
    let page = format!(
        "http://{}/recovery.html?channel={CHANNEL}&transport={transport}&urls=ws://127.0.0.1:{},ws://127.0.0.1:{}",
        server.addr, a.first_port, b.first_port
    );
    let mut browser = Browser::launch(&page);
    browser.attach("/recovery.html");
    // Subscribed at Redis, so the first publish reaches the page.
    a.wait_metric("ringcast_broker_subscriptions", 20, |n| n == 1.0);
    for i in 1..=1000u32 {
        let answer = ringcast_tests::http::post(
            publisher.admin,
            &format!("/publish/{CHANNEL}"),
            format!("m{i}").as_bytes(),
        )
        .expect("publish");
        assert_eq!(answer.status, 202);
        if i == 300 {
            a.signal(libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(a.wait_exit(10).is_some(), "the drained node exited");
    let deadline = Instant::now() + Duration::from_secs(30);
    let results = loop {
        let results = browser.results();
        if results["positions"].as_array().map_or(0, Vec::len) >= 1000 {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "not all 1,000 messages in the page: {results}\n{}",
            browser.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let positions: Vec<&str> = results["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let epoch = positions[0].split(':').next().expect("epoch");
    let want: Vec<String> = (1..=1000).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(positions, want, "every message once, in order");
    // A WebSocket resume says it was complete; an SSE one speaks only when it was not.
    let complete = if transport == "sse" {
        json!([])
    } else {
        json!([true])
    };
    assert_eq!(results["recovered"], complete, "one resume, complete");
    let status = results["status"].to_string();
    assert!(status.contains("reconnecting"), "{status}");
    drop(b);
}

#[test]
fn the_js_client_resumes_across_a_node_drain_with_every_message_once() {
    js_client_across_a_drain("websocket");
}

#[test]
fn the_js_client_over_sse_resumes_across_a_node_drain_too() {
    js_client_across_a_drain("sse");
}

/// The JavaScript client with tokens in Chromium: it connects with the first token (a
/// subprotocol), refreshes it before it expires over the open WebSocket, so the
/// connection outlives the first token, and stops for good when the admin API
/// disconnects its user (4003), instead of reconnecting.
#[test]
fn the_js_client_refreshes_its_token_and_stays_away_after_a_disconnect() {
    const SECRET: &str = "a JWT secret of at least thirty-two bytes";
    let gateway = Gateway::start(1, &["--jwt-secret", SECRET]);
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
    };
    let start = unix_now().as_secs();
    let mint = |exp: u64| {
        let claims = json!({"sub": "alice", "channels": [CHANNEL], "exp": exp});
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("jwt")
    };
    let (first, second) = (mint(start + 4), mint(start + 120));
    let server = StaticServer::start();
    let page = format!(
        "http://{}/tokens.html?channel={CHANNEL}&margin=2500&url=ws://127.0.0.1:{}&tokens={first},{second}",
        server.addr, gateway.first_port
    );
    let mut browser = Browser::launch(&page);
    browser.attach("/tokens.html");
    wait_for(20, "the refresh", || {
        let status = browser.results()["status"].to_string();
        status.contains("refreshed").then_some(())
    });
    // Past the first token's exp: still the first connection, still receiving.
    std::thread::sleep(Duration::from_secs(start + 5).saturating_sub(unix_now()));
    let post = |path: &str, body: &str| {
        ringcast_tests::http::post(gateway.admin, path, body.as_bytes())
            .expect("admin request")
            .status
    };
    assert_eq!(
        post(&format!("/publish/{CHANNEL}"), "after the first exp"),
        202
    );
    let results = wait_for(10, "the message after the first exp", || {
        let results = browser.results();
        (results["messages"] == json!(["after the first exp"])).then_some(results)
    });
    let opened = results["status"].as_array().expect("status").iter();
    assert_eq!(
        opened.filter(|s| *s == "open").count(),
        1,
        "one connection all along: {results}"
    );
    // Disconnected by the admin API: the client stops instead of reconnecting.
    assert_eq!(post("/disconnect", r#"{"sub":"alice"}"#), 200);
    wait_for(10, "the disconnect", || {
        let status = browser.results()["status"].clone();
        (status.as_array()?.last()? == "disconnected").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let results = browser.results();
    assert_eq!(
        results["status"].as_array().expect("status").last(),
        Some(&json!("disconnected")),
        "no reconnect after the disconnect: {results}"
    );
    assert_eq!(results["tokens"], 2, "one token to connect, one to refresh");
}
