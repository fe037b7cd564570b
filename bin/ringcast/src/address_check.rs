//! Start-up check that nobody else already serves an address we are about to listen on.
//!
//! The shards' listeners use SO_REUSEPORT, so a second gateway (or any other
//! SO_REUSEPORT server of the same user) on the same port would bind without complaint
//! and silently take a share of the clients. A probe socket without SO_REUSEPORT fails to
//! bind with EADDRINUSE while anything listens there; it has SO_REUSEADDR, so
//! connections of an earlier run lingering in TIME_WAIT do not count. The probe is
//! closed before the real listeners are created.

use anyhow::{Context, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;

/// What an address is for, to name it in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A `--listen` WebSocket address.
    Listen,
    /// The `--admin` address.
    Admin,
}

impl Purpose {
    /// The flag that sets the address.
    fn label(self) -> &'static str {
        match self {
            Purpose::Listen => "--listen",
            Purpose::Admin => "--admin",
        }
    }
}

/// Fails when some process already listens on `addr` (or a wildcard address covering
/// it).
pub fn ensure_unserved(addr: SocketAddr, purpose: Purpose) -> anyhow::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("creating a probe socket")?;
    probe
        .set_reuse_address(true)
        .context("setting SO_REUSEADDR on a probe socket")?;
    match probe.bind(&SockAddr::from(addr)) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EADDRINUSE) => bail!(
            "{} {addr}: another process already listens there (another ringcast?); \
             refusing to share it and take part of its clients",
            purpose.label()
        ),
        Err(err) => Err(err).with_context(|| format!("{} {addr}", purpose.label())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn a_served_address_is_refused_and_a_free_one_passes() {
        let served = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = served.local_addr().unwrap();
        let err = ensure_unserved(addr, Purpose::Listen).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(err.to_string().contains("--listen"), "{err}");
        drop(served);
        ensure_unserved(addr, Purpose::Admin).unwrap();
    }

    #[test]
    fn a_reuseport_listener_of_another_process_is_refused() {
        let other = TcpListener::from(
            ringcast_uring::bind_reuseport((Ipv4Addr::LOCALHOST, 0).into(), 16).unwrap(),
        );
        let addr = other.local_addr().unwrap();
        assert!(ensure_unserved(addr, Purpose::Listen).is_err());
        drop(other);
    }
}
