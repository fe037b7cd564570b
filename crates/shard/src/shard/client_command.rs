//! A client's text commands, each answered with one JSON text message, never a silent
//! close:
//! - `{"subscribe":"x"}` (optionally with `"since":"<epoch>:<offset>"` or `"last"`) and
//!   `{"unsubscribe":"x"}`, when client commands are on; on a connection admitted with a
//!   token only for channels its grant allows;
//! - `{"type":"refresh","token":"…"}` on a connection admitted with a token (commands on
//!   or not): a new token of either kind naming the same `sub` replaces the grant and
//!   moves the expiry; subscriptions the new grant no longer allows end (listed in the
//!   answer). Answer `{"type":"refreshed","exp":<unix seconds>}`, or
//!   `{"type":"refresh","error":…}` and the old grant stays. A refresh costs a signature
//!   check (tens of microseconds for RS256/ES256), so at most one per connection per
//!   [`MIN_REFRESH_GAP_MS`] and [`REFRESHES_PER_SEC`] per shard are checked (bounding
//!   what connections spamming valid-looking refreshes can cost a shard), and a token
//!   longer than [`MAX_REFRESH_TOKEN_BYTES`] is refused unread.

use super::Shard;
use crate::ids::ConnId;
use crate::position::Since;
use serde_json::{Map, Value, json};

/// Shortest time between two refreshes of one connection.
pub(crate) const MIN_REFRESH_GAP_MS: u64 = 1_000;
/// Refreshes one shard verifies per second at most (burst: one second's worth).
pub(crate) const REFRESHES_PER_SEC: u32 = 1_000;
/// Longest token a refresh may carry.
pub(crate) const MAX_REFRESH_TOKEN_BYTES: usize = 8 * 1024;

impl Shard {
    /// Whether text from this connection is read as commands.
    pub(super) fn reads_commands(&self, id: ConnId) -> bool {
        self.conns
            .get(id)
            .is_some_and(|c| !c.echo && (self.cfg.client_commands || c.grant().is_some()))
    }

    /// Runs one command and returns the JSON answer.
    pub(super) fn client_command(&mut self, id: ConnId, text: &[u8], now_ms: u64) -> String {
        let Ok(Value::Object(map)) = serde_json::from_slice(text) else {
            return reply_error("expected a JSON object like {\"subscribe\":\"news\"}", None);
        };
        if map.contains_key("type") {
            return self.typed_command(id, &map, now_ms);
        }
        let since = match map.get("since") {
            None => None,
            Some(Value::String(text)) => match Since::parse(text) {
                Some(since) => Some(since),
                None => return reply_error("since must be last or <epoch>:<offset>", None),
            },
            Some(_) => return reply_error("since must be a string", None),
        };
        let verbs = map.len() - usize::from(since.is_some());
        let found = map.iter().find(|(key, _)| key.as_str() != "since");
        let (verb, channel) = match (verbs, found) {
            (1, Some((verb, Value::String(ch)))) => (verb.as_str(), ch.as_str()),
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
        if !self.cfg.client_commands {
            return reply_error("subscribe commands are off on this server", Some(channel));
        }
        if !ringcast_proto::is_valid_channel(channel) {
            return reply_error("invalid channel name", Some(channel));
        }
        let denied = self.cfg.auth.requires_token()
            && self
                .conns
                .get(id)
                .and_then(|c| c.grant())
                .is_none_or(|g| !g.grant.channels.allows(channel));
        if verb == "subscribe" && denied {
            return reply_error("the token does not allow this channel", Some(channel));
        }
        let done = if verb == "subscribe" {
            self.subscribe_from(id, channel, since)
        } else {
            self.unsubscribe(id, channel)
        };
        match (done, verb) {
            (true, _) => json!({"ok": verb, "channel": channel}).to_string(),
            (false, "subscribe") => {
                reply_error("already subscribed or channel limit reached", Some(channel))
            }
            (false, _) => reply_error("not subscribed", Some(channel)),
        }
    }

    /// A `{"type": …}` command (only `refresh` so far).
    fn typed_command(&mut self, id: ConnId, map: &Map<String, Value>, now_ms: u64) -> String {
        let refresh_error = |error: &str| json!({"type": "refresh", "error": error}).to_string();
        match (map.get("type"), map.get("token"), map.len()) {
            (Some(Value::String(kind)), Some(Value::String(token)), 2) if kind == "refresh" => {
                match self.refresh(id, token, now_ms) {
                    Ok(answer) => answer,
                    Err(error) => refresh_error(error),
                }
            }
            (Some(Value::String(kind)), _, _) if kind == "refresh" => {
                refresh_error("expected {\"type\":\"refresh\",\"token\":\"…\"}")
            }
            _ => reply_error("unknown command", None),
        }
    }

    /// Verifies `token` as the connection's new grant; Ok carries the answer.
    fn refresh(&mut self, id: ConnId, token: &str, now_ms: u64) -> Result<String, &'static str> {
        let conn = self.conns.get_mut(id).ok_or("connection gone")?;
        let held = conn.grant_mut().ok_or("this connection has no token")?;
        if held
            .refreshed_ms
            .is_some_and(|last| now_ms < last + MIN_REFRESH_GAP_MS)
        {
            return Err("refresh too soon: at most one per second");
        }
        held.refreshed_ms = Some(now_ms);
        if token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Err("bad_token");
        }
        if !self.refresh_budget.allow(now_ms) {
            return Err("server busy: retry the refresh in a few seconds");
        }
        let unix_now = self.cfg.unix_secs(now_ms);
        let grant = self
            .cfg
            .auth
            .verify_token(token, unix_now)
            .map_err(|err| err.label())?;
        let conn = self.conns.get_mut(id).ok_or("connection gone")?;
        let held = conn.grant().ok_or("this connection has no token")?;
        if grant.sub != held.grant.sub {
            return Err("the new token names another sub");
        }
        let ended: Vec<String> = conn
            .channels
            .slots()
            .filter_map(|slot| self.channels.name_of(slot))
            .filter(|name| !grant.channels.allows(name))
            .map(|name| name.to_string())
            .collect();
        let expires = grant.expires;
        self.schedule_token_expiry(id, Some(grant), now_ms);
        for channel in &ended {
            self.unsubscribe(id, channel);
        }
        Ok(if ended.is_empty() {
            json!({"type": "refreshed", "exp": expires}).to_string()
        } else {
            json!({"type": "refreshed", "exp": expires, "unsubscribed": ended}).to_string()
        })
    }
}

fn reply_error(error: &str, channel: Option<&str>) -> String {
    match channel {
        Some(c) => json!({"error": error, "channel": c}).to_string(),
        None => json!({"error": error}).to_string(),
    }
}
