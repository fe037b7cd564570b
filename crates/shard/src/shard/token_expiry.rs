//! Token expiry of open connections: a connection admitted with a token is closed at the
//! token's `exp`, whatever its transport. A WebSocket gets close code 4001 "token
//! expired", an event stream a last `event: token_expired` before it ends, a held long
//! poll the answer `401 token expired`; each is counted as
//! `ringcast_connections_closed_total{reason="token_expired"}`. What was queued before
//! the expiry still goes out first (the words per transport are in `last_words`).
//!
//! `exp` is unix seconds; it becomes a deadline on the shard clock through
//! `ShardConfig::unix_ms_at_zero`. The timer wheel only spans the longest connection
//! timer, so a later deadline is re-armed in steps of at most that span.

use super::Shard;
use super::last_words::Farewell;
use crate::conn::Phase;
use crate::ids::ConnId;
use crate::timer_wheel::TimerKind;
use crate::token_grant::{ConnGrant, Grant};

impl Shard {
    /// Keeps a just-admitted (or refreshed) connection's grant and arms its expiry
    /// (None: no token was required). A later deadline than the one armed is left to
    /// the armed timer, which re-arms itself; an earlier one arms a new timer and the
    /// old one, when it fires, is stale (before the armed time) and dies. So a
    /// connection has one live expiry timer whatever its refreshes do.
    pub(super) fn schedule_token_expiry(&mut self, id: ConnId, grant: Option<Grant>, now_ms: u64) {
        let Some(grant) = grant else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        // Verification checked `exp` against the same clock, so the deadline is ahead.
        let deadline_ms = grant
            .expires
            .saturating_mul(1000)
            .saturating_sub(self.cfg.unix_ms_at_zero)
            .max(now_ms);
        let armed = conn.grant().map(|g| g.armed_ms);
        let refreshed_ms = conn.grant().and_then(|g| g.refreshed_ms);
        let armed_ms = match armed {
            Some(armed) if armed <= deadline_ms => armed,
            _ => self.wheel.schedule(deadline_ms, id, TimerKind::TokenExpiry),
        };
        conn.set_grant(ConnGrant {
            deadline_ms,
            armed_ms,
            refreshed_ms,
            grant,
        });
    }

    /// The expiry timer fired: closes the connection, or re-arms a deadline the wheel
    /// could not hold in one step.
    pub(super) fn token_expiry_timer(&mut self, id: ConnId, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(grant) = conn.grant_mut() else {
            return;
        };
        if now_ms < grant.armed_ms {
            // Stale: armed before a refresh brought the expiry closer.
            return;
        }
        if now_ms < grant.deadline_ms {
            grant.armed_ms = self
                .wheel
                .schedule(grant.deadline_ms, id, TimerKind::TokenExpiry);
            return;
        }
        self.close_with_last_words(id, Farewell::TokenExpired, now_ms);
    }
}
