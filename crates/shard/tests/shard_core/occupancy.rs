//! Channel occupancy: every shard reports its subscriber count changes to the channel's
//! owner, which writes the node-wide count into its snapshot; the snapshot's changes
//! are net over the reader's period.

use crate::node::Node;
use ringcast_proto::OpCode;
use ringcast_shard::{CountChange, OccupancySnapshot, owner_of};

fn node(snapshots: &[OccupancySnapshot]) -> Node {
    let snapshots = snapshots.to_vec();
    Node::new(snapshots.len() as u16, move |cfg| {
        cfg.occupancy = snapshots[usize::from(cfg.id)].clone();
    })
}

fn count(snapshots: &[OccupancySnapshot], channel: &str) -> u64 {
    snapshots[owner_of(channel, snapshots.len())].count(channel)
}

fn changes(snapshots: &[OccupancySnapshot]) -> Vec<CountChange> {
    let mut all: Vec<CountChange> = snapshots.iter().flat_map(|s| s.take_changes()).collect();
    all.sort_by(|a, b| a.channel.cmp(&b.channel));
    all
}

#[test]
fn the_owner_counts_subscribers_of_every_shard() {
    let snapshots: Vec<OccupancySnapshot> = (0..3).map(|_| OccupancySnapshot::default()).collect();
    let mut node = node(&snapshots);
    let mut news = Vec::new();
    for shard in [0, 1, 2, 2, 1] {
        news.push((shard, node.connect(shard, "/news")));
    }
    let both = node.connect(0, "/?channels=news,sport");
    assert_eq!(count(&snapshots, "news"), 0, "reported about every 50 ms");
    node.advance(60);
    assert_eq!(count(&snapshots, "news"), 6);
    assert_eq!(count(&snapshots, "sport"), 1);
    let listed = snapshots[owner_of("news", 3)].list("ne", 10);
    assert_eq!(listed, vec![("news".into(), 6)]);
    assert_eq!(
        changes(&snapshots),
        vec![
            CountChange {
                channel: "news".into(),
                before: 0,
                after: 6
            },
            CountChange {
                channel: "sport".into(),
                before: 0,
                after: 1
            },
        ]
    );

    for &(shard, id) in &news[..3] {
        node.send_frame(shard, id, OpCode::Close, &1000u16.to_be_bytes());
    }
    node.send_frame(0, both, OpCode::Close, &1000u16.to_be_bytes());
    node.advance(60);
    assert_eq!(count(&snapshots, "news"), 2);
    assert_eq!(count(&snapshots, "sport"), 0);
    assert_eq!(
        changes(&snapshots),
        vec![
            CountChange {
                channel: "news".into(),
                before: 6,
                after: 2
            },
            CountChange {
                channel: "sport".into(),
                before: 1,
                after: 0
            },
        ]
    );
}

#[test]
fn a_subscriber_that_comes_and_goes_between_reports_is_never_seen() {
    let snapshots: Vec<OccupancySnapshot> = (0..2).map(|_| OccupancySnapshot::default()).collect();
    let mut node = node(&snapshots);
    node.advance(60);
    let id = node.connect(1, "/flap");
    node.send_frame(1, id, OpCode::Close, &1000u16.to_be_bytes());
    node.advance(60);
    assert_eq!(count(&snapshots, "flap"), 0);
    assert!(changes(&snapshots).is_empty());
}

#[test]
fn the_owner_reports_a_channels_last_position() {
    use ringcast_shard::{Position, PositionReport, ShardMsg};
    use std::sync::{Arc, Mutex};
    let mut node = Node::new(2, |cfg| cfg.history.size = 10);
    let _ws = node.connect(1, "/news");
    node.publish("news", "one");
    node.publish("news", "two");
    let answers: Arc<Mutex<Vec<Option<Position>>>> = Arc::default();
    for channel in ["news", "nothing"] {
        let answers = answers.clone();
        let report = PositionReport::new(move |p| answers.lock().unwrap().push(p));
        let owner = owner_of(channel, 2);
        let msg = ShardMsg::Position {
            channel: channel.into(),
            report,
        };
        node.shards[owner].on_message(msg, node.now);
    }
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].map(|p| p.offset), Some(2));
    assert_eq!(answers[1], None);
}
