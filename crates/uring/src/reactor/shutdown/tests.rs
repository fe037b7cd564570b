//! Teardown tests against real sockets on 127.0.0.1: a send blocked on a peer that does not
//! read is cancelled and reaped before its buffer may be reused, through the explicit call and
//! through `Drop`, on both ring setups.
//!
//! The kernel's reads of user memory are invisible to AddressSanitizer and Miri, so instead
//! of freeing the buffer the tests overwrite it once the reactor says it may, and check that
//! the peer never receives the overwritten bytes. (With the buffer reused *before* the reap,
//! as the gateway's old teardown order did, the plain-ring cases fail: the send goes on
//! reading the buffer while the peer drains.)

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use super::CancelOutcome;
use crate::reactor::{Completion, Reactor, ReactorConfig, RingSetup};

/// Bytes of the blocked send: far more than the small socket buffers below can take.
const PENDING: usize = 8 << 20;
/// Socket buffer sizes that make the send block after a few hundred KiB.
const SMALL_BUFFER: usize = 64 << 10;
/// What the send's buffer holds while the kernel may read it.
const SENT: u8 = 0xAA;
/// What the caller writes into the buffer once the reactor says it may.
const REUSED: u8 = 0x55;
/// Turns without a completion after which a send counts as blocked on the peer.
const BLOCKED_TURNS: usize = 3;
/// Upper bound on the short sends before one blocks.
const MAX_SENDS: usize = 64;
/// Pause of the slow consumer after each read of at most 64 KiB.
const SLOW_READ_PAUSE: Duration = Duration::from_millis(1);
/// Upper bound for reading the client side to its end.
const READ_DEADLINE: Duration = Duration::from_secs(20);

/// How the reactor is torn down.
#[derive(Debug, Clone, Copy)]
enum Teardown {
    /// `cancel_all_and_reap`, then the reactor is kept until the end of the test.
    Explicit,
    /// Dropping the reactor.
    Drop,
}

/// A connected pair with small buffers: a client that never reads, and the server's socket.
fn stalled_pair() -> (TcpStream, OwnedFd) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    client.set_recv_buffer_size(SMALL_BUFFER).unwrap();
    client.connect(&addr.into()).unwrap();
    let (server, _) = listener.accept().unwrap();
    SockRef::from(&server)
        .set_send_buffer_size(SMALL_BUFFER)
        .unwrap();
    (TcpStream::from(client), OwnedFd::from(server))
}

/// Everything the client receives until the server's FIN, pausing `pause` after each read.
fn read_to_end(mut client: TcpStream, pause: Duration) -> Vec<u8> {
    client.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        assert!(start.elapsed() < READ_DEADLINE, "no EOF from the server");
        match client.read(&mut chunk) {
            Ok(0) => return received,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                std::thread::sleep(pause);
            }
            Err(err) => panic!("reading the client side: {err}"),
        }
    }
}

