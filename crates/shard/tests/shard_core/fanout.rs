//! Subscriptions and fan-out: delivery across shards through owners, interest at the
//! owner, several channels per connection, client commands, and the tick channel.

use crate::node::{Node, texts};
use ringcast_proto::{OpCode, client_request, close_payload, generate_key};
use ringcast_shard::ShardMsg;

#[test]
fn fan_out_across_shards_exactly_once_in_order() {
    let mut node = Node::new(3, |_| {});
    let mut subs = Vec::new();
    for i in 0..30 {
        let shard = i % 3;
        let channel = if i % 2 == 0 { "news" } else { "sport" };
        subs.push((shard, node.connect(shard, &format!("/{channel}")), channel));
    }
    for seq in 0..20 {
        node.publish("news", &format!("n{seq}"));
        node.publish("sport", &format!("s{seq}"));
    }
    node.publish("nobody", "dropped");
    for (shard, id, channel) in subs {
        let got: Vec<Vec<u8>> = node
            .messages(shard, id)
            .into_iter()
            .map(|(op, p)| {
                assert_eq!(op, OpCode::Text);
                p
            })
            .collect();
        let prefix = &channel[..1];
        let want: Vec<Vec<u8>> = (0..20)
            .map(|s| format!("{prefix}{s}").into_bytes())
            .collect();
        assert_eq!(got, want, "shard {shard} channel {channel}");
    }
    let delivered: u64 = node.shards.iter().map(|s| s.counters().delivered).sum();
    assert_eq!(delivered, 30 * 20);
    let dropped: u64 = node
        .shards
        .iter()
        .map(|s| s.counters().publish_dropped)
        .sum();
    assert_eq!(dropped, 1);
}

#[test]
fn interest_follows_first_and_last_subscriber() {
    let mut node = Node::new(2, |_| {});
    let owner = ringcast_shard::owner_of("news", 2);
    let other = 1 - owner;
    let a = node.connect(other, "/news");
    let b = node.connect(other, "/news");
    let cmds: Vec<_> = node.shards[owner].take_broker_cmds().collect();
    assert_eq!(cmds.len(), 1, "one subscribe for the node: {cmds:?}");
    for id in [a, b] {
        node.send_frame(other, id, OpCode::Close, &close_payload(1000, ""));
    }
    let cmds: Vec<_> = node.shards[owner].take_broker_cmds().collect();
    assert_eq!(cmds.len(), 1, "one unsubscribe once both left: {cmds:?}");
    node.publish("news", "late");
    assert_eq!(node.shards[owner].counters().publish_dropped, 1);
}

#[test]
fn one_connection_several_channels_from_the_url() {
    let mut node = Node::new(1, |c| c.max_channels_per_conn = 3);
    let id = node.connect(0, "/?channels=a,b,a,c");
    node.publish("a", "1");
    node.publish("b", "2");
    node.publish("c", "3");
    node.publish("d", "4");
    assert_eq!(texts(&mut node, id), vec!["1", "2", "3"]);
    let too_many = node.accept(0);
    let request = client_request("x", "/?channels=a,b,c,d", &generate_key(1));
    node.send_bytes(0, too_many, &request);
    assert!(node.take_wire(0, too_many).starts_with(b"HTTP/1.1 400"));
    let none = node.accept(0);
    node.send_bytes(0, none, &client_request("x", "/", &generate_key(2)));
    assert!(node.take_wire(0, none).starts_with(b"HTTP/1.1 404"));
    // Closing it leaves no subscription behind in any of its channels.
    node.send_frame(0, id, OpCode::Close, &close_payload(1000, ""));
    node.shards[0].refresh_gauges();
    assert_eq!(node.shards[0].counters().subscriptions, 0);
    assert_eq!(node.shards[0].counters().channels, 0);
}

