//! What received bytes do to a connection: before the 101 they are (part of) the handshake
//! response, which once complete opens the connection and hands whatever followed it to the
//! frame decoder; after it they are frames.

use std::time::Duration;

use ringcast_proto::{
    ClientHandshakeStatus, ProtocolError, accepted_extension, parse_response, retry_after_secs,
};

use crate::conn::{Link, MessageCtx, Slot, State, flag};

/// What received bytes did to a connection.
pub(crate) enum Step {
    /// Nothing decided yet.
    Pending,
    /// The handshake failed.
    Failed,
    /// The server is over its handshake budget: `503` with `Retry-After`; come back after
    /// this long.
    Deferred(Duration),
    /// The handshake completed (the connect left flight); what followed it was decoded.
    Opened(Result<(), ProtocolError>),
    /// Frames were decoded (or the protocol was broken).
    Fed(Result<(), ProtocolError>),
}

/// Feeds frame bytes to the connection's decoder.
pub(crate) fn feed(
    slot: &mut Slot,
    bytes: &mut [u8],
    ctx: &mut MessageCtx<'_>,
) -> Result<(), ProtocolError> {
    let Slot { decoder, link } = slot;
    decoder.feed(bytes, &mut |message| link.on_message(message, ctx))
}

/// Handshake response bytes: parse the 101; once complete, open the connection and feed
/// whatever followed the response.
pub(crate) fn handshake_bytes(slot: &mut Slot, data: &mut [u8], ctx: &mut MessageCtx<'_>) -> Step {
    let link = &mut slot.link;
    let Some(hs) = link.handshake.as_mut() else {
        return Step::Failed;
    };
    if !hs.response.is_empty() {
        hs.response.extend_from_slice(data);
    }
    // The response so far: this receive alone, or everything gathered before it too.
    let received: &[u8] = if hs.response.is_empty() {
        data
    } else {
        &hs.response
    };
    let consumed = match parse_response(received, &hs.key) {
        Ok(ClientHandshakeStatus::Partial) => {
            if hs.response.is_empty() {
                hs.response.extend_from_slice(data);
            }
            return Step::Pending;
        }
        Err(_) => {
            return match retry_after_secs(received) {
                Some(secs) => Step::Deferred(Duration::from_secs(secs)),
                None => Step::Failed,
            };
        }
        Ok(ClientHandshakeStatus::Done { consumed }) => consumed,
    };
    let Some(hs) = link.handshake.take() else {
        return Step::Failed;
    };
    let mut hs = *hs;
    let head = if hs.response.is_empty() {
        &data[..consumed]
    } else {
        &hs.response[..consumed]
    };
    if accepted_extension(head).is_some() {
        slot.decoder.enable_deflate();
    }
    let setup_ns = ctx.now.saturating_duration_since(hs.started).as_nanos() as u64;
    open_connection(&mut slot.link, ctx, setup_ns);
    let leftover: &mut [u8] = if hs.response.is_empty() {
        &mut data[consumed..]
    } else {
        &mut hs.response[consumed..]
    };
    if leftover.is_empty() {
        return Step::Opened(Ok(()));
    }
    Step::Opened(feed(slot, leftover, ctx))
}

/// Bookkeeping of a successful handshake.
fn open_connection(link: &mut Link, ctx: &mut MessageCtx<'_>, setup_ns: u64) {
    let figures = &mut *ctx.figures;
    figures.counters.connected += 1;
    figures.counters.open += 1;
    if link.has(flag::RECONNECT) {
        figures.counters.reconnects += 1;
        figures.reconnect_latency.record_ns(setup_ns);
    } else {
        figures.connect_latency.record_ns(setup_ns);
    }
    link.state = State::Open;
    if let Some(resume) = ctx.resume.as_deref_mut() {
        resume.on_open();
        if std::mem::replace(&mut resume.opened, true) {
            // A resumption: the expectations came over from the connection before it.
            return;
        }
    }
    match ctx.expect_messages {
        Some(0) => {
            link.flags |= flag::COMPLETE;
            figures.counters.conns_complete += 1;
        }
        Some(_) => {
            link.flags |= flag::AWAITING;
            *ctx.awaiting += 1;
        }
        None => {}
    }
}
