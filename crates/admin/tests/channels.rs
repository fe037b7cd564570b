//! `GET /channels` and `GET /channels/{channel}` over a real loopback listener: guarded
//! like the writes (the names can name users), queries checked before any count is
//! read (a huge limit or a prefix with bytes no channel has is a 400), listings sorted
//! and cut at the limit with `more`, one channel's node and cluster counts and position.

mod support;

use std::net::SocketAddr;

use ringcast_admin::{AdminAccess, AdminLimits, AdminToken, MAX_LIMIT};
use ringcast_telemetry::build_recorder;
use serde_json::json;
use support::{Response, Server, exchange};

const TOKEN: &str = "0123456789abcdef-admin";

async fn get(addr: SocketAddr, target: &str, token: bool) -> Response {
    let auth = if token {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    exchange(addr, &head, b"").await
}

async fn server() -> Server {
    let recorder = build_recorder().unwrap();
    let access = AdminAccess {
        token: Some(AdminToken::parse(TOKEN).unwrap()),
        ..AdminAccess::default()
    };
    Server::start_with(recorder.handle(), access, AdminLimits::default()).await
}

#[tokio::test]
async fn listings_are_guarded_checked_sorted_and_bounded() {
    let server = server().await;
    let addr = server.addr;
    for target in ["/channels", "/channels/news"] {
        assert_eq!(get(addr, target, false).await.status, 401, "{target}");
    }

    let all = get(addr, "/channels", true).await;
    assert_eq!(all.status, 200);
    let body = all.json();
    assert_eq!(
        body["channels"].as_array().unwrap().len(),
        100,
        "default limit"
    );
    assert_eq!(body["more"], true);
    assert_eq!(
        body["channels"][0],
        json!({"channel": "c0000", "subscribers": 1})
    );

    let some = get(addr, "/channels?prefix=c009&limit=3", true)
        .await
        .json();
    assert_eq!(
        some,
        json!({"channels": [
            {"channel": "c0090", "subscribers": 91},
            {"channel": "c0091", "subscribers": 92},
            {"channel": "c0092", "subscribers": 93},
        ], "more": true})
    );
    let news = get(addr, "/channels?prefix=news", true).await.json();
    assert_eq!(
        news,
        json!({"channels": [{"channel": "news", "subscribers": 7}], "more": false})
    );
    let max = get(addr, &format!("/channels?limit={MAX_LIMIT}"), true).await;
    assert_eq!(max.status, 200);
    assert_eq!(max.json()["more"], false);

    let limits_before = server.occupancy.limits.lock().unwrap().len();
    for bad in [
        "/channels?limit=0",
        "/channels?limit=10001",
        "/channels?limit=18446744073709551616",
        "/channels?limit=999999999999999999999999999999999999",
        "/channels?limit=abc",
        "/channels?prefix=%FF%FE",
        "/channels?prefix=a%00b",
        "/channels?prefix=a%2Fb",
        "/channels?prefix=%E2%80%AE",
        "/channels?prefix=a&prefix=b",
        "/channels?cursor=3",
        "/channels?prefix=%zz",
    ] {
        let answer = get(addr, bad, true).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        assert!(answer.json()["error"].is_string(), "{bad}");
    }
    let long = format!("/channels?prefix={}", "x".repeat(256));
    assert_eq!(get(addr, &long, true).await.status, 400);
    assert_eq!(
        server.occupancy.limits.lock().unwrap().len(),
        limits_before,
        "no bad query reached the counts"
    );
}

#[tokio::test]
async fn one_channel_has_its_node_and_cluster_counts_and_position() {
    let server = server().await;
    let addr = server.addr;
    let news = get(addr, "/channels/news", true).await;
    assert_eq!(news.status, 200);
    assert_eq!(
        news.json(),
        json!({"channel": "news", "subscribers_node": 7, "subscribers_cluster": 9,
               "position": "AbCdEfGh:12"})
    );
    let empty = get(addr, "/channels/nobody", true).await.json();
    assert_eq!(
        empty,
        json!({"channel": "nobody", "subscribers_node": 0, "subscribers_cluster": 2,
               "position": null})
    );
    let split = get(addr, "/channels/split", true).await.json();
    assert_eq!(split["subscribers_cluster"], serde_json::Value::Null);
    assert_eq!(split["cluster_error"], "Redis is unreachable");
    for bad in ["/channels/bad%20name", "/channels/%FF", "/channels/a%2Fb"] {
        assert_eq!(get(addr, bad, true).await.status, 400, "{bad}");
    }
    let long = format!("/channels/{}", "x".repeat(256));
    assert_eq!(get(addr, &long, true).await.status, 400);
}
