//! A client's `{"subscribe":"x"}` (optionally with `"since":"<epoch>:<offset>"` or
//! `"last"`) and `{"unsubscribe":"x"}` text commands (when client commands are on), each
//! answered with a JSON ack or error, never a silent close.

use super::Shard;
use crate::ids::ConnId;
use crate::position::Since;

impl Shard {
    /// Runs one command and returns the JSON answer.
    pub(super) fn client_command(&mut self, id: ConnId, text: &[u8]) -> String {
        let reply_error = |error: &str, channel: Option<&str>| match channel {
            Some(c) => serde_json::json!({"error": error, "channel": c}).to_string(),
            None => serde_json::json!({"error": error}).to_string(),
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(text) else {
            return reply_error("expected a JSON object like {\"subscribe\":\"news\"}", None);
        };
        let since = match map.get("since") {
            None => None,
            Some(serde_json::Value::String(text)) => match Since::parse(text) {
                Some(since) => Some(since),
                None => return reply_error("since must be last or <epoch>:<offset>", None),
            },
            Some(_) => return reply_error("since must be a string", None),
        };
        let verbs = map.len() - usize::from(since.is_some());
        let found = map.iter().find(|(key, _)| key.as_str() != "since");
        let (verb, channel) = match (verbs, found) {
            (1, Some((verb, serde_json::Value::String(ch)))) => (verb.as_str(), ch.as_str()),
            _ => {
                return reply_error(
                    "expected one of subscribe, unsubscribe with a channel name",
                    None,
                );
            }
        };
        if since.is_some() && verb != "subscribe" {
            return reply_error("since goes with subscribe", Some(channel));
        }
        if !matches!(verb, "subscribe" | "unsubscribe") {
            return reply_error("unknown command", None);
        }
        if self.cfg.auth.requires_token() {
            return reply_error(
                "commands are off with tokens: name channels in the URL",
                Some(channel),
            );
        }
        if !ringcast_proto::is_valid_channel(channel) {
            return reply_error("invalid channel name", Some(channel));
        }
        let done = if verb == "subscribe" {
            self.subscribe_from(id, channel, since)
        } else {
            self.unsubscribe(id, channel)
        };
        match (done, verb) {
            (true, _) => serde_json::json!({"ok": verb, "channel": channel}).to_string(),
            (false, "subscribe") => {
                reply_error("already subscribed or channel limit reached", Some(channel))
            }
            (false, _) => reply_error("not subscribed", Some(channel)),
        }
    }
}
