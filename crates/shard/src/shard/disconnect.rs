//! The admin API's disconnect on one shard ([`ShardMsg::Disconnect`]): every open
//! connection the target names is closed with last words (WebSocket 4003
//! `disconnected`, SSE `event: disconnected`, long poll `403 Forbidden`), counted as
//! `ringcast_connections_closed_total{reason="disconnected"}`, and how many were closed
//! goes back to the sidecar. What was queued for them before still goes out first.
//!
//! By `sub`: the connections admitted with a token whose grant names it (WebSocket, SSE
//! and long poll alike). No index by user is kept (it would cost every connection
//! memory), so this scans the shard's connection table: O(connections) per request,
//! which suits a rare, authenticated admin call. By channel: the channel's local
//! subscribers, O(subscribers).
//!
//! [`ShardMsg::Disconnect`]: crate::ShardMsg::Disconnect

use super::Shard;
use super::last_words::Farewell;
use crate::conn::{Conn, Phase};
use crate::ids::ConnId;
use crate::messages::DisconnectTarget;

impl Shard {
    /// Closes every open connection `target` names; returns how many.
    pub(super) fn disconnect(&mut self, target: &DisconnectTarget, now_ms: u64) -> u64 {
        let open = |conn: &Conn| conn.phase == Phase::Open;
        let matched: Vec<ConnId> = match target {
            DisconnectTarget::Sub(sub) => self
                .conns
                .iter()
                .filter(|(_, conn)| open(conn) && grant_sub(conn) == Some(&**sub))
                .map(|(id, _)| id)
                .collect(),
            DisconnectTarget::Channel(channel) => self
                .channels
                .subscribers(channel)
                .unwrap_or_default()
                .iter()
                .filter_map(|&slot| self.conns.get_by_idx(slot))
                .filter(|(_, conn)| open(conn))
                .map(|(id, _)| id)
                .collect(),
        };
        let mut closed = 0;
        for id in matched {
            if self.close_with_last_words(id, Farewell::Disconnected, now_ms) {
                closed += 1;
            }
        }
        closed
    }
}

/// The `sub` of the token a connection was admitted with, if it named one.
fn grant_sub(conn: &Conn) -> Option<&str> {
    conn.grant()?.grant.sub.as_deref()
}
