//! Small safe wrappers over socket system calls on raw fds owned by the caller.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// `shutdown(fd, SHUT_RDWR)`, ignoring errors; a pending multishot recv then completes.
pub fn shutdown_socket(fd: RawFd) {
    // SAFETY: plain FFI call without pointers; a bad fd only yields an error.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// `shutdown(fd, SHUT_WR)`, ignoring errors: sends our FIN and keeps reading, so a
/// closing WebSocket can wait for the peer's close reply and FIN.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain FFI call without pointers; a bad fd only yields an error.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// The IP address of the peer of connected socket `fd`, if the kernel can tell.
pub fn peer_ip(fd: RawFd) -> Option<IpAddr> {
    // SAFETY: `fd` is an open socket the caller owns for the duration of this call; the
    // borrowed handle does not outlive it and is not closed here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let addr = socket2::SockRef::from(&borrowed).peer_addr().ok()?;
    addr.as_socket().map(|a| a.ip())
}

/// `close(fd)`, ignoring errors. The caller must own `fd` and not use it afterwards.
pub fn close_fd(fd: RawFd) {
    // SAFETY: plain FFI call without pointers; ownership is the caller's contract.
    unsafe {
        libc::close(fd);
    }
}

/// Sets `TCP_NODELAY` on a TCP socket.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    enable_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)
}

/// Sets the boolean socket option `name` at `level` to 1.
fn enable_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: passes a pointer to a live local with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const on).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A close-on-exec TCP client socket bound to `local_ip` (port chosen at connect time).
///
/// Sets `SO_REUSEADDR` and `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks the source port
/// per destination at `connect` and one source ip can open more than the ephemeral range.
/// With `v6` an IPv4 `local_ip` is bound as its v4-mapped IPv6 address; an IPv6 `local_ip`
/// without `v6` is rejected with `InvalidInput`.
pub fn tcp_socket_bound(local_ip: IpAddr, v6: bool) -> io::Result<OwnedFd> {
    let bind_ip = match (local_ip, v6) {
        (IpAddr::V4(ip), true) => IpAddr::V6(ip.to_ipv6_mapped()),
        (IpAddr::V6(_), false) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv6 local address needs an IPv6 socket",
            ));
        }
        (ip, _) => ip,
    };
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    set_bind_address_no_port(&socket)?;
    socket.bind(&SockAddr::from(SocketAddr::new(bind_ip, 0)))?;
    Ok(OwnedFd::from(socket))
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    enable_option(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::AsRawFd;

    #[test]
    fn nodelay_on_a_bad_fd_fails() {
        assert!(set_nodelay(-1).is_err());
    }

    #[test]
    fn shutdown_and_close_ignore_bad_fds() {
        shutdown_socket(-1);
        close_fd(-1);
    }

    #[test]
    fn bound_socket_accepts_nodelay() {
        let fd = tcp_socket_bound(IpAddr::V4(Ipv4Addr::LOCALHOST), false).unwrap();
        set_nodelay(fd.as_raw_fd()).unwrap();
    }

    #[test]
    fn v4_ip_on_v6_socket_is_mapped() {
        // Hosts without IPv6 may refuse the socket itself; only a bind error is a failure.
        match tcp_socket_bound(IpAddr::V4(Ipv4Addr::LOCALHOST), true) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EAFNOSUPPORT)),
        }
    }

    #[test]
    fn v6_ip_on_v4_socket_is_rejected() {
        let err = tcp_socket_bound(IpAddr::V6(Ipv6Addr::LOCALHOST), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
