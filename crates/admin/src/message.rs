//! One message to publish, as read from a request, and the one check every message passes
//! before it reaches the broker.

use bytes::Bytes;
use ringcast_proto::is_valid_channel;

use crate::error::PublishError;

/// A message read from a publish request, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The channel it is published on.
    pub(crate) channel: String,
    /// The payload, as sent to subscribers.
    pub(crate) payload: Bytes,
    /// `true` when the payload is not valid UTF-8: it goes out as a binary message.
    pub(crate) binary: bool,
}

impl Message {
    /// A message for `channel`; text when `payload` is valid UTF-8, else binary.
    pub(crate) fn new(channel: String, payload: Bytes) -> Self {
        let binary = std::str::from_utf8(&payload).is_err();
        Message {
            channel,
            payload,
            binary,
        }
    }

    /// The gateway's limits: at most `max_message_bytes`, then a valid channel name.
    pub(crate) fn check(&self, max_message_bytes: usize) -> Result<(), PublishError> {
        if self.payload.len() > max_message_bytes {
            return Err(PublishError::TooLarge);
        }
        if !is_valid_channel(&self.channel) {
            return Err(PublishError::BadChannel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_or_binary_by_utf8() {
        assert!(!Message::new("a".into(), Bytes::from_static(b"hi")).binary);
        assert!(Message::new("a".into(), Bytes::from_static(&[0xff])).binary);
    }

    #[test]
    fn size_is_checked_before_the_channel() {
        let big_and_bad = Message::new("a b".into(), Bytes::from_static(b"12345"));
        assert!(matches!(big_and_bad.check(4), Err(PublishError::TooLarge)));
        assert!(matches!(
            big_and_bad.check(5),
            Err(PublishError::BadChannel)
        ));
        let good = Message::new("news".into(), Bytes::from_static(b"12345"));
        assert!(good.check(5).is_ok());
    }
}
