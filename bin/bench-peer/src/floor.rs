//! The send floor (`--floor`): what one plain `send(2)` per delivery costs on the same
//! sockets, the lower bound every server's unbatched delivery is measured against.
//!
//! Subscribers are accepted and upgraded as usual, then their descriptors are listed here by
//! channel. A publish encodes the frame once and, on the admin request's own thread, calls
//! `send(fd, frame, MSG_DONTWAIT | MSG_NOSIGNAL)` once per subscriber: no queue, no task
//! wake-up, no coalescing, no buffering. A send that would block or is short is counted as
//! dropped (with paced traffic the socket buffers never fill).
//!
//! Calling contract: [`FloorTable::remove`] must be called before the subscriber's socket is
//! closed; a publish holds the table's lock for its whole loop, so it never writes to a
//! descriptor number that has been closed and reused.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Subscribers' descriptors by channel, and what publishing to them did.
#[derive(Default)]
pub struct FloorTable {
    channels: Mutex<HashMap<String, Vec<RawFd>>>,
    /// Frames written whole.
    pub sent: AtomicU64,
    /// Frames not written (or written short) because the socket buffer was full.
    pub dropped: AtomicU64,
}

impl FloorTable {
    /// Lists `fd` as a subscriber of `channel`.
    pub fn add(&self, channel: &str, fd: RawFd) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(channel.to_owned()).or_default().push(fd);
    }

    /// Removes `fd` from `channel`; call before the socket is closed.
    pub fn remove(&self, channel: &str, fd: RawFd) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fds) = channels.get_mut(channel) {
            fds.retain(|&listed| listed != fd);
            if fds.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Sends `payload` as one unmasked frame (text when `text`) to every subscriber of
    /// `channel` with one `send` each.
    pub fn publish(&self, channel: &str, payload: &[u8], text: bool) {
        let frame = encode_frame(payload, text);
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
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
            }
        }
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

/// One final, unmasked server frame (RFC 6455 §5.2) carrying `payload`.
fn encode_frame(payload: &[u8], text: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(if text { 0x81 } else { 0x82 });
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::encode_frame;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

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
            let frame = encode_frame(&vec![b'x'; len], text);
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
