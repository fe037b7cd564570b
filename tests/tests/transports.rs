//! The non-WebSocket transports and multi-channel clients against the real gateway:
//! curl reads an SSE stream and long-polls, a tungstenite client subscribes to several
//! channels (URL and commands), and every shard pushes the tick channel.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ws_client::{connect, next_message, sync_subscriber};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tungstenite::Message;

fn curl(args: &[&str]) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed by .ci/run")
}

#[test]
fn curl_reads_an_event_stream() {
    let gateway = Gateway::start(1, &["--ping-interval", "1", "--history-size", "10"]);
    let url = format!("http://{}/sse/feed", gateway.ws_addr());
    let mut child = curl(&["-N", &url]);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
    assert_eq!(gateway.publish("feed", b"first\nsecond"), 202);
    assert_eq!(gateway.publish("feed", b"third"), 202);
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let last = line == "data: third";
        if line.starts_with("id:") || line.starts_with("data:") {
            events.push(line);
        }
        if last {
            break;
        }
    }
    let epoch = events[0]
        .strip_prefix("id: ")
        .and_then(|id| id.split(':').next())
        .expect("an id")
        .to_owned();
    assert_eq!(
        events,
        [
            format!("id: {epoch}:1"),
            "data: first".into(),
            "data: second".into(),
            format!("id: {epoch}:2"),
            "data: third".into()
        ]
    );
    // Keep-alive comments arrive at the ping interval.
    let comment = lines
        .by_ref()
        .map(|l| l.expect("line"))
        .find(|l| l.starts_with(':'));
    assert_eq!(comment.as_deref(), Some(": keep-alive"));
    let text = gateway.metrics();
    let sse = ringcast_tests::metrics::sum_where(
        &text,
        "ringcast_connections",
        Some(("transport", "sse")),
    );
    assert_eq!(sse, 1.0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn curl_long_polls_and_resumes_from_the_last_offset() {
    let gateway = Gateway::start(1, &["--poll-timeout", "2"]);
    let base = format!("http://{}/poll/feed", gateway.ws_addr());
    let held = curl(&[&base]);
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 1.0);
    assert_eq!(gateway.publish("feed", b"one"), 202);
    let out = held.wait_with_output().expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let epoch = body["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(
        body,
        serde_json::json!({"epoch": epoch, "last_offset": 1, "recovered": true,
            "messages": [{"offset": 1, "data": "one"}]})
    );
    // Nobody polls now; these are kept by the channel's owner.
    assert_eq!(gateway.publish("feed", b"two"), 202);
    assert_eq!(gateway.publish("feed", b"three"), 202);
    // A publish is accepted before its owner appends it to the history.
    gateway.wait_metric("ringcast_history_messages", 10, |n| n >= 3.0);
    let out = curl(&[&format!("{base}?since={epoch}:1")])
        .wait_with_output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["last_offset"], 3, "{body}");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2), "{body}");
    let out = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}?since={epoch}:3"),
    ])
    .wait_with_output()
    .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("204"), "timeout answers 204: {text}");
    assert!(
        text.contains(&format!("X-Ringcast-Position: {epoch}:3")),
        "{text}"
    );
}

#[test]
fn one_client_many_channels_and_commands() {
    let gateway = Gateway::start(1, &["--client-commands", "--max-channels-per-conn", "3"]);
    let mut ws = connect(gateway.ws_addr(), "/?channels=a,b");
    sync_subscriber(&gateway, "a", &mut ws);
    sync_subscriber(&gateway, "b", &mut ws);
    ws.send(Message::Text(r#"{"subscribe":"c"}"#.into()))
        .expect("send");
    let ack = next_message(&mut ws, Duration::from_secs(5)).expect("ack");
    assert_eq!(
        ack,
        Some(Message::Text(r#"{"channel":"c","ok":"subscribe"}"#.into()))
    );
    ws.send(Message::Text(r#"{"subscribe":"d"}"#.into()))
        .expect("send");
    let err = next_message(&mut ws, Duration::from_secs(5)).expect("error reply");
    assert!(
        matches!(&err, Some(Message::Text(t)) if t.contains("limit")),
        "{err:?}"
    );
    ws.send(Message::Text("{\"jump\":1}".into())).expect("send");
    let err = next_message(&mut ws, Duration::from_secs(5)).expect("error reply");
    assert!(
        matches!(&err, Some(Message::Text(t)) if t.contains("error")),
        "{err:?}"
    );
    sync_subscriber(&gateway, "c", &mut ws);
    for ch in ["a", "b", "c"] {
        assert_eq!(gateway.publish(ch, ch.as_bytes()), 202);
    }
    // Order is promised per channel, not across channels: a, b and c have different
    // owner shards, whose deliveries may overtake each other (under load they do).
    let mut got: Vec<String> = (0..3)
        .map(
            |_| match next_message(&mut ws, Duration::from_secs(5)).expect("message") {
                Some(Message::Text(text)) => text.to_string(),
                other => panic!("expected a channel message, got {other:?}"),
            },
        )
        .collect();
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
}

#[test]
fn the_tick_channel_pushes_the_time_every_second() {
    let gateway = Gateway::start(1, &["--tick-channel", "time"]);
    let mut ws = connect(gateway.ws_addr(), "/time");
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        match next_message(&mut ws, Duration::from_secs(5)).expect("tick") {
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                assert!(
                    v["time"]
                        .as_str()
                        .is_some_and(|s| s.ends_with('Z') && s.len() == 24)
                );
                seqs.push(v["seq"].as_u64().expect("seq"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs[1], seqs[0] + 1);
}

#[test]
fn batch_publish_answers_per_item_and_keeps_order() {
    let gateway = Gateway::start(1, &[]);
    let mut ws = connect(gateway.ws_addr(), "/?channels=x,y");
    sync_subscriber(&gateway, "x", &mut ws);
    sync_subscriber(&gateway, "y", &mut ws);
    let batch = br#"[{"channel":"x","data":"1"},{"channel":"bad chan","data":"2"},{"channel":"y","base64":"/wA="},{"channel":"x","data":"3"}]"#;
    let answer = ringcast_tests::http::post(gateway.admin, "/publish", batch).expect("batch");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(body["published"], 3, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    assert_eq!(
        body["results"][1]["error"], "invalid channel name",
        "{body}"
    );
    let got: Vec<_> = (0..3)
        .map(|_| next_message(&mut ws, Duration::from_secs(5)).expect("message"))
        .collect();
    // Order holds per channel (x and y may be owned by different shards).
    let texts: Vec<_> = got
        .iter()
        .filter(|m| matches!(m, Some(Message::Text(_))))
        .collect();
    assert_eq!(
        texts,
        [
            Some(Message::Text("1".into())),
            Some(Message::Text("3".into()))
        ]
        .iter()
        .collect::<Vec<_>>()
    );
    assert!(got.contains(&Some(Message::Binary(vec![0xff, 0].into()))));
    let ndjson = b"{\"channel\":\"x\",\"data\":\"4\"}\n{\"channel\":\"x\",\"data\":\"5\"}\n";
    let answer = ringcast_tests::http::post(gateway.admin, "/publish", ndjson).expect("batch");
    assert_eq!(answer.status, 200, "{}", answer.body);
    for want in ["4", "5"] {
        let got = next_message(&mut ws, Duration::from_secs(5)).expect("message");
        assert_eq!(got, Some(Message::Text(want.into())));
    }
    let answer = ringcast_tests::http::post(gateway.admin, "/publish", b"nonsense").expect("post");
    assert_eq!(answer.status, 400);
}
