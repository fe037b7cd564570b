//! A shard never dies silently: when one panics, the process exits non-zero so its
//! supervisor restarts it, instead of serving on with a dead shard.

use ringcast_tests::gateway::Gateway;

#[test]
fn a_panicking_shard_stops_the_process_with_a_failure_code() {
    let mut gateway = Gateway::start(1, &["--panic-on-channel", "boom"]);
    assert_eq!(gateway.publish("calm", b"x"), 202);
    assert!(
        gateway.wait_exit(1).is_none(),
        "a normal publish changes nothing"
    );
    assert_eq!(gateway.publish("boom", b"x"), 202);
    let status = gateway
        .wait_exit(10)
        .expect("process exits after a shard panic");
    assert_eq!(status.code(), Some(70), "{status}");
}
