//! Installing the global recorder: once only, with help text registered.

use ringcast_telemetry::{install_recorder, names};

#[test]
fn install_once_then_error() {
    let handle = install_recorder().unwrap();
    assert!(install_recorder().is_err());

    metrics::counter!(names::BROKER_RECONNECTS).increment(1);
    metrics::histogram!(names::BROKER_LATENCY_SECONDS).record(0.003);
    handle.run_upkeep();
    let text = handle.render();
    assert!(
        text.contains("# HELP ringcast_broker_reconnects_total Broker reconnects."),
        "{text}"
    );
    assert!(
        text.contains("ringcast_broker_reconnects_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"ringcast_broker_latency_seconds_bucket{le="0.005"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ringcast_broker_latency_seconds_bucket{le="0.0025"} 0"#),
        "{text}"
    );
}
