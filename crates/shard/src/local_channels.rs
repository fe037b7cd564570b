//! This shard's subscriptions: for each channel with local subscribers, the list of
//! subscribed connection slots. Each connection remembers its position so leaving is
//! O(1) (swap-remove, and the moved connection's position is fixed by the caller).

use crate::ids::ChannelName;
use std::collections::HashMap;

struct Entry {
    name: ChannelName,
    subs: Vec<u32>,
}

/// Channels with local subscribers.
#[derive(Default)]
pub(crate) struct LocalChannels {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_name: HashMap<ChannelName, u32>,
    subscriptions: u64,
}

/// Where a connection sits in the registry after subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Membership {
    /// The channel's slot.
    pub(crate) channel: u32,
    /// The connection's index in the channel's subscriber list.
    pub(crate) pos: u32,
}

/// What changed when a connection left.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Departure {
    /// A connection slot that moved into the leaver's position.
    pub(crate) moved: Option<u32>,
    /// The channel, when this was its last local subscriber.
    pub(crate) emptied: Option<ChannelName>,
}

impl LocalChannels {
    /// Adds connection slot `conn` to `name`. Returns its membership and, when the
    /// channel had no local subscriber before, the shared name to announce.
    pub(crate) fn subscribe(&mut self, name: &str, conn: u32) -> (Membership, Option<ChannelName>) {
        self.subscriptions += 1;
        if let Some(&channel) = self.by_name.get(name)
            && let Some(Some(entry)) = self.slots.get_mut(channel as usize)
        {
            entry.subs.push(conn);
            let pos = entry.subs.len() as u32 - 1;
            return (Membership { channel, pos }, None);
        }
        let shared: ChannelName = ChannelName::from(name);
        let entry = Entry {
            name: shared.clone(),
            subs: vec![conn],
        };
        let channel = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() as u32 - 1
            }
        };
        self.by_name.insert(shared.clone(), channel);
        (Membership { channel, pos: 0 }, Some(shared))
    }

    /// Removes the subscription at `m`.
    pub(crate) fn unsubscribe(&mut self, m: Membership) -> Departure {
        let Some(Some(entry)) = self.slots.get_mut(m.channel as usize) else {
            return Departure::default();
        };
        if m.pos as usize >= entry.subs.len() {
            return Departure::default();
        }
        self.subscriptions -= 1;
        entry.subs.swap_remove(m.pos as usize);
        let moved = entry.subs.get(m.pos as usize).copied();
        if !entry.subs.is_empty() {
            return Departure {
                moved,
                emptied: None,
            };
        }
        let name = entry.name.clone();
        self.slots[m.channel as usize] = None;
        self.free.push(m.channel);
        self.by_name.remove(&*name);
        Departure {
            moved: None,
            emptied: Some(name),
        }
    }

    /// The shared name of `name`, if it has local subscribers.
    pub(crate) fn shared_name(&self, name: &str) -> Option<ChannelName> {
        self.by_name
            .get_key_value(name)
            .map(|(shared, _)| shared.clone())
    }

    /// The name of the channel in registry slot `slot`.
    pub(crate) fn name_of(&self, slot: u32) -> Option<&ChannelName> {
        match self.slots.get(slot as usize) {
            Some(Some(entry)) => Some(&entry.name),
            _ => None,
        }
    }

    /// The registry slot of `name`, if it has local subscribers.
    pub(crate) fn slot_of(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The subscriber slots of `name`, if it has local subscribers.
    pub(crate) fn subscribers(&self, name: &str) -> Option<&[u32]> {
        let &channel = self.by_name.get(name)?;
        self.slots[channel as usize]
            .as_ref()
            .map(|e| e.subs.as_slice())
    }

    /// Channels with local subscribers.
    #[cfg(test)]
    pub(crate) fn channels(&self) -> usize {
        self.by_name.len()
    }

    /// Local subscriptions in all channels.
    pub(crate) fn subscriptions(&self) -> u64 {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let mut reg = LocalChannels::default();
        let (a, first) = reg.subscribe("news", 10);
        assert_eq!(first.as_deref(), Some("news"));
        let (b, first) = reg.subscribe("news", 11);
        assert!(first.is_none());
        let (c, _) = reg.subscribe("news", 12);
        assert_eq!(reg.subscribers("news"), Some(&[10, 11, 12][..]));
        assert_eq!(reg.subscriptions(), 3);

        let gone = reg.unsubscribe(a);
        assert_eq!(gone.moved, Some(12), "last one moved into slot 0");
        assert_eq!(reg.subscribers("news"), Some(&[12, 11][..]));
        let c = Membership { pos: a.pos, ..c };
        assert_eq!(reg.unsubscribe(b).emptied, None);
        let gone = reg.unsubscribe(Membership { pos: 0, ..c });
        assert_eq!(gone.emptied.as_deref(), Some("news"));
        assert_eq!(reg.channels(), 0);
        assert_eq!(reg.subscriptions(), 0);
        assert!(reg.subscribers("news").is_none());
    }

    #[test]
    fn bogus_membership_is_ignored() {
        let mut reg = LocalChannels::default();
        assert_eq!(
            reg.unsubscribe(Membership { channel: 5, pos: 0 }),
            Departure::default()
        );
        let (m, _) = reg.subscribe("a", 1);
        assert_eq!(
            reg.unsubscribe(Membership { pos: 9, ..m }),
            Departure::default()
        );
        assert_eq!(reg.subscriptions(), 1);
    }
}
