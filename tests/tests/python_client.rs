//! An independent client: Python `websockets` subscribes through the gateway and
//! receives text and binary publishes in order.
//!
//! The interpreter is `$RINGCAST_PYTHON`, else `.venv/bin/python` at the workspace root
//! (both set up by `.ci/run`), else `python3`; it must have `websockets` installed.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::programs::python;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn python_websockets_client_receives_publishes() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import websockets"])
        .status()
        .expect("running python");
    assert!(
        probe.success(),
        "{} has no `websockets`: run .ci/run (it creates .venv with it)",
        py.display()
    );
    let gateway = Gateway::start(1, &[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/subscriber.py");
    let mut child = Command::new(&py)
        .arg(&script)
        .arg(gateway.ws_url("/py-news"))
        .arg("3")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the Python client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    gateway.wait_metric("ringcast_subscriptions", 10, |n| n >= 1.0);
    // The owner shard learns of the subscriber through a mailbox; wait until it has.
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
    assert_eq!(gateway.publish("py-news", b"first"), 202);
    assert_eq!(gateway.publish("py-news", &[0xff, 0x00, 0x01]), 202);
    assert_eq!(gateway.publish("py-news", "drei ✓".as_bytes()), 202);
    let got: Vec<serde_json::Value> = lines
        .by_ref()
        .take(3)
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect();
    let status = child.wait().expect("python exit");
    assert!(status.success(), "python client failed: {status}");
    assert_eq!(
        got,
        vec![
            serde_json::json!({"type": "text", "data": "first"}),
            serde_json::json!({"type": "binary", "data": "ff0001"}),
            serde_json::json!({"type": "text", "data": "drei ✓"}),
        ]
    );
}
