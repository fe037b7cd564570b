//! Reactor tests against real sockets on 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::*;
use crate::{bind_reuseport, close_fd, shutdown_socket, tcp_socket_bound};

/// Upper bound for any test loop; reaching it is a failure, not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(20);
const TURN: Duration = Duration::from_millis(200);

fn reactor() -> Reactor {
    Reactor::new(ReactorConfig::default()).unwrap()
}

fn listener() -> (OwnedFd, SocketAddr) {
    let fd = bind_reuseport((Ipv4Addr::LOCALHOST, 0).into(), 1024).unwrap();
    let addr = TcpListener::from(fd.try_clone().unwrap())
        .local_addr()
        .unwrap();
    (fd, addr)
}

/// Runs `wait` turns, feeding every completion to `step`, until `step` returns true.
fn drive(reactor: &mut Reactor, mut step: impl FnMut(&mut Reactor, Completion) -> bool) {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        assert!(start.elapsed() < DEADLINE, "test loop did not finish");
        reactor.wait(TURN, &mut out).unwrap();
        for completion in out.drain(..) {
            if step(reactor, completion) {
                return;
            }
        }
    }
}

/// Accepts exactly `n` connections on `listener_fd` with one multishot arm.
fn accept_n(reactor: &mut Reactor, listener_fd: RawFd, n: usize) -> Vec<RawFd> {
    reactor.arm_accept(listener_fd, 7);
    let mut fds = Vec::new();
    drive(reactor, |_, completion| match completion {
        Completion::Accept {
            listener, result, ..
        } => {
            assert_eq!(listener, 7);
            fds.push(result.unwrap());
            fds.len() == n
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    fds
}

#[test]
fn multishot_accept_takes_200_connections_with_one_arm() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let fds = accept_n(&mut reactor, lfd.as_raw_fd(), 200);
    for &fd in &fds {
        // SAFETY: plain FFI on an fd we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
        close_fd(fd);
    }
    drop(clients);
}

#[test]
fn multishot_recv_reads_200_connections_through_the_ring() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let fds = accept_n(&mut reactor, lfd.as_raw_fd(), 200);

    let heap_before = reactor.heap_bytes();
    for (conn, &fd) in fds.iter().enumerate() {
        reactor.arm_recv(fd, conn as u32, 3);
    }
    assert_eq!(
        reactor.heap_bytes(),
        heap_before,
        "arming recv on 200 connections must not allocate"
    );
    // Accepted order is unknown: every client announces its index.
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("hello from {i:03}").as_bytes())
            .unwrap();
    }
    let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut complete = 0;
    drive(&mut reactor, |reactor, completion| match completion {
        Completion::Recv {
            conn,
            generation,
            result: Ok(buf),
            more,
        } => {
            assert_eq!(generation, 3);
            assert!(more);
            let data = got.entry(conn).or_default();
            data.extend_from_slice(reactor.buffer(buf.bid, buf.len));
            reactor.recycle(buf.bid);
            if data.len() == 14 {
                complete += 1;
            }
            complete == 200
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    let mut senders: Vec<String> = got
        .values()
        .map(|data| String::from_utf8(data.clone()).unwrap())
        .collect();
    senders.sort();
    let expected: Vec<String> = (0..200).map(|i| format!("hello from {i:03}")).collect();
    assert_eq!(senders, expected);
    assert_eq!(reactor.lent_buffers(), 0);
    assert_eq!(reactor.heap_bytes(), heap_before);
    for fd in fds {
        close_fd(fd);
    }
}

#[test]
fn enobufs_ends_the_recv_and_rearming_loses_nothing() {
    let mut reactor = Reactor::new(ReactorConfig {
        sq_entries: 64,
        buf_count: 4,
        buf_size: 64,
        ..ReactorConfig::default()
    })
    .unwrap();
    let (lfd, addr) = listener();
    let mut clients: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let fds = accept_n(&mut reactor, lfd.as_raw_fd(), 16);
    // Each client sends its index and then a long run; conn ids are accept positions.
    let payload = |i: usize| -> Vec<u8> {
        let mut bytes = vec![i as u8];
        bytes.extend((0..1000u32).map(|n| (n % 251) as u8));
        bytes
    };
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(&payload(i)).unwrap();
    }
    // Let all data sit in the socket buffers, then arm: the 4 buffers cannot hold it.
    std::thread::sleep(Duration::from_millis(50));
    for (conn, &fd) in fds.iter().enumerate() {
        reactor.arm_recv(fd, conn as u32, 0);
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); 16];
    let mut saw_enobufs = false;
    let mut done = 0;
    drive(&mut reactor, |reactor, completion| match completion {
        Completion::Recv {
            conn, result, more, ..
        } => {
            match result {
                Ok(buf) => {
                    assert!(buf.len > 0, "no EOF expected");
                    got[conn as usize].extend_from_slice(reactor.buffer(buf.bid, buf.len));
                    reactor.recycle(buf.bid);
                    if got[conn as usize].len() == 1001 {
                        done += 1;
                    }
                    if !more {
                        reactor.arm_recv(fds[conn as usize], conn, 0);
                    }
                }
                Err(errno) => {
                    assert_eq!(errno, libc::ENOBUFS);
                    assert!(!more, "ENOBUFS must end the multishot recv");
                    saw_enobufs = true;
                    reactor.arm_recv(fds[conn as usize], conn, 0);
                }
            }
            done == 16
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    assert!(saw_enobufs);
    assert!(reactor.stats().enobufs > 0);
    let mut senders: Vec<u8> = got.iter().map(|data| data[0]).collect();
    senders.sort();
    assert_eq!(senders, (0..16).collect::<Vec<u8>>());
    for data in &got {
        assert_eq!(data, &payload(usize::from(data[0])));
    }
    for fd in fds {
        close_fd(fd);
    }
}

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    }
}

#[test]
fn send_vectored_arrives_concatenated() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let mut client = TcpStream::connect(addr).unwrap();
    let fd = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    let parts: [&[u8]; 3] = [b"alpha-", b"beta-", b"gamma"];
    let iov: Vec<libc::iovec> = parts.iter().map(|part| iovec(part)).collect();
    reactor.send_vectored(fd, 5, 9, &iov);
    drop(iov);
    drive(&mut reactor, |_, completion| match completion {
        Completion::Send {
            conn,
            generation,
            result,
        } => {
            assert_eq!((conn, generation, result), (5, 9, Ok(16)));
            true
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    let mut received = [0u8; 16];
    client.read_exact(&mut received).unwrap();
    assert_eq!(&received, b"alpha-beta-gamma");
    close_fd(fd);
}

#[test]
fn send_errors_are_reported_not_dropped() {
    let mut reactor = reactor();
    let data = [0u8; 4];
    reactor.send_vectored(-1, 1, 1, &[iovec(&data)]);
    let too_many = vec![iovec(&data); MAX_IOVECS + 1];
    reactor.send_vectored(-1, 2, 1, &too_many);
    let mut errors = HashMap::new();
    drive(&mut reactor, |_, completion| match completion {
        Completion::Send { conn, result, .. } => {
            errors.insert(conn, result);
            errors.len() == 2
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(errors[&1], Err(libc::EBADF));
    assert_eq!(errors[&2], Err(libc::EMSGSIZE));
}

#[test]
fn many_sends_overflow_the_queue_without_loss() {
    let mut reactor = Reactor::new(ReactorConfig {
        sq_entries: 8,
        buf_count: 4,
        buf_size: 64,
        ..ReactorConfig::default()
    })
    .unwrap();
    let (lfd, addr) = listener();
    let mut client = TcpStream::connect(addr).unwrap();
    let fd = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    let bytes: Vec<u8> = (0..100u8).collect();
    // One single-byte send per byte: far more than the 8 SQ entries.
    for i in 0..100 {
        reactor.send_vectored(fd, 1, 0, &[iovec(&bytes[i..=i])]);
    }
    assert!(reactor.stats().sq_full_flushes > 0);
    let mut sent = 0;
    drive(&mut reactor, |_, completion| match completion {
        Completion::Send { result, .. } => {
            assert_eq!(result, Ok(1));
            sent += 1;
            sent == 100
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    let mut received = vec![0u8; 100];
    client.read_exact(&mut received).unwrap();
    // Sends on one socket may be reordered only if they went async; with small writes into an
    // empty socket buffer they complete inline in submission order.
    assert_eq!(received, bytes);
    assert!(reactor.stats().submitted >= 100);
    close_fd(fd);
}

#[test]
fn waker_from_another_thread_interrupts_wait() {
    let mut reactor = reactor();
    let waker = reactor.waker();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        waker.wake();
    });
    let mut out = Vec::new();
    let start = Instant::now();
    while out.is_empty() && start.elapsed() < DEADLINE {
        reactor.wait(Duration::from_secs(5), &mut out).unwrap();
    }
    assert_eq!(out, vec![Completion::Wake]);
    thread.join().unwrap();
    // The read is re-armed: a second wake is seen too, and an unbounded timeout is accepted.
    reactor.waker().wake();
    out.clear();
    while out.is_empty() {
        reactor.wait(Duration::MAX, &mut out).unwrap();
    }
    assert_eq!(out, vec![Completion::Wake]);
}

#[test]
fn frequent_wakes_are_coalesced_and_a_lone_completion_still_returns() {
    let mut reactor = reactor();
    let mut out = Vec::new();
    let start = Instant::now();
    // Each wait finds one wake pending: well over 5,000 arrivals a second, so after the
    // first window the waits gather (and each still returns with its one completion after
    // the 200 µs min-wait, long before the 5 s timeout).
    let mut rounds = 0;
    while reactor.stats().coalesced_waits < 20 && start.elapsed() < DEADLINE {
        wake_and_wait(&mut reactor, &mut out);
        assert_eq!(out, vec![Completion::Wake]);
        rounds += 1;
    }
    if reactor.coalescing.is_some() {
        assert!(reactor.stats().coalesced_waits >= 20, "{rounds} rounds");
    } else {
        assert_eq!(reactor.stats().coalesced_waits, 0);
    }
}

#[test]
fn a_gathering_wait_never_sleeps_past_its_timeout() {
    let mut reactor = Reactor::new(ReactorConfig {
        coalesce: Duration::from_secs(10),
        ..ReactorConfig::default()
    })
    .unwrap();
    if reactor.coalescing.is_none() {
        return;
    }
    // Fast wake rounds (over 1,000 arrivals a second) until the waits gather; each round
    // waits at most 1 ms.
    let mut out = Vec::new();
    let start = Instant::now();
    while reactor.stats().coalesced_waits == 0 && start.elapsed() < DEADLINE {
        reactor.waker().wake();
        out.clear();
        reactor.wait(Duration::from_millis(1), &mut out).unwrap();
    }
    assert!(reactor.stats().coalesced_waits > 0);
    out.clear();
    reactor.wait(Duration::ZERO, &mut out).unwrap();
    // Nothing pending: the wait ends at its 20 ms timeout, not at the 10 s min-wait.
    let before = reactor.stats().coalesced_waits;
    let waited = Instant::now();
    reactor.wait(Duration::from_millis(20), &mut out).unwrap();
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(reactor.stats().coalesced_waits, before + 1);
}

#[test]
fn sends_are_not_arrivals() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let _client = TcpStream::connect(addr).unwrap();
    let fd = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    let payload = b"x";
    let iov = [libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    }];
    for _ in 0..3 {
        reactor.send_vectored(fd, 1, 0, &iov);
    }
    reactor.ring.submit_and_wait(3).unwrap();
    let mut out = Vec::new();
    reactor.reap(&mut out);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out.iter().all(|c| matches!(c, Completion::Send { .. })),
        "{out:?}"
    );
    assert_eq!(reactor.arrivals, 0);
    reactor.waker().wake();
    reactor.ring.submit_and_wait(1).unwrap();
    out.clear();
    reactor.reap(&mut out);
    assert_eq!(out, vec![Completion::Wake]);
    assert_eq!(reactor.arrivals, 1);
    close_fd(fd);
}

#[test]
fn coalescing_off_never_gathers() {
    let mut reactor = Reactor::new(ReactorConfig {
        coalesce: Duration::ZERO,
        ..ReactorConfig::default()
    })
    .unwrap();
    let mut out = Vec::new();
    for _ in 0..200 {
        wake_and_wait(&mut reactor, &mut out);
    }
    assert_eq!(reactor.stats().coalesced_waits, 0);
}

/// Wakes the reactor and waits (up to 5 s per wait) until `out` holds what came back.
fn wake_and_wait(reactor: &mut Reactor, out: &mut Vec<Completion>) {
    reactor.waker().wake();
    out.clear();
    while out.is_empty() {
        reactor.wait(Duration::from_secs(5), out).unwrap();
    }
}

#[test]
fn client_close_gives_eof_and_server_shutdown_ends_recv() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let client_a = TcpStream::connect(addr).unwrap();
    let fd_a = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    let _client_b = TcpStream::connect(addr).unwrap();
    let fd_b = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    reactor.arm_recv(fd_a, 1, 0);
    reactor.arm_recv(fd_b, 2, 0);
    drop(client_a);
    // Submit the recvs so the shutdown hits an armed multishot recv.
    let mut early = Vec::new();
    reactor.wait(Duration::ZERO, &mut early).unwrap();
    shutdown_socket(fd_b);
    let mut ended = HashMap::new();
    let mut on_completion = |reactor: &mut Reactor, completion| match completion {
        Completion::Recv {
            conn, result, more, ..
        } => {
            let buf = result.unwrap();
            assert_eq!(
                buf,
                RecvBuf {
                    bid: NO_BUFFER,
                    len: 0
                }
            );
            assert!(!more);
            reactor.recycle(buf.bid);
            ended.insert(conn, ());
            ended.len() == 2
        }
        Completion::Wake | Completion::Accept { .. } => false,
        other => panic!("unexpected {other:?}"),
    };
    let done_early = early
        .into_iter()
        .any(|completion| on_completion(&mut reactor, completion));
    if !done_early {
        drive(&mut reactor, on_completion);
    }
    assert_eq!(reactor.lent_buffers(), 0);
    close_fd(fd_a);
    close_fd(fd_b);
}

#[test]
fn wait_zero_returns_without_completions() {
    let mut reactor = reactor();
    let mut out = Vec::new();
    for _ in 0..3 {
        reactor.wait(Duration::ZERO, &mut out).unwrap();
    }
    assert!(out.is_empty());
}

#[test]
fn connect_reaches_a_listener_and_reports_refusal() {
    let mut reactor = reactor();
    let (lfd, addr) = listener();
    let socket = tcp_socket_bound(Ipv4Addr::LOCALHOST.into(), false).unwrap();
    reactor.connect(socket.as_raw_fd(), addr, 11, 4);

    // A port with no listener: bind one, note it, close it.
    let closed_addr = listener().1;
    let refused = tcp_socket_bound(Ipv4Addr::LOCALHOST.into(), false).unwrap();
    reactor.connect(refused.as_raw_fd(), closed_addr, 12, 5);

    let mut results = HashMap::new();
    drive(&mut reactor, |_, completion| match completion {
        Completion::Connect {
            conn,
            generation,
            result,
        } => {
            results.insert(conn, (generation, result));
            results.len() == 2
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(results[&11], (4, Ok(())));
    assert_eq!(results[&12], (5, Err(libc::ECONNREFUSED)));
    let fd = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    close_fd(fd);
    // The slot is reused for the next connect.
    assert_eq!(reactor.connects.len(), 2);
    assert_eq!(reactor.free_connects.len(), 2);
}

#[test]
fn two_reactors_share_a_reuseport_port() {
    let mut first = reactor();
    let mut second = reactor();
    let (lfd_a, addr) = listener();
    let lfd_b = bind_reuseport(addr, 1024).unwrap();
    first.arm_accept(lfd_a.as_raw_fd(), 1);
    second.arm_accept(lfd_b.as_raw_fd(), 2);
    // SO_REUSEPORT hashes the 4-tuple: 64 clients all landing on one socket has odds 2^-63.
    let clients: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut counts = [0usize; 2];
    let start = Instant::now();
    let mut out = Vec::new();
    while counts[0] + counts[1] < 64 {
        assert!(start.elapsed() < DEADLINE, "accepts did not arrive");
        for (index, reactor) in [&mut first, &mut second].into_iter().enumerate() {
            reactor.wait(Duration::from_millis(10), &mut out).unwrap();
            for completion in out.drain(..) {
                if let Completion::Accept {
                    listener, result, ..
                } = completion
                {
                    assert_eq!(listener as usize, index + 1);
                    close_fd(result.unwrap());
                    counts[index] += 1;
                }
            }
        }
    }
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
    drop(clients);
}

#[test]
fn bad_configs_are_rejected() {
    for cfg in [
        ReactorConfig {
            buf_count: 3,
            ..ReactorConfig::default()
        },
        ReactorConfig {
            buf_count: 0,
            ..ReactorConfig::default()
        },
        ReactorConfig {
            buf_size: 0,
            ..ReactorConfig::default()
        },
        ReactorConfig {
            sq_entries: 0,
            ..ReactorConfig::default()
        },
    ] {
        assert!(matches!(Reactor::new(cfg), Err(ReactorError::Config(_))));
    }
}

#[test]
fn unknown_buffers_are_empty_and_recycling_them_is_a_no_op() {
    let mut reactor = reactor();
    assert!(reactor.buffer(0, 100).is_empty());
    assert!(reactor.buffer(NO_BUFFER, 100).is_empty());
    reactor.recycle(0);
    reactor.recycle(NO_BUFFER);
    assert_eq!(reactor.lent_buffers(), 0);
}

#[test]
fn memlock_error_names_the_limit() {
    let err = ReactorError::MemLock {
        what: "the provided buffer ring",
    };
    assert!(err.to_string().contains("RLIMIT_MEMLOCK"));
}

#[test]
fn plain_ring_fallback_accepts_receives_and_wakes() {
    let mut reactor = Reactor::with_setup(ReactorConfig::default(), RingSetup::Plain).unwrap();
    let (lfd, addr) = listener();
    let mut client = TcpStream::connect(addr).unwrap();
    let fd = accept_n(&mut reactor, lfd.as_raw_fd(), 1)[0];
    reactor.arm_recv(fd, 1, 1);
    client.write_all(b"plain").unwrap();
    let mut got = Vec::new();
    drive(&mut reactor, |reactor, completion| match completion {
        Completion::Recv {
            result: Ok(buf), ..
        } => {
            got.extend_from_slice(reactor.buffer(buf.bid, buf.len));
            reactor.recycle(buf.bid);
            got.len() == 5
        }
        Completion::Wake => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(got, b"plain");
    reactor.waker().wake();
    drive(&mut reactor, |_, completion| completion == Completion::Wake);
    let mut out = Vec::new();
    reactor.wait(Duration::ZERO, &mut out).unwrap();
    assert!(out.is_empty());
    close_fd(fd);
}
