//! The node's bounded queues, as the `queue` label of `ringcast_queue_full_total`, and
//! the one call that counts a queue found full.

use crate::names;

/// A bounded queue of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// A shard's publish inbox (from the broker): full → `POST /publish` answers 503, the
    /// Redis reader holds the message and stops reading.
    ShardPublish,
    /// A shard's inbox from the other shards: full → the message waits in its sender.
    ShardMesh,
    /// The shards' subscription changes for the broker: full → the change waits in its
    /// shard.
    BrokerCommands,
    /// Pushes from Redis waiting for the shards: full → the Redis socket is not read.
    RedisPushes,
}

impl QueueName {
    /// Every queue, for exporting the counter at 0.
    pub const ALL: [QueueName; 4] = [
        QueueName::ShardPublish,
        QueueName::ShardMesh,
        QueueName::BrokerCommands,
        QueueName::RedisPushes,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            QueueName::ShardPublish => "shard_publish",
            QueueName::ShardMesh => "shard_mesh",
            QueueName::BrokerCommands => "broker_commands",
            QueueName::RedisPushes => "redis_pushes",
        }
    }

    /// Counts `times` occasions this queue was found full.
    pub fn count_full(self, times: u64) {
        metrics::counter!(names::QUEUE_FULL, names::LABEL_QUEUE => self.label()).increment(times);
    }
}