/// Sends the rest of `data` again after each short send, until one send stays pending for
/// several turns because the peer does not read. Returns the bytes completed as sent.
fn send_until_blocked(reactor: &mut Reactor, fd: RawFd, data: &mut [u8]) -> usize {
    let mut sent = 0;
    let mut out = Vec::new();
    for _ in 0..MAX_SENDS {
        let rest = &mut data[sent..];
        let iov = libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        };
        reactor.send_vectored(fd, 1, 0, &[iov]);
        let mut completed = None;
        for _ in 0..BLOCKED_TURNS {
            reactor.wait(Duration::from_millis(20), &mut out).unwrap();
            for completion in out.drain(..) {
                match completion {
                    Completion::Send { result, .. } => completed = Some(result.unwrap()),
                    Completion::Wake => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            if completed.is_some() {
                break;
            }
        }
        match completed {
            Some(n) => sent += n as usize,
            None => return sent,
        }
        assert!(
            sent < data.len(),
            "the peer took all {PENDING} bytes without reading"
        );
    }
    panic!("no send blocked after {MAX_SENDS} short sends");
}

fn blocked_send_is_reaped_before_its_buffer_is_reused(setup: RingSetup, teardown: Teardown) {
    let mut reactor = Reactor::with_setup(ReactorConfig::default(), setup).unwrap();
    let (client, server) = stalled_pair();
    let fd = server.as_raw_fd();
    let mut data = vec![SENT; PENDING];
    reactor.arm_recv(fd, 1, 0);
    let sent = send_until_blocked(&mut reactor, fd, &mut data);
    assert_eq!(reactor.in_flight(), 3, "wake read, multishot recv, send");
    // From now on the peer reads slowly, so the send keeps finding room while it is torn
    // down: had the teardown left it in flight, it would go on reading `data`.
    let reader = std::thread::spawn(move || read_to_end(client, SLOW_READ_PAUSE));

    let completions_before = reactor.stats().completions;
    let kept = match teardown {
        Teardown::Explicit => {
            let outcome = reactor.cancel_all_and_reap(Duration::from_secs(5));
            assert_eq!(outcome, CancelOutcome::AllReaped);
            assert_eq!(reactor.in_flight(), 0);
            assert!(
                reactor.stats().completions >= completions_before + 3,
                "every one of the three operations delivered its final completion"
            );
            Some(reactor)
        }
        Teardown::Drop => {
            drop(reactor);
            None
        }
    };

    // The reactor said the kernel is done with `data`: reuse it while the client reads
    // everything that was or will ever be sent. Any REUSED byte would be the kernel reading
    // the buffer after it was given back.
    data.fill(REUSED);
    drop(data);
    drop(server);
    let received = reader.join().unwrap();
    assert!(
        received.len() >= sent,
        "every byte completed as sent arrived"
    );
    assert!(
        received.len() < PENDING,
        "the blocked send was cut short by the cancel"
    );
    let first_reused = received.iter().position(|&b| b != SENT);
    assert_eq!(
        first_reused,
        None,
        "byte {first_reused:?} of {} was read from the buffer after the reap",
        received.len()
    );
    drop(kept);
}

#[test]
fn cancel_all_and_reap_ends_a_blocked_send_before_its_buffer_is_reused() {
    blocked_send_is_reaped_before_its_buffer_is_reused(RingSetup::FastPaths, Teardown::Explicit);
}

#[test]
fn plain_ring_cancel_all_and_reap_ends_a_blocked_send_before_its_buffer_is_reused() {
    blocked_send_is_reaped_before_its_buffer_is_reused(RingSetup::Plain, Teardown::Explicit);
}

#[test]
fn dropping_the_reactor_ends_a_blocked_send_before_its_buffer_is_reused() {
    blocked_send_is_reaped_before_its_buffer_is_reused(RingSetup::FastPaths, Teardown::Drop);
}

#[test]
fn dropping_a_plain_reactor_ends_a_blocked_send_before_its_buffer_is_reused() {
    blocked_send_is_reaped_before_its_buffer_is_reused(RingSetup::Plain, Teardown::Drop);
}

#[test]
fn queued_submissions_are_submitted_and_reaped_too() {
    let mut reactor = Reactor::new(ReactorConfig::default()).unwrap();
    let (client, server) = stalled_pair();
    let data = *b"queued, never waited for";
    let iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // Nothing is submitted yet: the wake read and this send only sit in the queue.
    reactor.send_vectored(server.as_raw_fd(), 2, 0, &[iov]);
    assert_eq!(reactor.in_flight(), 2);
    assert_eq!(reactor.stats().submitted, 0);
    assert_eq!(
        reactor.cancel_all_and_reap(Duration::from_secs(5)),
        CancelOutcome::AllReaped
    );
    assert_eq!(reactor.in_flight(), 0);
    assert!(reactor.stats().submitted >= 2);
    drop(server);
    let received = read_to_end(client, Duration::ZERO);
    assert!(
        received.is_empty() || received == data,
        "a queued send goes out whole or not at all: {received:?}"
    );
}

#[test]
fn sockets_accepted_during_the_reap_are_closed() {
    let mut reactor = Reactor::new(ReactorConfig::default()).unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // The multishot accept is submitted by the reap itself and takes the waiting connection.
    reactor.arm_accept(listener.as_raw_fd(), 1);
    assert_eq!(
        reactor.cancel_all_and_reap(Duration::from_secs(5)),
        CancelOutcome::AllReaped
    );
    assert!(
        read_to_end(client, Duration::ZERO).is_empty(),
        "the accepted socket was closed"
    );
    // Nothing is re-armed: another wait finds nothing in flight.
    let mut out = Vec::new();
    reactor.wait(Duration::ZERO, &mut out).unwrap();
    assert_eq!(reactor.in_flight(), 0);
}
