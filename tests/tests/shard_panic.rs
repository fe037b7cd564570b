//! A shard never dies silently: when one panics, the process exits non-zero so its
//! supervisor restarts it, instead of serving on with a dead shard; also when it panics
//! while the node drains.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ws_client::raw_upgrade;
use std::time::Duration;

/// Publishes to the `--panic-on-channel boom` failpoint; the process must exit 70.
fn publish_to_the_failpoint_and_expect_exit_70(gateway: &mut Gateway) {
    assert_eq!(gateway.publish("boom", b"x"), 202);
    let status = gateway
        .wait_exit(10)
        .expect("process exits after a shard panic");
    assert_eq!(status.code(), Some(70), "{status}");
}

#[test]
fn a_panicking_shard_stops_the_process_with_a_failure_code() {
    let mut gateway = Gateway::start(1, &["--panic-on-channel", "boom"]);
    assert_eq!(gateway.publish("calm", b"x"), 202);
    assert!(
        gateway.wait_exit(1).is_none(),
        "a normal publish changes nothing"
    );
    publish_to_the_failpoint_and_expect_exit_70(&mut gateway);
}

#[test]
fn a_shard_panic_in_the_drain_grace_exits_70() {
    let mut gateway = Gateway::start(
        1,
        &[
            "--panic-on-channel",
            "boom",
            "--drain-grace",
            "1",
            "--drain-seconds",
            "2",
        ],
    );
    gateway.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    publish_to_the_failpoint_and_expect_exit_70(&mut gateway);
}

#[test]
fn a_shard_panic_while_connections_drain_exits_70() {
    let mut gateway = Gateway::start(1, &["--panic-on-channel", "boom", "--drain-seconds", "4"]);
    // Clients that never answer the close keep both shards draining for a while.
    let clients: Vec<_> = (0..16)
        .map(|_| raw_upgrade(gateway.ws_addr(), "/news"))
        .collect();
    gateway.wait_metric("ringcast_connections", 5, |n| n >= 16.0);
    gateway.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    publish_to_the_failpoint_and_expect_exit_70(&mut gateway);
    drop(clients);
}
