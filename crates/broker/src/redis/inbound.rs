//! Turns one push from Redis into a delivery for this node, a control request (see
//! `control`), or a counted refusal: the shape of the push (`message`, `pmessage`,
//! `smessage`), the prefix, the channel name, the envelope or request and the size limit
//! are all checked here, so nothing from Redis reaches the shards unchecked.

use super::control::{self, Control};
use super::envelope::{self, Opened};
use super::events::RejectReason;
use bytes::Bytes;
use redis::{PushKind, Value};

/// The checks a received message must pass.
#[derive(Debug, Clone)]
pub(crate) struct InboundRules {
    /// Redis channel prefix (`ringcast:`).
    pub(crate) prefix: String,
    /// Largest payload delivered to clients.
    pub(crate) max_message_bytes: usize,
    /// Whether a channel name (after the prefix) is valid.
    pub(crate) valid_channel: fn(&str) -> bool,
    /// The control channel (`<prefix>#control`).
    pub(crate) control: String,
}

impl InboundRules {
    /// The checks for `prefix`.
    pub(crate) fn new(
        prefix: &str,
        max_message_bytes: usize,
        valid_channel: fn(&str) -> bool,
    ) -> Self {
        InboundRules {
            prefix: prefix.to_owned(),
            max_message_bytes,
            valid_channel,
            control: control::control_channel(prefix),
        }
    }
}

/// What to do with one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Deliver `message` to local subscribers of `channel`.
    Deliver {
        /// Channel name without the prefix.
        channel: String,
        /// Payload, type and publish time.
        message: Opened,
    },
    /// A request on the control channel.
    Control(Control),
    /// Count and skip.
    Reject(RejectReason),
    /// Not a message (subscription confirmations and other pushes).
    Ignore,
}

impl InboundRules {
    /// Classifies a push of `kind` carrying `data`.
    pub(crate) fn classify(&self, kind: &PushKind, data: Vec<Value>) -> Inbound {
        let mut parts = data.into_iter();
        let (channel, payload) = match kind {
            PushKind::Message | PushKind::SMessage => (parts.next(), parts.next()),
            PushKind::PMessage => (parts.nth(1), parts.next()),
            _ => return Inbound::Ignore,
        };
        if parts.next().is_some() {
            return Inbound::Reject(RejectReason::Malformed);
        }
        // The size filter on the socket (`resp_limit`) replaced an over-limit payload by
        // a null while it streamed in; Redis itself never sends a null payload.
        if let (Some(Value::BulkString(_)), Some(Value::Nil)) = (&channel, &payload) {
            return Inbound::Reject(RejectReason::TooLarge);
        }
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (channel, payload)
        else {
            return Inbound::Reject(RejectReason::Malformed);
        };
        if channel == self.control.as_bytes() {
            return match control::parse(&payload, self.valid_channel) {
                Ok(request) => Inbound::Control(request),
                Err(_) => Inbound::Reject(RejectReason::Envelope),
            };
        }
        let Some(channel) = self.channel_name(&channel) else {
            return Inbound::Reject(RejectReason::Channel);
        };
        // The envelope adds a fixed header; compare the payload proper with the limit.
        if payload.len()
            > self
                .max_message_bytes
                .saturating_add(envelope::POSITIONED_HEADER_LEN)
        {
            return Inbound::Reject(RejectReason::TooLarge);
        }
        match envelope::open(Bytes::from(payload)) {
            Ok(message) if message.payload.len() > self.max_message_bytes => {
                Inbound::Reject(RejectReason::TooLarge)
            }
            Ok(message) => Inbound::Deliver { channel, message },
            Err(_) => Inbound::Reject(RejectReason::Envelope),
        }
    }

