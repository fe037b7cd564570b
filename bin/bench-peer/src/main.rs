//! `bench-peer`: the benchmark baseline, a plain tokio + tokio-tungstenite server with the same
//! external interface as ringcast (`/<channel>` subscribes, `/echo` echoes, admin
//! `POST /publish/{channel}` and `GET /metrics`). It is what a competent tokio user would
//! write, tuned only where the defaults are known to be absurd (128 KiB read buffer per
//! connection, 128-entry listen backlog). With `--floor` it is instead the send floor: one
//! plain `send(2)` per delivery on the same sockets (see [`floor`]).

mod admin;
mod floor;
mod registry;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::TcpSocket;

use crate::registry::Registry;

/// Listen backlog; tokio's default of 128 stalls connection ramps on SYN retransmits.
const LISTEN_BACKLOG: u32 = 4096;

/// Command line of bench-peer.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "tokio-tungstenite baseline server for ringcast benchmarks"
)]
struct Cli {
    /// WebSocket listen address; a port range (`127.0.0.1:11000-11003`) opens one listener per port.
    #[arg(long, default_value = "127.0.0.1:11000")]
    listen: String,
    /// Admin HTTP address (`POST /publish/{channel}`, `GET /metrics`).
    #[arg(long, default_value = "127.0.0.1:9190")]
    admin: SocketAddr,
    /// tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Deliver with one plain `send(2)` per subscriber on the publishing thread (the kernel's
    /// floor for unbatched delivery) instead of tokio-tungstenite's broadcast and tasks.
    #[arg(long)]
    floor: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listen = parse_listen(&cli.listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let registry = if cli.floor {
        Registry::floor()
    } else {
        Registry::default()
    };
    runtime.block_on(serve(listen, cli.admin, Arc::new(registry)))
}

async fn serve(
    listen: Vec<SocketAddr>,
    admin: SocketAddr,
    registry: Arc<Registry>,
) -> anyhow::Result<()> {
    for addr in listen {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr).with_context(|| format!("bind {addr}"))?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        tokio::spawn(ws::accept_loop(listener, Arc::clone(&registry)));
    }
    let admin_listener = tokio::net::TcpListener::bind(admin)
        .await
        .with_context(|| format!("bind admin {admin}"))?;
    axum::serve(admin_listener, admin::router(registry)).await?;
    Ok(())
}

/// Parses `IP:PORT` or `IP:FIRST-LAST` into one address per port.
fn parse_listen(spec: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let (ip, ports) = spec
        .rsplit_once(':')
        .context("--listen must be IP:PORT or IP:FIRST-LAST")?;
    let ip: IpAddr = ip.parse().with_context(|| format!("bad IP in {spec}"))?;
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>()?, b.parse::<u16>()?),
        None => {
            let port = ports.parse::<u16>()?;
            (port, port)
        }
    };
    if first > last {
        bail!("empty port range in {spec}");
    }
    Ok((first..=last)
        .map(|port| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_port_and_range() {
        assert_eq!(parse_listen("127.0.0.1:11000").unwrap().len(), 1);
        let range = parse_listen("127.0.0.1:11000-11003").unwrap();
        assert_eq!(range.len(), 4);
        assert_eq!(range[3].port(), 11003);
    }

    #[test]
    fn rejects_bad_listen_specs() {
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("127.0.0.1:11003-11000").is_err());
        assert!(parse_listen("host:1").is_err());
        assert!(parse_listen("127.0.0.1:70000").is_err());
    }
}
