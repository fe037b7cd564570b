//! permessage-deflate in the opening handshake: the server reads the offers, answers with
//! the agreed parameters, and the client reads them back.

use ringcast_proto::deflate::CLIENT_OFFER;
use ringcast_proto::{
    ClientHandshakeStatus, DeflateParams, HandshakeStatus, Upgrade, accepted_extension,
    client_deflate_params, client_request, client_request_with_extensions, generate_key,
    negotiate_deflate, parse_response, parse_upgrade,
};

fn upgrade(request: &[u8]) -> Upgrade {
    match parse_upgrade(request) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn with_headers(extra: &str) -> Vec<u8> {
    format!(
        "GET /news HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn upgrade_keeps_extension_headers_in_order() {
    let up = upgrade(&with_headers(
        "Sec-WebSocket-Extensions: x-foo, permessage-deflate; client_max_window_bits\r\nsec-websocket-extensions:  permessage-deflate \r\nSec-WebSocket-Extensions:\r\n",
    ));
    assert_eq!(
        up.extensions,
        [
            "x-foo, permessage-deflate; client_max_window_bits",
            "permessage-deflate"
        ]
    );
    assert!(upgrade(&with_headers("")).extensions.is_empty());
}

#[test]
fn response_with_extension_and_protocol() {
    let up = upgrade(&with_headers(
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    ));
    let (params, answer) = negotiate_deflate(&up.extensions).unwrap();
    assert_eq!(
        params,
        DeflateParams {
            server_max_window_bits: 15,
            client_max_window_bits: 15
        }
    );
    let text = String::from_utf8(up.response_with(Some("chat"), Some(&answer))).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"
    );
    assert_eq!(up.response_with(None, None), up.response);
    assert_eq!(
        up.response_with(Some("chat"), None),
        up.response_with_protocol("chat")
    );
}

#[test]
fn client_offers_and_reads_the_answer() {
    let key = generate_key(7);
    let request = client_request_with_extensions("h:1", "/news", &key, CLIENT_OFFER);
    let text = String::from_utf8(request.clone()).unwrap();
    assert!(text.contains(&format!("\r\nSec-WebSocket-Extensions: {CLIENT_OFFER}\r\n")));
    assert!(text.ends_with("\r\n\r\n"));
    assert_eq!(
        client_request_with_extensions("h:1", "/news", &key, ""),
        client_request("h:1", "/news", &key)
    );

    let up = upgrade(&request);
    assert_eq!(up.extensions, [CLIENT_OFFER]);
    let (params, answer) = negotiate_deflate(&up.extensions).unwrap();
    let response = up.response_with(None, Some(&answer));
    assert_eq!(
        parse_response(&response, &key),
        Ok(ClientHandshakeStatus::Done {
            consumed: response.len()
        })
    );
    let accepted = accepted_extension(&response).unwrap();
    assert_eq!(accepted, answer);
    assert_eq!(client_deflate_params(&accepted), Some(params));

    let plain = upgrade(&client_request("h:1", "/news", &key)).response;
    assert_eq!(accepted_extension(&plain), None);
    assert_eq!(accepted_extension(&response[..response.len() - 2]), None);
}

#[test]
fn client_sees_the_negotiated_window() {
    let key = generate_key(8);
    let request = client_request_with_extensions(
        "h",
        "/echo",
        &key,
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
    );
    let up = upgrade(&request);
    let (params, answer) = negotiate_deflate(&up.extensions).unwrap();
    assert_eq!(
        params,
        DeflateParams {
            server_max_window_bits: 9,
            client_max_window_bits: 9
        }
    );
    let response = up.response_with(None, Some(&answer));
    let agreed = client_deflate_params(&accepted_extension(&response).unwrap()).unwrap();
    assert_eq!(agreed.server_max_window_bits, 8);
}
