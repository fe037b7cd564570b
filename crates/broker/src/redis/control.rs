//! The cluster's control channel: requests one node passes to every other node through
//! Redis, today only the admin API's disconnect.
//!
//! The channel is `<prefix>#control`: `#` never occurs in a gateway channel name (those
//! are `[A-Za-z0-9_.:-]`), so no client channel can collide with it, and the prefix keeps
//! two clusters sharing one Redis apart. Every node listens to it in every mode: a
//! classic `SUBSCRIBE` in `interest` and `sharded` mode (such a rare message does not
//! need sharded pub/sub, and a Redis Cluster broadcasts a classic `PUBLISH` to every
//! node), and the `<prefix>*` pattern already covers it in `pattern` mode. Requests are
//! sent with a classic `PUBLISH`.
//!
//! A request is one line of text, easy to read with `redis-cli SUBSCRIBE`:
//!
//! ```text
//! v1 <node> disconnect sub <sub>
//! v1 <node> disconnect channel <channel>
//! ```
//!
//! `<node>` is the sending node's id (16 lowercase hex digits, drawn at random when its
//! broker starts): a node receives its own requests back and skips them, since it has
//! already carried them out. `<sub>` is everything after its space (it may contain
//! spaces), 1 to [`MAX_SUB_BYTES`](crate::MAX_SUB_BYTES) bytes of UTF-8; `<channel>` a valid channel name.
//! Anything else is refused and counted as a bad envelope
//! ([`RejectReason::Envelope`](super::events::RejectReason::Envelope)).

use crate::DisconnectTarget;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// What follows the prefix in the control channel's name.
const CHANNEL_SUFFIX: &str = "#control";
/// The version word that starts every request.
const VERSION: &str = "v1";

/// The Redis channel of the control requests for `prefix`.
pub(crate) fn control_channel(prefix: &str) -> String {
    format!("{prefix}{CHANNEL_SUFFIX}")
}

/// A node's id on the control channel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeId(u64);

impl NodeId {
    /// A fresh id: std's per-process random hash keys over the clock and the pid.
    pub(crate) fn random() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(super::clock::unix_nanos());
        hasher.write_u32(std::process::id());
        NodeId(hasher.finish())
    }

    fn parse(text: &str) -> Option<Self> {
        let hex = text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| u64::from_str_radix(text, 16).ok().map(NodeId))
            .flatten()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A request read off the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// Close the connections `target` names.
    Disconnect {
        /// The node that took the request.
        from: NodeId,
        /// Whom to close.
        target: DisconnectTarget,
    },
}

/// A control message that is not a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadControl;

/// The request that asks every node to disconnect `target`, sent by `from`.
pub(crate) fn disconnect_request(from: NodeId, target: &DisconnectTarget) -> String {
    let (kind, value) = match target {
        DisconnectTarget::Sub(sub) => ("sub", sub),
        DisconnectTarget::Channel(channel) => ("channel", channel),
    };
    format!("{VERSION} {from} disconnect {kind} {value}")
}

/// Reads a request; `valid_channel` checks a channel's name.
pub(crate) fn parse(raw: &[u8], valid_channel: fn(&str) -> bool) -> Result<Control, BadControl> {
    let text = std::str::from_utf8(raw).map_err(|_| BadControl)?;
    let mut words = text.splitn(5, ' ');
    let (Some(VERSION), Some(node), Some("disconnect"), Some(kind), Some(value)) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(BadControl);
    };
    let from = NodeId::parse(node).ok_or(BadControl)?;
    let target = match kind {
        "sub" => DisconnectTarget::Sub(value.to_owned()),
        "channel" => DisconnectTarget::Channel(value.to_owned()),
        _ => return Err(BadControl),
    };
    if !target.is_valid(valid_channel) {
        return Err(BadControl);
    }
    Ok(Control::Disconnect { from, target })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_SUB_BYTES;

    fn valid(c: &str) -> bool {
        !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    }

    #[test]
    fn requests_read_back_as_sent() {
        let node = NodeId::random();
        for target in [
            DisconnectTarget::Sub("alice".into()),
            DisconnectTarget::Sub("John Smith, admin".into()),
            DisconnectTarget::Sub("é".repeat(MAX_SUB_BYTES / 2)),
            DisconnectTarget::Channel("news.eu".into()),
        ] {
            let raw = disconnect_request(node, &target);
            assert_eq!(
                parse(raw.as_bytes(), valid),
                Ok(Control::Disconnect { from: node, target })
            );
        }
    }

    #[test]
    fn node_ids_differ_and_print_as_16_hex_digits() {
        let (a, b) = (NodeId::random(), NodeId::random());
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(NodeId::parse(&a.to_string()), Some(a));
        assert_eq!(control_channel("ringcast:"), "ringcast:#control");
    }

    #[test]
    fn anything_else_is_refused() {
        let node = "0123456789abcdef";
        let long = "x".repeat(MAX_SUB_BYTES + 1);
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"hello".to_vec(),
            format!("v2 {node} disconnect sub alice").into_bytes(),
            format!("v1 {node} disconnect sub").into_bytes(),
            format!("v1 {node} disconnect sub ").into_bytes(),
            format!("v1 {node} disconnect sub {long}").into_bytes(),
            format!("v1 {node} disconnect user alice").into_bytes(),
            format!("v1 {node} disconnect channel bad name").into_bytes(),
            format!("v1 {node} disconnect channel ").into_bytes(),
            format!("v1 {node} publish sub alice").into_bytes(),
            format!("v1 {node}  disconnect sub alice").into_bytes(),
            b"v1 0123456789ABCDEF disconnect sub alice".to_vec(),
            b"v1 0123456789abcde disconnect sub alice".to_vec(),
            b"v1 +123456789abcdef disconnect sub alice".to_vec(),
            [format!("v1 {node} disconnect sub ").as_bytes(), b"\xff"].concat(),
        ];
        for raw in bad {
            assert_eq!(
                parse(&raw, valid),
                Err(BadControl),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
}
