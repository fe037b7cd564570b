//! What the admin crate's tests share: a fake broker and disconnector, a server on a
//! loopback port, and raw HTTP/1.1 exchanges with it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ringcast_admin::{
    AdminAccess, AdminLimits, AdminState, ChannelFuture, ChannelInfo, DisconnectFuture,
    DisconnectOutcome, Disconnector, Occupancy, admin_router, serve_admin,
};
use ringcast_broker::{Broker, BrokerError, DisconnectTarget, PublishFuture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest publish body the test servers take.
pub const MAX: usize = 16;

/// Records publishes; the channel "down" is unavailable, "partial" reaches this node only.
/// Records cluster disconnects; the sub "down" cannot reach the other nodes.
#[derive(Default)]
pub struct FakeBroker {
    pub calls: AtomicUsize,
    pub last: Mutex<Option<(String, Bytes, bool)>>,
    pub disconnects: Mutex<Vec<DisconnectTarget>>,
}

impl Broker for FakeBroker {
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match channel {
            "down" => Err(BrokerError::Unavailable("broker down".to_owned())),
            "partial" => Err(BrokerError::RemoteUnavailable("redis down".to_owned())),
            _ => {
                *self.last.lock().unwrap() = Some((channel.to_owned(), payload, binary));
                Ok(())
            }
        }
    }

    fn subscribe(&self, _channel: &str) {}

    fn unsubscribe(&self, _channel: &str) {}

    fn disconnect_cluster(&self, target: &DisconnectTarget) -> PublishFuture {
        self.disconnects.lock().unwrap().push(target.clone());
        let result = match target {
            DisconnectTarget::Sub(sub) if sub == "down" => {
                Err(BrokerError::Unavailable("redis down".to_owned()))
            }
            _ => Ok(()),
        };
        Box::pin(std::future::ready(result))
    }
}

/// Records disconnects; closes 2 connections, and for the sub "slow" only 1 of 2
/// shards answers in time.
#[derive(Default)]
pub struct FakeDisconnector {
    pub targets: Mutex<Vec<DisconnectTarget>>,
}

impl Disconnector for FakeDisconnector {
    fn disconnect(&self, target: DisconnectTarget) -> DisconnectFuture {
        let complete = target != DisconnectTarget::Sub("slow".to_owned());
        self.targets.lock().unwrap().push(target);
        let outcome = DisconnectOutcome {
            disconnected: if complete { 2 } else { 1 },
            complete,
        };
        Box::pin(std::future::ready(outcome))
    }
}

/// Channels `c0000` … `c0099` with `i + 1` subscribers each, and `news` with 7 (a
/// cluster count of 9 and a position); records every listing's limit.
#[derive(Default)]
pub struct FakeOccupancy {
    pub limits: Mutex<Vec<usize>>,
}

impl FakeOccupancy {
    fn channels() -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            (0..100u64).map(|i| (format!("c{i:04}"), i + 1)).collect();
        all.push(("news".to_owned(), 7));
        all
    }
}

impl Occupancy for FakeOccupancy {
    fn list(&self, prefix: &str, limit: usize) -> Vec<(String, u64)> {
        self.limits.lock().unwrap().push(limit);
        Self::channels()
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .take(limit)
            .collect()
    }

    fn channel(&self, channel: &str) -> ChannelFuture {
        let count = Self::channels()
            .into_iter()
            .find_map(|(name, count)| (name == channel).then_some(count))
            .unwrap_or(0);
        let info = ChannelInfo {
            subscribers_node: count,
            subscribers_cluster: Some(if channel == "split" {
                Err("Redis is unreachable".to_owned())
            } else {
                Ok(count + 2)
            }),
            position: Some((channel == "news").then(|| "AbCdEfGh:12".to_owned())),
        };
        Box::pin(std::future::ready(info))
    }
}

/// One parsed response.
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Writes `head` (ending in the blank line) and `body`, reads to EOF and parses.
pub async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and stop reading before the body is all sent.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

/// Splits a raw response into status, head and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = decode_body(&head, &raw[split + 4..]);
    Response { status, head, body }
}

/// Undoes chunked transfer encoding when the response uses it.
fn decode_body(head: &str, mut raw: &[u8]) -> Vec<u8> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return raw.to_vec();
    }
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// An admin server on a loopback port in front of a [`FakeBroker`].
pub struct Server {
    pub addr: SocketAddr,
    pub broker: Arc<FakeBroker>,
    pub disconnector: Arc<FakeDisconnector>,
    pub occupancy: Arc<FakeOccupancy>,
    pub ready: Arc<AtomicBool>,
    pub broker_up: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// A server with `access` and `limits`.
    pub async fn start_with(
        prometheus: metrics_exporter_prometheus::PrometheusHandle,
        access: AdminAccess,
        limits: AdminLimits,
    ) -> Self {
        Self::start_serving(prometheus, access, limits, None).await
    }

    /// A server with `limits` speaking only TLS with `tls`.
    pub async fn start_tls(
        prometheus: metrics_exporter_prometheus::PrometheusHandle,
        limits: AdminLimits,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::start_serving(prometheus, AdminAccess::default(), limits, Some(tls)).await
    }

    async fn start_serving(
        prometheus: metrics_exporter_prometheus::PrometheusHandle,
        access: AdminAccess,
        limits: AdminLimits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let broker = Arc::new(FakeBroker::default());
        let disconnector = Arc::new(FakeDisconnector::default());
        let occupancy = Arc::new(FakeOccupancy::default());
        let ready = Arc::new(AtomicBool::new(true));
        let broker_up = Arc::new(AtomicBool::new(true));
        let state = AdminState {
            broker: broker.clone(),
            ready: ready.clone(),
            prometheus,
            max_message_bytes: MAX,
            broker_up: Some(broker_up.clone()),
            access,
            disconnector: disconnector.clone(),
            occupancy: occupancy.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_admin(
            listener,
            admin_router(state),
            limits,
            tls,
            shutdown,
        ));
        Server {
            addr,
            broker,
            disconnector,
            occupancy,
            ready,
            broker_up,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}
