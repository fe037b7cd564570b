//! `GET /channels` and `GET /channels/{channel}`: which channels have subscribers on
//! this node and how many, read through the [`Occupancy`] the binary implements over
//! its shards' snapshots (this crate sees no shard). Channel names can name users, so
//! both routes pass the same guard as the writes (bearer token, Origin, Host).
//!
//! A listing is sorted by name and costs O(shards × limit) however many channels and
//! subscribers the node has; `limit` is 1 to [`MAX_LIMIT`] (default
//! [`DEFAULT_LIMIT`]); `prefix` is empty or made of channel-name characters. Anything
//! else is a 400 with a JSON error, before any shard's data is touched.

use std::future::Future;
use std::pin::Pin;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use ringcast_proto::{MAX_CHANNEL_LEN, is_valid_channel};

use crate::response::{json_error, json_response};
use crate::routes::AdminState;

/// Channels listed when the request names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most channels one listing may ask for: the listing is built, sorted and serialized
/// on the sidecar's single-thread runtime, which also hands Redis pushes to the shards
/// (10,000 cost 13-74 ms there, p50), so one page stays small.
pub const MAX_LIMIT: usize = 1_000;

/// One channel as `GET /channels/{channel}` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelInfo {
    /// Subscribers on this node, exact as of the owner shard's last report (≤ 50 ms).
    pub subscribers_node: u64,
    /// With a cluster broker: subscribers on every node (Ok), or why it could not be
    /// read (Err). None without one.
    pub subscribers_cluster: Option<Result<u64, String>>,
    /// With history: the channel's last position (`epoch:offset`), None when the channel
    /// has none yet; absent (outer None) when history is off.
    pub position: Option<Option<String>>,
}

/// The future [`Occupancy::channel`] answers with.
pub type ChannelFuture = Pin<Box<dyn Future<Output = ChannelInfo> + Send>>;

/// Subscriber counts of this node (and, with a broker, of the cluster).
pub trait Occupancy: Send + Sync + 'static {
    /// Up to `limit` channels with subscribers on this node whose name starts with
    /// `prefix`, sorted by name, with their counts.
    fn list(&self, prefix: &str, limit: usize) -> Vec<(String, u64)>;
    /// What is known about `channel` (a valid name).
    fn channel(&self, channel: &str) -> ChannelFuture;
}

/// The `key=value` pairs of a query string, percent-decoded; None when an escape is
/// broken or a decoded part is not UTF-8.
fn query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            Some((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

/// `%XX` escapes and `+` (a space) decoded; None for a broken escape or non-UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                // Two hex digits: `from_str_radix` alone would take a sign (`%+5`).
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads `prefix` and `limit` from the query's pairs.
fn parse_query(pairs: &[(String, String)]) -> Result<(String, usize), String> {
    let (mut prefix, mut limit) = (None, None);
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "prefix" => &mut prefix,
            "limit" => &mut limit,
            _ => return Err(format!("unknown parameter `{key}`: use prefix and limit")),
        };
        if slot.replace(value.as_str()).is_some() {
            return Err(format!("`{key}` given twice"));
        }
    }
    let prefix = prefix.unwrap_or_default();
    if !prefix.is_empty() && !is_valid_channel(prefix) {
        return Err(format!(
            "`prefix` must be at most {MAX_CHANNEL_LEN} characters of A-Z a-z 0-9 _ . : -"
        ));
    }
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"))?,
    };
    Ok((prefix.to_owned(), limit))
}

/// `GET /channels?prefix=P&limit=N`: 200 `{"channels":[{"channel","subscribers"}],
/// "more":bool}` (`more`: channels past the limit match too), 400 for a bad query.
pub(crate) async fn list_channels(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(pairs) = query_pairs(query.as_deref().unwrap_or_default()) else {
        return json_error(StatusCode::BAD_REQUEST, "the query string cannot be read");
    };
    let (prefix, limit) = match parse_query(&pairs) {
        Ok(query) => query,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let mut channels = state.occupancy.list(&prefix, limit + 1);
    let more = channels.len() > limit;
    channels.truncate(limit);
    let channels: Vec<serde_json::Value> = channels
        .into_iter()
        .map(|(channel, subscribers)| {
            serde_json::json!({ "channel": channel, "subscribers": subscribers })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "channels": channels, "more": more }),
    )
}

/// `GET /channels/{channel}`: 200 `{"channel","subscribers_node"}` plus, with a cluster
/// broker, `"subscribers_cluster"` (null and `"cluster_error"` when it could not be
/// read) and, with history, `"position"` (null before the first message); 400 for an
/// invalid name.
pub(crate) async fn channel_info(
    State(state): State<AdminState>,
    channel: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(channel)) = channel else {
        return json_error(StatusCode::BAD_REQUEST, "invalid channel name");
    };
    if !is_valid_channel(&channel) {
        return json_error(StatusCode::BAD_REQUEST, "invalid channel name");
    }
    let info = state.occupancy.channel(&channel).await;
    let mut answer = serde_json::json!({
        "channel": channel,
        "subscribers_node": info.subscribers_node,
    });
    match info.subscribers_cluster {
        None => {}
        Some(Ok(count)) => answer["subscribers_cluster"] = count.into(),
        Some(Err(err)) => {
            answer["subscribers_cluster"] = serde_json::Value::Null;
            answer["cluster_error"] = err.into();
        }
    }
    if let Some(position) = info.position {
        answer["position"] = position.into();
    }
    json_response(StatusCode::OK, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<(String, usize), String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_query(&pairs)
    }

    #[test]
    fn limits_and_prefixes_are_checked() {
        assert_eq!(query(&[]), Ok((String::new(), DEFAULT_LIMIT)));
        assert_eq!(
            query(&[("prefix", "news."), ("limit", "1000")]),
            Ok(("news.".to_owned(), MAX_LIMIT))
        );
        for bad in [
            vec![("limit", "0")],
            vec![("limit", "1001")],
            vec![("limit", "99999999999999999999999999")],
            vec![("limit", "-1")],
            vec![("limit", "1e3")],
            vec![("limit", "")],
            vec![("prefix", "bad name")],
            vec![("prefix", "news\u{fffd}")],
            vec![("prefix", "a\0b")],
            vec![("prefix", "a/b")],
            vec![("prefix", "a"), ("prefix", "b")],
            vec![("offset", "3")],
        ] {
            assert!(query(&bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_CHANNEL_LEN + 1);
        assert!(query(&[("prefix", long.as_str())]).is_err());
    }

    #[test]
    fn query_strings_are_decoded_strictly() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            query_pairs("prefix=news%2Eeu&limit=5&"),
            Some(vec![pair("prefix", "news.eu"), pair("limit", "5")])
        );
        assert_eq!(query_pairs("prefix"), Some(vec![pair("prefix", "")]));
        for bad in [
            "prefix=%FF",
            "prefix=%zz",
            "prefix=%4",
            "prefix=%",
            "prefix=%+5",
            "prefix=%-5",
            "prefix=a%+4b",
        ] {
            assert_eq!(query_pairs(bad), None, "{bad}");
        }
    }
}
