//! The send floor (`--floor`): what one plain `send(2)` per delivery costs on the same
//! sockets, the lower bound every server's unbatched delivery is measured against.
//!
//! Subscribers are accepted and upgraded as usual, then their descriptors are listed here by
//! channel. A publish encodes the frame once and, on the admin request's own thread, calls
//! `send(fd, frame, MSG_DONTWAIT | MSG_NOSIGNAL)` once per subscriber: no queue, no task
//! wake-up, no coalescing, no buffering. A send that would block is counted as dropped; a
//! short one too, and the socket is shut down (the rest of the frame is lost, so the
//! stream is no longer valid WebSocket): the client sees its connection end, and the load
//! generator counts it.
//!
//! Calling contract: a subscriber is listed through a [`Listed`] guard dropped before its
//! socket is closed (declare the guard after the stream). Publishes hold the table's read
//! lock for their whole loop and listing changes take the write lock, so a publish never
//! writes to a descriptor number that has been closed and reused; publishes to different
//! channels run in parallel.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_tungstenite::tungstenite::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Subscribers' descriptors by channel, and what publishing to them did.
#[derive(Default)]
pub struct FloorTable {
    channels: RwLock<HashMap<String, Vec<RawFd>>>,
    /// Frames written whole.
    pub sent: AtomicU64,
    /// Frames not written (or written short) because the socket buffer was full.
    pub dropped: AtomicU64,
}

/// A listed subscriber; dropping it unlists the descriptor (before the socket closes).
pub struct Listed<'a> {
    table: &'a FloorTable,
    channel: &'a str,
    fd: RawFd,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.table.remove(self.channel, self.fd);
    }
}

impl FloorTable {
    /// Lists `fd` as a subscriber of `channel` until the returned guard is dropped.
    pub fn add<'a>(&'a self, channel: &'a str, fd: RawFd) -> Listed<'a> {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels.entry(channel.to_owned()).or_default().push(fd);
        Listed {
            table: self,
            channel,
            fd,
        }
    }

    fn remove(&self, channel: &str, fd: RawFd) {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        if let Some(fds) = channels.get_mut(channel) {
            fds.retain(|&listed| listed != fd);
            if fds.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Sends `payload` as one unmasked frame (text when `text`) to every subscriber of
    /// `channel` with one `send` each.
    pub fn publish(&self, channel: &str, payload: Bytes, text: bool) {
        let frame = encode_frame(payload, text);
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let Some(fds) = channels.get(channel) else {
            return;
        };
        let (mut sent, mut dropped) = (0, 0);
        for &fd in fds {
            // SAFETY: `fd` is an open socket while it is listed (see the calling contract) and
            // `frame` is a live buffer of `frame.len()` bytes.
            let n = unsafe {
                libc::send(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if usize::try_from(n).is_ok_and(|n| n == frame.len()) {
                sent += 1;
            } else {
                dropped += 1;
                if n > 0 {
                    // SAFETY: as above; shutting a listed socket down only ends its stream.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        }
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

/// One final, unmasked server frame carrying `payload`, formatted by tungstenite.
fn encode_frame(payload: Bytes, text: bool) -> Vec<u8> {
    let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
    let frame = Frame::message(payload, opcode, true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("formatting into a Vec does not fail");
    out
}

#[cfg(test)]
mod tests {
    use super::{Bytes, Data, OpCode, encode_frame};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    /// Each length class decodes with tungstenite's parser to the same opcode and length.
    #[test]
    fn frames_parse_back() {
        for (len, text) in [
            (0, true),
            (64, true),
            (125, false),
            (126, true),
            (70_000, false),
        ] {
            let frame = encode_frame(Bytes::from(vec![b'x'; len]), text);
            let mut cursor = std::io::Cursor::new(frame.as_slice());
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert!(header.mask.is_none());
            assert_eq!(length, len as u64);
            assert_eq!(cursor.position() as usize + len, frame.len());
            let expected = if text { Data::Text } else { Data::Binary };
            assert_eq!(header.opcode, OpCode::Data(expected));
        }
    }
}
