//! permessage-deflate negotiation (RFC 7692 5, 7.1): parse the offers in
//! `Sec-WebSocket-Extensions`, accept the first acceptable one, and build the answer.
//!
//! The server always answers with `server_no_context_takeover` (7.1.1.1 lets it add the
//! parameter to any accepted offer) and `client_no_context_takeover` (7.1.1.2: "A server
//! MAY include the client_no_context_takeover extension parameter in an extension
//! negotiation response"), so neither side keeps an LZ77 window between messages.
//! Offers with unknown, duplicate or invalid parameters are declined (7.1), never an error.

/// The extension token.
pub(crate) const EXTENSION_NAME: &str = "permessage-deflate";

/// An offer for clients of this crate: default parameters, and the server may limit the
/// client's window.
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Largest LZ77 window (log2), also the value when a parameter is absent.
const MAX_WINDOW_BITS: u8 = 15;

/// Smallest LZ77 window (log2) a peer may ask for.
const MIN_WINDOW_BITS: u8 = 8;

/// Smallest window (log2) zlib compresses raw deflate with; it stays within 256 bytes,
/// so it serves peers that asked for 8 (see `codec`).
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// The agreed permessage-deflate parameters of one connection. Both directions are
/// without context takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// Window size (log2) of the server's compressor. From [`negotiate_deflate`]: what the
    /// server compresses with, 9..=15 (an agreed 8 is served with 9, whose matches stay
    /// within 256 bytes). From [`client_deflate_params`]: the agreed value, 8..=15.
    pub server_max_window_bits: u8,
    /// Largest window size (log2) the client may compress with, 15 if unspecified.
    pub client_max_window_bits: u8,
}

/// Parameters of one permessage-deflate offer or answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Which side wrote the parameters: only an offer may have a valueless
/// `client_max_window_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Answer,
}

/// Picks the first acceptable permessage-deflate offer from `Sec-WebSocket-Extensions`
/// header values (each may hold several comma-separated offers; other extensions are
/// skipped) and returns the agreed parameters and the exact answer header value, e.g.
/// `permessage-deflate; server_no_context_takeover; client_no_context_takeover;
/// server_max_window_bits=10`.
pub fn negotiate_deflate(offers: &[String]) -> Option<(DeflateParams, String)> {
    offers
        .iter()
        .flat_map(|value| split_unquoted(value, b','))
        .filter(|element| !element.is_empty())
        .find_map(|element| parse_deflate_element(element, Side::Offer))
        .map(|offer| accept(&offer))
}

/// The parameters and answer for an acceptable offer.
fn accept(offer: &Params) -> (DeflateParams, String) {
    let mut answer =
        format!("{EXTENSION_NAME}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = offer.server_max_window_bits {
        answer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    let params = DeflateParams {
        server_max_window_bits: offer
            .server_max_window_bits
            .map_or(MAX_WINDOW_BITS, |bits| bits.max(MIN_COMPRESS_WINDOW_BITS)),
        client_max_window_bits: offer
            .client_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS),
    };
    (params, answer)
}

/// Client side: the agreed parameters from the server's `Sec-WebSocket-Extensions`
/// answer, or `None` if it accepted no permessage-deflate or its answer is invalid
/// (the client must then fail the connection if it saw the extension at all).
pub fn client_deflate_params(answer: &str) -> Option<DeflateParams> {
    let element = split_unquoted(answer, b',')
        .into_iter()
        .find(|element| extension_name(element).eq_ignore_ascii_case(EXTENSION_NAME))?;
    let params = parse_deflate_element(element, Side::Answer)?;
    Some(DeflateParams {
        server_max_window_bits: params.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        client_max_window_bits: params
            .client_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS),
    })
}

/// The extension name of one list element (text before the first `;`), trimmed.
fn extension_name(element: &str) -> &str {
    element.split(';').next().unwrap_or("").trim()
}

/// Parses one list element if it is a valid permessage-deflate offer or answer.
fn parse_deflate_element(element: &str, side: Side) -> Option<Params> {
    let mut parts = split_unquoted(element, b';').into_iter();
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let mut params = Params::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim_end(), Some(unquote(value.trim_start())?)),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) if !params.server_no_context_takeover => {
                params.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !params.client_no_context_takeover => {
                params.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(value)) if params.server_max_window_bits.is_none() => {
                params.server_max_window_bits = Some(window_bits(&value)?);
            }
            ("client_max_window_bits", value) if params.client_max_window_bits.is_none() => {
                let bits = match value {
                    Some(value) => Some(window_bits(&value)?),
                    None if side == Side::Offer => None,
                    None => return None,
                };
                params.client_max_window_bits = Some(bits);
            }
            _ => return None,
        }
    }
    Some(params)
}

/// A window-bits value: a decimal integer 8..=15 without leading zeros (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(bits))
}

/// The value of a parameter: a token, or a quoted string whose unescaped content is a
/// token (RFC 6455 9.1). `None` if it is neither.
fn unquote(raw: &str) -> Option<String> {
    let value = match raw.strip_prefix('"') {
        Some(quoted) => {
            let inner = quoted.strip_suffix('"')?;
            let mut value = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?),
                    '"' => return None,
                    c => value.push(c),
                }
            }
            value
        }
        None => raw.to_owned(),
    };
    is_token(&value).then_some(value)
}

