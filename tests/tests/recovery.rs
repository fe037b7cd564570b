//! Recovery against the real gateway, single node: a WebSocket subscriber that leaves
//! after message 50 of 100 and comes back with `since` gets 51..100 exactly once, in
//! order, then the live stream; the same from SSE with `Last-Event-ID` (curl) and from
//! a long poll (curl); a position older than the kept history, and one from a node
//! that restarted (a new process: no Redis, so a new epoch), are told `recovered:false`
//! with the position to go on from.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ws_client::{Client, connect, next_message, wait_labelled};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use tungstenite::Message;

/// The next JSON object from a JSON-framed connection.
fn next_object(ws: &mut Client) -> Option<Value> {
    match next_message(ws, Duration::from_secs(5)).expect("read") {
        Some(Message::Text(text)) => Some(serde_json::from_str(text.as_str()).expect("JSON")),
        Some(other) => panic!("unexpected {other:?}"),
        None => None,
    }
}

fn publish_range(gateway: &Gateway, channel: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        assert_eq!(gateway.publish(channel, format!("m{i}").as_bytes()), 202);
    }
}

/// Publishes `range` and waits until `witness`, a live subscriber of `channel`, has
/// received its last message. A publish is accepted (202) before the owning shard appends
/// it to the channel's history; the owner appends before it fans out, so once the witness
/// has the last one, a new subscription's position includes the whole range.
fn publish_and_witness(
    gateway: &Gateway,
    witness: &mut Client,
    channel: &str,
    range: std::ops::RangeInclusive<u32>,
) {
    let last = u64::from(*range.end());
    publish_range(gateway, channel, range);
    while let Some(m) = next_object(witness) {
        if m["offset"].as_u64() == Some(last) {
            return;
        }
    }
    panic!("the witness did not receive offset {last}");
}

/// Subscribes with the JSON framing and returns the client and its `subscribed` object.
fn subscribe(gateway: &Gateway, path: &str) -> (Client, Value) {
    let mut ws = connect(gateway.ws_addr(), path);
    let subscribed = next_object(&mut ws).expect("a subscribed object");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    (ws, subscribed)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3"])
        .args(args)
        .stdout(Stdio::piped())
        .output()
        .expect("curl is installed by .ci/run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_transport_resumes_from_message_50_of_100_exactly_once() {
    let gateway = Gateway::start(1, &["--history-size", "1000", "--poll-timeout", "2"]);
    let (mut ws, subscribed) = subscribe(&gateway, "/news?format=json");
    let (mut witness, _) = subscribe(&gateway, "/news?format=json");
    let epoch = subscribed["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(subscribed["offset"], 0);
    publish_range(&gateway, "news", 1..=50);
    for i in 1..=50u64 {
        let m = next_object(&mut ws).expect("a message");
        assert_eq!(
            (m["offset"].as_u64(), m["data"].as_str()),
            (Some(i), Some(format!("m{i}").as_str()))
        );
        assert_eq!(m["epoch"], epoch.as_str());
    }
    ws.close(None).expect("close");
    drop(ws);
    publish_and_witness(&gateway, &mut witness, "news", 51..=100);

    // WebSocket: the missed 50, once each and in order, then the live stream.
    let (mut back, subscribed) =
        subscribe(&gateway, &format!("/news?format=json&since={epoch}:50"));
    assert_eq!(subscribed["recovered"], true);
    assert_eq!(subscribed["offset"], 100);
    for i in 51..=100u64 {
        let m = next_object(&mut back).expect("a recovered message");
        assert_eq!(m["offset"].as_u64(), Some(i), "{m}");
    }
    publish_range(&gateway, "news", 101..=101);
    let live = next_object(&mut back).expect("the live message");
    assert_eq!(
        (live["offset"].as_u64(), live["data"].as_str()),
        (Some(101), Some("m101"))
    );
    assert!(
        next_message(&mut back, Duration::from_millis(300))
            .expect("read")
            .is_none(),
        "no duplicate"
    );

    // SSE with the header an EventSource sends when it reconnects.
    let sse = format!("http://{}/sse/news", gateway.ws_addr());
    let stream = curl(&["-N", "-H", &format!("Last-Event-ID: {epoch}:50"), &sse]);
    let ids: Vec<&str> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    let want: Vec<String> = (51..=101).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(ids, want, "{stream}");

    // Long poll from the same position.
    let poll = format!("http://{}/poll/news?since={epoch}:50", gateway.ws_addr());
    let body: Value = serde_json::from_str(&curl(&[&poll])).expect("JSON answer");
    assert_eq!(
        (body["recovered"].as_bool(), body["last_offset"].as_u64()),
        (Some(true), Some(101))
    );
    let offsets: Vec<u64> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["offset"].as_u64())
        .collect();
    assert_eq!(offsets, (51..=101).collect::<Vec<_>>());

    // Counted once each (the shards flush their counters about once a second).
    for transport in ["websocket", "sse", "poll"] {
        let label = ("transport", transport);
        wait_labelled(&gateway, "ringcast_recoveries_total", label, 10, |n| {
            n == 1.0
        });
    }
    gateway.wait_metric("ringcast_history_messages", 10, |n| n >= 101.0);
}

#[test]
fn a_position_no_longer_kept_or_from_a_restarted_node_is_not_recovered() {
    let gateway = Gateway::start(1, &["--history-size", "10"]);
    let (mut witness, subscribed) = subscribe(&gateway, "/news?format=json");
    let epoch = subscribed["epoch"].as_str().expect("epoch").to_owned();
    publish_and_witness(&gateway, &mut witness, "news", 1..=100);
    let (mut old, subscribed) = subscribe(&gateway, &format!("/news?format=json&since={epoch}:50"));
    assert_eq!(
        subscribed,
        serde_json::json!({"type":"subscribed","channel":"news","epoch":epoch,"offset":100,"recovered":false})
    );
    assert!(
        next_message(&mut old, Duration::from_millis(300))
            .expect("read")
            .is_none()
    );
    let partial = ("result", "partial");
    wait_labelled(&gateway, "ringcast_recoveries_total", partial, 10, |n| {
        n == 1.0
    });
    // The same node started again (a new process, no Redis): a new epoch.
    drop(gateway);
    let restarted = Gateway::start(1, &["--history-size", "10"]);
    let (mut witness, _) = subscribe(&restarted, "/news?format=json");
    publish_and_witness(&restarted, &mut witness, "news", 1..=3);
    let (_, subscribed) = subscribe(&restarted, &format!("/news?format=json&since={epoch}:100"));
    assert_eq!(subscribed["recovered"], false);
    assert_ne!(subscribed["epoch"], epoch.as_str());
    assert_eq!(subscribed["offset"], 3);
}
