//! The non-WebSocket routes served on the listen ports: `GET /sse/<channel>`
//! (Server-Sent Events) and `GET /poll/<channel>?since=<id>` (long-poll). The shard asks
//! for them only after [`parse_upgrade`](crate::parse_upgrade) found a complete request
//! that is not a WebSocket upgrade.

use crate::channel::is_valid_channel;
use crate::handshake::{HandshakeError, MAX_HEADERS, header_values};

/// A plain HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainRoute {
    /// `/sse/<channel>`: an event stream.
    Sse(String),
    /// `/poll/<channel>`: one long-poll request.
    Poll(String),
}

/// A parsed plain `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainGet {
    /// Where it goes.
    pub route: PlainRoute,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The `Last-Event-ID` header (what an EventSource sends when it reconnects), if
    /// any, at most 256 bytes (a longer one is dropped).
    pub last_event_id: Option<String>,
}

impl PlainGet {
    /// The value of query parameter `name` (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Parses a complete `GET /sse/<channel>` or `GET /poll/<channel>` request. `Ok(None)`
/// when `buf` is some other request; an error for a bad channel under those routes.
pub fn parse_plain_get(buf: &[u8]) -> Result<Option<PlainGet>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Ok(None),
    }
    if request.method != Some("GET") {
        return Ok(None);
    }
    let target = request.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let route = if let Some(name) = path.strip_prefix("/sse/") {
        PlainRoute::Sse(name.to_owned())
    } else if let Some(name) = path.strip_prefix("/poll/") {
        PlainRoute::Poll(name.to_owned())
    } else {
        return Ok(None);
    };
    let (PlainRoute::Sse(name) | PlainRoute::Poll(name)) = &route;
    if !is_valid_channel(name) {
        return Err(HandshakeError::BadChannel);
    }
    let origin = header_values(request.headers, "origin")
        .next()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let last_event_id = header_values(request.headers, "last-event-id")
        .next()
        .filter(|v| v.len() <= 256)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Ok(Some(PlainGet {
        route,
        origin,
        query,
        last_event_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_and_poll_routes() {
        let get =
            parse_plain_get(b"GET /sse/news HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(get.route, PlainRoute::Sse("news".into()));
        assert_eq!(get.origin.as_deref(), Some("https://a"));
        let get = parse_plain_get(b"GET /poll/news?since=41&token=t HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(get.route, PlainRoute::Poll("news".into()));
        assert_eq!(get.query_param("since"), Some("41"));
        assert_eq!(get.query_param("token"), Some("t"));
    }

    #[test]
    fn other_requests_and_bad_channels() {
        for other in [
            &b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /sse/news HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /sse/news HTTP/1.1\r\nHost: x\r\n",
            b"\x00\x01garbage",
        ] {
            assert_eq!(parse_plain_get(other), Ok(None));
        }
        assert_eq!(
            parse_plain_get(b"GET /sse/a%20b HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HandshakeError::BadChannel)
        );
        assert_eq!(
            parse_plain_get(b"GET /poll/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HandshakeError::BadChannel)
        );
    }
}
