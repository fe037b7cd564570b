//! An independent client with permessage-deflate: Python `websockets` offers it
//! (`compression="deflate"`) to a gateway started with `--compression`; the answer
//! carries server_no_context_takeover, published messages of 4 KiB arrive compressed
//! (RSV1) and small ones plain, all in order, and a 10 KiB text sent compressed to
//! `/echo` comes back intact.
//!
//! The interpreter is `$RINGCAST_PYTHON`, else `.venv/bin/python` at the workspace root
//! (both set up by `.ci/run`), else `python3`; it must have `websockets` installed.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::programs::python;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHANNEL: &str = "py-deflate";
const ECHO_BYTES: usize = 10 * 1024;

/// A text payload of exactly `bytes` bytes that compresses well.
fn json_text(bytes: usize, tag: &str) -> String {
    let head = format!(r#"{{"tag":"{tag}","rows":""#);
    let tail = r#""}"#;
    let mut rows = String::new();
    let mut i = 0u32;
    while rows.len() < bytes - head.len() - tail.len() {
        rows.push_str(&format!("row{i}:{};", i * 7 % 1000));
        i += 1;
    }
    rows.truncate(bytes - head.len() - tail.len());
    format!("{head}{rows}{tail}")
}

/// Lowercase hex of `bytes`, as the script prints binary messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the script's JSON lines on a thread, so every read is bounded in time.
fn json_lines(lines: Lines<BufReader<ChildStdout>>) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let value = serde_json::from_str(&line).unwrap_or(json!({"unparsed": line}));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    rx
}

/// The script process, killed by pid if the test fails before it exits.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_websockets_negotiates_deflate_and_receives_compressed_fan_out() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import websockets.asyncio.client"])
        .status()
        .expect("running python");
    assert!(
        probe.success(),
        "{} has no `websockets` >= 13: run .ci/run (it creates .venv with it)",
        py.display()
    );
    let gateway = Gateway::start(1, &["--compression"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/compressed_client.py");
    // (payload, is text, expected compressed: >= --compression-min-bytes, default 256)
    let published: Vec<(Vec<u8>, bool, bool)> = vec![
        (b"small-1".to_vec(), true, false),
        (json_text(4096, "a").into_bytes(), true, true),
        ("small-2 ✓".as_bytes().to_vec(), true, false),
        // Lone UTF-8 continuation bytes: not text, so the gateway sends a binary frame.
        (
            (0..4096u32).map(|i| 0x80 | (i % 64) as u8).collect(),
            false,
            true,
        ),
        (json_text(4096, "b").into_bytes(), true, true),
    ];
    let mut child = Command::new(&py)
        .arg(&script)
        .arg(format!("ws://{}", gateway.ws_addr()))
        .arg(CHANNEL)
        .arg(published.len().to_string())
        .arg(ECHO_BYTES.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the Python client");
    let stdout = child.stdout.take().expect("stdout");
    let mut script = Script(child);
    let lines = json_lines(BufReader::new(stdout).lines());
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from the Python client")
    };

    let ready = next();
    assert_eq!(ready["event"], "ready", "{ready}");
    let extensions = ready["extensions"].as_str().unwrap_or("");
    assert!(
        extensions.contains("permessage-deflate"),
        "negotiated extensions: {ready}"
    );
    assert!(
        extensions.contains("server_no_context_takeover"),
        "negotiated extensions: {ready}"
    );

    gateway.wait_metric("ringcast_subscriptions", 10, |n| n >= 1.0);
    // The owner shard learns of the subscriber through a mailbox; wait until it has.
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
    for (payload, _, _) in &published {
        assert_eq!(gateway.publish(CHANNEL, payload), 202);
    }
    for (index, (payload, is_text, compressed)) in published.iter().enumerate() {
        let got = next();
        let want_data = if *is_text {
            json!(String::from_utf8(payload.clone()).expect("utf-8"))
        } else {
            json!(hex(payload))
        };
        assert_eq!(got["event"], "message", "message {index}: {got}");
        assert_eq!(got["type"], if *is_text { "text" } else { "binary" });
        assert_eq!(got["data"], want_data, "message {index} content");
        assert_eq!(
            got["compressed"],
            json!(compressed),
            "message {index} ({} bytes) compressed",
            payload.len()
        );
    }

    let echo = next();
    assert_eq!(echo["event"], "echo", "{echo}");
    assert!(
        echo["extensions"]
            .as_str()
            .is_some_and(|e| e.contains("permessage-deflate")),
        "/echo negotiated extensions: {echo}"
    );
    assert_eq!(echo["length"], json!(ECHO_BYTES), "{echo}");
    assert_eq!(echo["same"], json!(true), "{echo}");
    let status = script.0.wait().expect("python exit");
    assert!(status.success(), "python client failed: {status}");
}