/// Whether `s` is a non-empty HTTP token (RFC 7230 3.2.6).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits `s` at `separator` bytes outside double-quoted strings (with backslash
/// escapes), trimming whitespace around each piece. An unterminated quote runs to the
/// end and makes that piece invalid.
fn split_unquoted(s: &str, separator: u8) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quotes && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == separator && !in_quotes {
            pieces.push(&s[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&s[start..]);
    pieces.iter_mut().for_each(|piece| *piece = piece.trim());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn negotiate(offers: &[&str]) -> Option<(DeflateParams, String)> {
        let offers: Vec<String> = offers.iter().map(|s| (*s).to_owned()).collect();
        negotiate_deflate(&offers)
    }

    fn params(server: u8, client: u8) -> DeflateParams {
        DeflateParams {
            server_max_window_bits: server,
            client_max_window_bits: client,
        }
    }

    fn accepted(offer: &str) -> (DeflateParams, String) {
        negotiate(&[offer]).unwrap_or_else(|| panic!("declined {offer:?}"))
    }

    #[test]
    fn plain_and_context_takeover_offers() {
        for offer in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate;client_no_context_takeover;server_no_context_takeover",
            "Permessage-Deflate ;  SERVER_NO_CONTEXT_TAKEOVER",
        ] {
            assert_eq!(
                accepted(offer),
                (params(15, 15), BOTH.to_owned()),
                "{offer}"
            );
        }
    }

    #[test]
    fn client_max_window_bits_with_and_without_value() {
        assert_eq!(
            accepted("permessage-deflate; client_max_window_bits"),
            (params(15, 15), BOTH.to_owned())
        );
        for bits in 8..=15 {
            for offer in [
                format!("permessage-deflate; client_max_window_bits={bits}"),
                format!("permessage-deflate; client_max_window_bits=\"{bits}\""),
                format!("permessage-deflate; client_max_window_bits = {bits}"),
            ] {
                assert_eq!(accepted(&offer), (params(15, bits), BOTH.to_owned()));
            }
        }
    }

    #[test]
    fn server_max_window_bits_8_to_15() {
        for bits in 8..=15u8 {
            for no_context in ["", "; server_no_context_takeover"] {
                let offer = format!(
                    "permessage-deflate{no_context}; server_max_window_bits={bits}; client_max_window_bits"
                );
                let (agreed, answer) = accepted(&offer);
                assert_eq!(agreed, params(bits.max(9), 15), "{offer}");
                assert_eq!(answer, format!("{BOTH}; server_max_window_bits={bits}"));
            }
        }
        assert_eq!(
            accepted("permessage-deflate; server_max_window_bits=10"),
            (
                params(10, 15),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10".to_owned()
            )
        );
    }

    #[test]
    fn bad_unknown_or_duplicate_parameters_decline_the_offer() {
        for offer in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=9.0",
            "permessage-deflate; server_max_window_bits=\"9",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=nine",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=256",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits",
            "permessage-deflate; mux",
            "permessage-deflate; x=1",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; =5",
            "permessage-deflate;;",
            "permessage-deflate-x",
            "x-webkit-deflate-frame",
            "deflate-frame; no_context_takeover",
            "",
        ] {
            assert_eq!(negotiate(&[offer]), None, "{offer:?}");
        }
    }

    #[test]
    fn first_acceptable_offer_wins() {
        // Autobahn 13.7-style list: the first offer is picked.
        let (agreed, answer) = accepted(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8, \
             permessage-deflate; server_no_context_takeover, permessage-deflate",
        );
        assert_eq!(agreed, params(9, 15));
        assert_eq!(answer, format!("{BOTH}; server_max_window_bits=8"));
        // A declined offer falls through to the next one, across headers too.
        let (agreed, answer) = negotiate(&[
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=7, permessage-deflate; mux",
            "permessage-deflate; client_max_window_bits=12, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(agreed, params(15, 12));
        assert_eq!(answer, BOTH);
        assert_eq!(
            negotiate(&["foo; bar=\"a,b\", permessage-deflate; server_max_window_bits=11"])
                .unwrap()
                .0,
            params(11, 15)
        );
        assert_eq!(
            negotiate(&["permessage-deflate; server_max_window_bits=\"1,1\""]),
            None
        );
        assert_eq!(negotiate(&[]), None);
        assert_eq!(negotiate(&["", " , ,"]), None);
    }

    #[test]
    fn quoted_values_are_unescaped() {
        assert_eq!(
            accepted("permessage-deflate; server_max_window_bits=\"1\\2\"").0,
            params(12, 15)
        );
        assert_eq!(unquote("\"a\\\"b\""), None);
        assert_eq!(unquote("\"ab\"").as_deref(), Some("ab"));
        assert_eq!(unquote("a b"), None);
    }

    #[test]
    fn client_reads_the_answer() {
        assert_eq!(client_deflate_params(BOTH), Some(params(15, 15)));
        assert_eq!(
            client_deflate_params(
                "foo, permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits=10"
            ),
            Some(params(8, 10))
        );
        for (_, answer) in [
            accepted("permessage-deflate; server_max_window_bits=12"),
            accepted("permessage-deflate"),
        ] {
            assert!(client_deflate_params(&answer).is_some(), "{answer}");
        }
        for bad in [
            "",
            "foo",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; what",
        ] {
            assert_eq!(client_deflate_params(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn splitting_respects_quotes() {
        assert_eq!(
            split_unquoted(" a; b=\"x;y\" ;c ", b';'),
            ["a", "b=\"x;y\"", "c"]
        );
        assert_eq!(
            split_unquoted("a, \"b\\\",\" ,", b','),
            ["a", "\"b\\\",\"", ""]
        );
        assert_eq!(split_unquoted(" , ", b','), ["", ""]);
    }
}
