//! The in-process broker: one node, no network. A publish goes straight to the owner
//! shard through the sink; the owner itself drops messages for channels nobody on the
//! node subscribes to, so subscription changes need no bookkeeping here. A disconnect
//! has no other node to reach (the default [`Broker::disconnect_cluster`]).

use crate::{Broker, BrokerError, DeliverySink};
use bytes::Bytes;

/// Delivers every publish on this node only.
pub struct LocalBroker<S> {
    sink: S,
}

impl<S: DeliverySink> LocalBroker<S> {
    /// A broker that hands every publish to `sink`.
    pub fn new(sink: S) -> Self {
        LocalBroker { sink }
    }
}

impl<S: DeliverySink> Broker for LocalBroker<S> {
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
        self.sink.deliver(channel, payload, binary, None)
    }

    fn subscribe(&self, _channel: &str) {}

    fn unsubscribe(&self, _channel: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Bytes, bool)>>);

    impl DeliverySink for &'static Recorder {
        fn deliver(
            &self,
            channel: &str,
            payload: Bytes,
            binary: bool,
            _position: Option<crate::Position>,
        ) -> Result<(), BrokerError> {
            self.0.lock().map_err(|_| BrokerError::Closed)?.push((
                channel.to_owned(),
                payload,
                binary,
            ));
            Ok(())
        }

        fn disconnect(&self, _target: crate::DisconnectTarget) {}
    }

    #[test]
    fn publishes_reach_the_sink_in_order() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let broker = LocalBroker::new(recorder);
        broker.subscribe("news");
        broker
            .publish("news", Bytes::from_static(b"1"), false)
            .unwrap();
        broker
            .publish("news", Bytes::from_static(b"\xff"), true)
            .unwrap();
        let got = recorder.0.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                ("news".to_owned(), Bytes::from_static(b"1"), false),
                ("news".to_owned(), Bytes::from_static(b"\xff"), true),
            ]
        );
    }

    #[test]
    fn a_disconnect_has_no_other_node_to_reach() {
        let recorder: &'static Recorder = Box::leak(Box::default());
        let broker = LocalBroker::new(recorder);
        let target = crate::DisconnectTarget::Sub("alice".into());
        let answered = broker.disconnect_cluster(&target);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(answered), Ok(()));
    }
}
