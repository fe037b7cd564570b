//! `POST /publish` with many messages in one request: a JSON array, or NDJSON (one JSON
//! object per line), of `{"channel": "news", "data": "text"}` or, for binary messages,
//! `{"channel": "news", "base64": "AAEC"}`. Items are published in order (so per-channel
//! order holds) and each gets its own result.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::Value;

use crate::message::Message;

/// One message of a batch, or why its item could not be read.
pub(crate) type BatchItem = Result<Message, String>;

/// Reads a batch body. An error means the body as a whole is not a batch.
pub(crate) fn parse_batch(body: &[u8]) -> Result<Vec<BatchItem>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let values: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON array: {e}"))?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect()
    };
    if values.is_empty() {
        return Err("empty batch".to_owned());
    }
    if values.iter().all(Value::is_null) {
        return Err("body is neither a JSON array nor NDJSON".to_owned());
    }
    Ok(values.into_iter().map(item).collect())
}

fn item(value: Value) -> BatchItem {
    let Value::Object(map) = value else {
        return Err("expected an object {\"channel\":..,\"data\":..}".to_owned());
    };
    let channel = match map.get("channel") {
        Some(Value::String(c)) => c.clone(),
        _ => return Err("missing \"channel\"".to_owned()),
    };
    match (map.get("data"), map.get("base64")) {
        (Some(Value::String(text)), None) => Ok(Message::new(channel, Bytes::from(text.clone()))),
        (None, Some(Value::String(b64))) => STANDARD
            .decode(b64)
            .map(|bytes| Message::new(channel, Bytes::from(bytes)))
            .map_err(|_| "\"base64\" is not valid base64".to_owned()),
        _ => Err("exactly one of \"data\" (string) or \"base64\" is required".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_ndjson() {
        let array = br#"[{"channel":"a","data":"1"},{"channel":"b","base64":"/wA="}]"#;
        let items = parse_batch(array).unwrap();
        let message = |channel: &str, payload: &'static [u8], binary| Message {
            channel: channel.to_owned(),
            payload: Bytes::from_static(payload),
            binary,
        };
        assert_eq!(items[0], Ok(message("a", b"1", false)));
        assert_eq!(items[1], Ok(message("b", &[0xff, 0], true)));
        let nd = b"{\"channel\":\"a\",\"data\":\"x\"}\n\n{\"channel\":\"a\",\"data\":\"y\"}\n";
        assert_eq!(parse_batch(nd).unwrap().len(), 2);
    }

    #[test]
    fn bad_items_fail_alone_and_bad_bodies_fail_whole() {
        let items = parse_batch(
            b"[1, {\"data\":\"x\"}, {\"channel\":\"a\"}, {\"channel\":\"a\",\"base64\":\"!\"}]",
        )
        .unwrap();
        assert!(items.iter().all(Result::is_err));
        let nd = parse_batch(b"{\"channel\":\"a\",\"data\":\"ok\"}\nnot json\n").unwrap();
        assert!(nd[0].is_ok() && nd[1].is_err());
        for bad in [&b"[1,"[..], b"", b"  \n", b"\xff", b"x", b"not\njson"] {
            assert!(parse_batch(bad).is_err(), "{bad:?}");
        }
    }
}
