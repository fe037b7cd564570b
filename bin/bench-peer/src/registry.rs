//! Channel registry: one `tokio::sync::broadcast` channel per channel name behind a mutex, the
//! idiomatic tokio fan-out (a published message is one reference-counted `Message` cloned into
//! each subscriber's receive), plus the two counters `/metrics` exposes. With `--floor` the
//! channels' subscribers are plain descriptors in a [`FloorTable`] instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::floor::FloorTable;

/// Messages a slow subscriber may lag behind before it starts losing them.
const CHANNEL_CAPACITY: usize = 1024;

/// Channels by name and the process counters.
#[derive(Default)]
pub struct Registry {
    channels: Mutex<HashMap<String, broadcast::Sender<Message>>>,
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// Messages handed to subscribers (one per subscriber per published message).
    pub delivered: AtomicU64,
    /// `--floor`: subscribers are written to directly, one `send` per delivery.
    pub floor: Option<FloorTable>,
}

impl Registry {
    /// A registry in send-floor mode (see [`FloorTable`]).
    pub fn floor() -> Self {
        Self {
            floor: Some(FloorTable::default()),
            ..Self::default()
        }
    }

    /// Subscribes to `channel`, creating it on first use.
    pub fn subscribe(&self, channel: &str) -> broadcast::Receiver<Message> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Drops `channel` once its last subscriber has gone (call after dropping the receiver).
    pub fn release(&self, channel: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if channels
            .get(channel)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(channel);
        }
    }

    /// Publishes `message` to the subscribers of `channel`, if any.
    pub fn publish(&self, channel: &str, message: Message) {
        let sender = {
            let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.get(channel).cloned()
        };
        if let Some(receivers) = sender.and_then(|sender| sender.send(message).ok()) {
            self.delivered
                .fetch_add(receivers as u64, Ordering::Relaxed);
        }
    }
}
