//! The channels one connection is subscribed to: nothing, one (the common case, held
//! inline) or several (`/?channels=a,b` or client commands), each with its position in
//! the channel's subscriber list.

use crate::local_channels::Membership;

/// A connection's subscriptions.
#[derive(Debug, Default)]
pub(crate) enum ConnChannels {
    /// Not subscribed.
    #[default]
    None,
    /// One channel.
    One(Membership),
    /// Several channels (boxed: the common single subscription keeps `Conn` small).
    #[expect(
        clippy::box_collection,
        reason = "one pointer in every connection, not a vector's three words"
    )]
    Many(Box<Vec<Membership>>),
}

impl ConnChannels {
    /// Number of channels.
    pub(crate) fn len(&self) -> usize {
        match self {
            ConnChannels::None => 0,
            ConnChannels::One(_) => 1,
            ConnChannels::Many(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel in registry slot `channel` is among them.
    pub(crate) fn contains(&self, channel: u32) -> bool {
        self.find(channel).is_some()
    }

    /// Adds a subscription.
    pub(crate) fn add(&mut self, m: Membership) {
        *self = match std::mem::take(self) {
            ConnChannels::None => ConnChannels::One(m),
            ConnChannels::One(first) => ConnChannels::Many(Box::new(vec![first, m])),
            ConnChannels::Many(mut v) => {
                v.push(m);
                ConnChannels::Many(v)
            }
        };
    }

    /// Removes and returns the subscription to registry slot `channel`.
    pub(crate) fn remove(&mut self, channel: u32) -> Option<Membership> {
        match self {
            ConnChannels::One(m) if m.channel == channel => {
                let m = *m;
                *self = ConnChannels::None;
                Some(m)
            }
            ConnChannels::Many(v) => {
                let i = v.iter().position(|m| m.channel == channel)?;
                Some(v.swap_remove(i))
            }
            _ => None,
        }
    }

    /// The registry slots of its channels.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        let list: &[Membership] = match self {
            ConnChannels::None => &[],
            ConnChannels::One(m) => std::slice::from_ref(m),
            ConnChannels::Many(v) => v.as_slice(),
        };
        list.iter().map(|m| m.channel)
    }

    /// Records that this connection moved to `pos` in channel `channel`'s list.
    pub(crate) fn set_pos(&mut self, channel: u32, pos: u32) {
        if let Some(m) = self.find_mut(channel) {
            m.pos = pos;
        }
    }

    /// Takes every subscription out.
    pub(crate) fn take_all(&mut self) -> Vec<Membership> {
        match std::mem::take(self) {
            ConnChannels::None => Vec::new(),
            ConnChannels::One(m) => vec![m],
            ConnChannels::Many(v) => *v,
        }
    }

    fn find(&self, channel: u32) -> Option<&Membership> {
        match self {
            ConnChannels::One(m) if m.channel == channel => Some(m),
            ConnChannels::Many(v) => v.iter().find(|m| m.channel == channel),
            _ => None,
        }
    }

    fn find_mut(&mut self, channel: u32) -> Option<&mut Membership> {
        match self {
            ConnChannels::One(m) if m.channel == channel => Some(m),
            ConnChannels::Many(v) => v.iter_mut().find(|m| m.channel == channel),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(channel: u32, pos: u32) -> Membership {
        Membership { channel, pos }
    }

    #[test]
    fn grows_from_none_to_many_and_back() {
        let mut c = ConnChannels::default();
        assert!(c.is_empty());
        c.add(m(1, 0));
        assert!(matches!(c, ConnChannels::One(_)));
        c.add(m(2, 5));
        c.add(m(3, 7));
        assert_eq!(c.len(), 3);
        c.set_pos(2, 9);
        assert_eq!(c.remove(2), Some(m(2, 9)));
        assert_eq!(c.remove(2), None);
        assert!(c.contains(3) && !c.contains(2));
        assert_eq!(c.take_all().len(), 2);
        assert!(c.is_empty());
        c.add(m(4, 0));
        assert_eq!(c.remove(4), Some(m(4, 0)));
        assert!(matches!(c, ConnChannels::None));
    }
}