    /// The channel name inside a Redis channel, if it has the prefix and is valid.
    fn channel_name(&self, redis_channel: &[u8]) -> Option<String> {
        let name = redis_channel.strip_prefix(self.prefix.as_bytes())?;
        let name = std::str::from_utf8(name).ok()?;
        (self.valid_channel)(name).then(|| name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> InboundRules {
        InboundRules::new("rc:", 8, |c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn delivers_messages_of_every_kind() {
        let sealed = envelope::seal(b"hi", false, 9);
        for (kind, data) in [
            (PushKind::Message, vec![bulk(b"rc:news"), bulk(&sealed)]),
            (PushKind::SMessage, vec![bulk(b"rc:news"), bulk(&sealed)]),
            (
                PushKind::PMessage,
                vec![bulk(b"rc:*"), bulk(b"rc:news"), bulk(&sealed)],
            ),
        ] {
            assert_eq!(
                rules().classify(&kind, data),
                Inbound::Deliver {
                    channel: "news".to_owned(),
                    message: Opened {
                        payload: Bytes::from_static(b"hi"),
                        binary: false,
                        published_at_ns: Some(9),
                        position: None,
                    }
                }
            );
        }
    }

    #[test]
    fn foreign_payloads_are_delivered_raw() {
        let got = rules().classify(&PushKind::Message, vec![bulk(b"rc:a"), bulk(b"\xfe")]);
        let Inbound::Deliver { message, .. } = got else {
            panic!("{got:?}")
        };
        assert!(message.binary);
        assert_eq!(message.published_at_ns, None);
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        let r = rules();
        let msg = |ch: &[u8], p: &[u8]| r.classify(&PushKind::Message, vec![bulk(ch), bulk(p)]);
        let reject = Inbound::Reject;
        assert_eq!(msg(b"rc:a", b"123456789"), reject(RejectReason::TooLarge));
        assert_eq!(
            msg(b"rc:a", &envelope::seal(b"123456789", false, 1)),
            reject(RejectReason::TooLarge)
        );
        assert_eq!(
            msg(b"rc:a", &vec![b'x'; 1 << 20]),
            reject(RejectReason::TooLarge)
        );
        assert_eq!(
            r.classify(&PushKind::Message, vec![bulk(b"rc:a"), Value::Nil]),
            reject(RejectReason::TooLarge),
            "a payload the size filter dropped"
        );
        assert_eq!(msg(b"rc:bad name", b"x"), reject(RejectReason::Channel));
        assert_eq!(msg(b"rc:", b"x"), reject(RejectReason::Channel));
        assert_eq!(msg(b"other:a", b"x"), reject(RejectReason::Channel));
        assert_eq!(msg(b"rc:\xff", b"x"), reject(RejectReason::Channel));
        assert_eq!(
            msg(b"rc:a", b"\xffrc\x01\x00"),
            reject(RejectReason::Envelope)
        );
        for data in [
            vec![],
            vec![bulk(b"rc:a")],
            vec![Value::Int(1), bulk(b"x")],
            vec![bulk(b"rc:a"), bulk(b"x"), bulk(b"extra")],
        ] {
            assert_eq!(
                r.classify(&PushKind::Message, data),
                reject(RejectReason::Malformed)
            );
        }
        assert_eq!(
            r.classify(&PushKind::PMessage, vec![bulk(b"rc:*"), bulk(b"rc:a")]),
            reject(RejectReason::Malformed)
        );
    }

    #[test]
    fn control_requests_are_read_and_bad_ones_refused() {
        let from = control::NodeId::random();
        let target = crate::DisconnectTarget::Sub("alice smith".into());
        let request = control::disconnect_request(from, &target);
        let want = Inbound::Control(Control::Disconnect { from, target });
        let r = rules();
        let message = vec![bulk(b"rc:#control"), bulk(request.as_bytes())];
        assert_eq!(r.classify(&PushKind::Message, message), want);
        let pattern = vec![
            bulk(b"rc:*"),
            bulk(b"rc:#control"),
            bulk(request.as_bytes()),
        ];
        assert_eq!(r.classify(&PushKind::PMessage, pattern), want);
        // Longer than a message may be: a control request is not a message.
        assert!(request.len() > 8);
        for bad in [&b"hello"[..], b"", &envelope::seal(b"hi", false, 1)] {
            assert_eq!(
                r.classify(&PushKind::Message, vec![bulk(b"rc:#control"), bulk(bad)]),
                Inbound::Reject(RejectReason::Envelope)
            );
        }
        // Another prefix's control channel is no channel of ours.
        assert_eq!(
            r.classify(
                &PushKind::Message,
                vec![bulk(b"other:#control"), bulk(request.as_bytes())]
            ),
            Inbound::Reject(RejectReason::Channel)
        );
    }

    #[test]
    fn confirmations_are_ignored() {
        let r = rules();
        for kind in [
            PushKind::Subscribe,
            PushKind::Unsubscribe,
            PushKind::PSubscribe,
            PushKind::SSubscribe,
            PushKind::Invalidate,
            PushKind::Other("x".to_owned()),
        ] {
            assert_eq!(
                r.classify(&kind, vec![bulk(b"rc:a"), Value::Int(1)]),
                Inbound::Ignore
            );
        }
    }
}