#[test]
fn client_commands_subscribe_unsubscribe_and_explain_errors() {
    let mut node = Node::new(1, |c| {
        c.client_commands = true;
        c.max_channels_per_conn = 2;
    });
    let id = node.connect(0, "/");
    for cmd in [
        r#"{"subscribe":"news"}"#,
        r#"{"subscribe":"news"}"#,
        r#"{"subscribe":"bad chan"}"#,
        r#"{"subscribe":"sport"}"#,
        r#"{"subscribe":"third"}"#,
        r#"{"unsubscribe":"sport"}"#,
        r#"{"unsubscribe":"sport"}"#,
        r#"{"dance":"news"}"#,
        "not json",
    ] {
        node.send_frame(0, id, OpCode::Text, cmd.as_bytes());
    }
    let replies = texts(&mut node, id);
    assert_eq!(replies[0], r#"{"channel":"news","ok":"subscribe"}"#);
    assert!(replies[1].contains("already subscribed"), "{}", replies[1]);
    assert!(replies[2].contains("invalid channel"), "{}", replies[2]);
    assert_eq!(replies[3], r#"{"channel":"sport","ok":"subscribe"}"#);
    assert!(replies[4].contains("limit"), "{}", replies[4]);
    assert_eq!(replies[5], r#"{"channel":"sport","ok":"unsubscribe"}"#);
    assert!(replies[6].contains("not subscribed"), "{}", replies[6]);
    assert!(replies[7].contains("unknown command"), "{}", replies[7]);
    assert!(replies[8].contains("error"), "{}", replies[8]);
    assert_eq!(replies.len(), 9);
    node.publish("news", "hello");
    node.publish("sport", "gone");
    assert_eq!(texts(&mut node, id), vec!["hello"]);
}

#[test]
fn every_shard_ticks_its_own_subscribers_once_a_second() {
    let mut node = Node::new(2, |c| {
        c.tick_channel = Some("time".into());
        c.unix_ms_at_zero = 1_700_000_000_000;
    });
    let a = node.connect(0, "/time");
    let b = node.connect(1, "/time");
    node.advance(3_000);
    for (shard, id) in [(0, a), (1, b)] {
        let ticks: Vec<String> = node
            .messages(shard, id)
            .into_iter()
            .filter(|(op, _)| *op == OpCode::Text)
            .map(|(_, p)| String::from_utf8(p).unwrap())
            .collect();
        assert!((3..=4).contains(&ticks.len()), "{ticks:?}");
        assert!(
            ticks[0].starts_with(r#"{"time":"2023-11-14T22:13:2"#),
            "{}",
            ticks[0]
        );
    }
    // No cross-shard traffic: nothing was published or delivered through owners.
    assert_eq!(
        node.shards
            .iter()
            .map(|s| s.counters().publish_dropped)
            .sum::<u64>(),
        0
    );
}

#[test]
fn answers_to_requests_leave_before_deliveries_that_wait_their_turn() {
    let mut node = Node::new(1, |_| {});
    let early = node.connect(0, "/news");
    let later = node.connect(0, "/news");
    let shard = &mut node.shards[0];
    shard.on_message(
        ShardMsg::Publish {
            channel: "news".into(),
            payload: b"queued".to_vec().into(),
            binary: false,
            position: None,
        },
        0,
    );
    let newcomer = shard.on_accept(9_999, None, 0);
    let mut request = client_request("localhost", "/news", &generate_key(7));
    shard.on_recv(newcomer, &mut request, 0);
    assert_eq!(shard.sends_waiting(), 3);
    // The newcomer's 101 is an answer: the glue starts every answer each turn,
    // whatever its cap on the other sends.
    assert_eq!(shard.next_answer().map(|(id, _)| id), Some(newcomer));
    assert_eq!(shard.next_answer(), None);
    // The deliveries, oldest waiting first.
    assert_eq!(shard.next_send().map(|(id, _)| id), Some(early));
    assert_eq!(shard.next_send().map(|(id, _)| id), Some(later));
    assert_eq!(shard.next_send(), None);
}

#[test]
fn an_answer_that_subscribing_adds_frames_to_is_still_an_answer() {
    // One shard owns every channel, so a JSON subscription's `subscribed` object (and a
    // resume's history) is queued during the upgrade, after the 101.
    for request in [
        client_request("localhost", "/news?format=json", &generate_key(5)),
        b"GET /sse/news HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
    ] {
        let mut node = Node::new(1, |_| {});
        let shard = &mut node.shards[0];
        let id = shard.on_accept(9_999, None, 0);
        let mut request = request;
        shard.on_recv(id, &mut request, 0);
        assert_eq!(shard.next_answer().map(|(conn, _)| conn), Some(id));
        assert_eq!(shard.sends_waiting(), 0);
    }
}
