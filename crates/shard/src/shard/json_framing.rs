//! The JSON framing of WebSocket connections (`?format=json`): a `subscribed` object
//! when a subscription starts (with the channel's position and, when the client asked
//! to resume, whether everything it missed follows), then one `message` object per
//! message, text as `"data"` and binary as `"base64"`. Positions are left out on
//! channels that keep no history.

use super::encoded;
use crate::history::Recovery;
use crate::position::Position;
use base64::Engine;
use bytes::Bytes;
use ringcast_proto::OpCode;
use std::fmt::Write;

/// `{"type":"subscribed","channel":…,"epoch":…,"offset":…,"recovered":…}` as a text
/// frame: `position` is where the client is once the messages that follow it are
/// delivered; `recovered` only when it asked to resume.
pub(super) fn subscribed_frame(
    channel: &str,
    position: Option<Position>,
    result: Option<Recovery>,
) -> Bytes {
    let mut out = String::with_capacity(96 + channel.len());
    out.push_str("{\"type\":\"subscribed\",\"channel\":");
    push_json_string(&mut out, channel);
    push_position(&mut out, position);
    if let Some(result) = result {
        let _ = write!(out, ",\"recovered\":{}", result.complete());
    }
    out.push('}');
    encoded(OpCode::Text, out.as_bytes())
}

/// `{"type":"message","channel":…,"epoch":…,"offset":…,"data":…}` (binary payloads as
/// `"base64":…`) as a text frame.
pub(super) fn message_frame(
    channel: &str,
    position: Option<Position>,
    payload: &[u8],
    binary: bool,
) -> Bytes {
    let mut out = String::with_capacity(96 + channel.len() + payload.len() * 4 / 3);
    out.push_str("{\"type\":\"message\",\"channel\":");
    push_json_string(&mut out, channel);
    push_position(&mut out, position);
    out.push(',');
    push_payload(&mut out, payload, binary);
    out.push('}');
    encoded(OpCode::Text, out.as_bytes())
}

/// Appends a message's payload as a JSON member: `"data":"…"` (text, invalid UTF-8
/// replaced) or `"base64":"…"` (binary).
pub(super) fn push_payload(out: &mut String, payload: &[u8], binary: bool) {
    if binary {
        out.push_str("\"base64\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(payload, out);
        out.push('"');
    } else {
        out.push_str("\"data\":");
        push_json_string(out, &String::from_utf8_lossy(payload));
    }
}

fn push_position(out: &mut String, position: Option<Position>) {
    if let Some(p) = position {
        let _ = write!(out, ",\"epoch\":\"{}\",\"offset\":{}", p.epoch, p.offset);
    }
}

/// Appends `text` as a JSON string.
pub(super) fn push_json_string(out: &mut String, text: &str) {
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Epoch;

    fn text_of(frame: &Bytes) -> serde_json::Value {
        // A short unmasked text frame: two header bytes (or four past 125 bytes).
        let start = if frame[1] == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).expect("JSON")
    }

    #[test]
    fn objects_are_the_documented_json() {
        let position = Some(Position {
            epoch: Epoch::from_bits(0),
            offset: 41,
        });
        let sub = text_of(&subscribed_frame("news", position, Some(Recovery::Full)));
        assert_eq!(
            sub,
            serde_json::json!({"type":"subscribed","channel":"news","epoch":"AAAAAAAA","offset":41,"recovered":true})
        );
        let plain = text_of(&subscribed_frame("news", None, None));
        assert_eq!(
            plain,
            serde_json::json!({"type":"subscribed","channel":"news"})
        );
        let msg = text_of(&message_frame("news", position, b"a\"b", false));
        assert_eq!(
            msg,
            serde_json::json!({"type":"message","channel":"news","epoch":"AAAAAAAA","offset":41,"data":"a\"b"})
        );
        let bin = text_of(&message_frame("n", None, &[0xff, 0], true));
        assert_eq!(
            bin,
            serde_json::json!({"type":"message","channel":"n","base64":"/wA="})
        );
    }
}
