//! The low-level Redis script plumbing every Redis-backed store shares: a named script (one
//! span per call, fails at once while disconnected), grouping of items by hash slot (one call
//! per shard on a Redis Cluster, one in all on a single Redis), and reading replies.

use std::collections::BTreeMap;

use fred::{clients::Client, interfaces::ClientLike, types::Value, types::scripts::Script};

use super::{StateError, keys::driver_shard};
use crate::telemetry::traces::{leaf, redis_span};

/// A script and the name its spans carry.
pub struct Named {
    name: &'static str,
    script: Script,
}

impl Named {
    pub fn new(name: &'static str, lua: &str) -> Self {
        Self {
            name,
            script: Script::from_lua(lua),
        }
    }

    /// Runs the script: a client span on traced paths.
    pub async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StateError> {
        // While the connection is down fred would queue the call until it reconnects: fail at
        // once instead (a frozen Redis is bounded by the command timeout).
        if !client.is_connected() {
            return Err(StateError::Unavailable);
        }
        // Boxed: fred's call is a future of kilobytes, which every caller's future would
        // otherwise embed and move.
        let call = Box::pin(
            self.script
                .evalsha_with_reload::<Value, _, _>(client, keys, args),
        );
        Ok(leaf(redis_span("EVALSHA", self.name), call).await?)
    }
}

/// Drivers per script call when a call carries many (presence re-assertion).
const CHUNK: usize = 500;

/// Items grouped so that each group's keys share a slot: by driver shard on a cluster, all in
/// one group (one call) on a single Redis.
pub fn by_shard<T>(clustered: bool, items: Vec<T>, driver: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
    in_slots(clustered, items, |item| driver_shard(driver(item)))
}

/// Items grouped so that each group's keys share a slot: by `shard` (a hash-tag number) on a
/// cluster, all together on a single Redis; groups of at most `CHUNK` items, in item order.
pub fn in_slots<T>(clustered: bool, items: Vec<T>, shard: impl Fn(&T) -> u32) -> Vec<Vec<T>> {
    let mut groups: BTreeMap<u32, Vec<T>> = BTreeMap::new();
    for item in items {
        let shard = if clustered { shard(&item) } else { 0 };
        groups.entry(shard).or_default().push(item);
    }
    groups
        .into_values()
        .flat_map(|group| {
            let mut chunks = Vec::new();
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                chunks.push(group.by_ref().take(CHUNK).collect::<Vec<_>>());
            }
            chunks
        })
        .collect()
}

/// A reply's string, `None` for nil or ''.
pub fn text(value: &Value) -> Option<String> {
    value.as_string().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_redis_takes_one_call_a_cluster_one_per_shard() {
        let drivers: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
        assert_eq!(by_shard(false, drivers.clone(), |d| d).len(), 1);
        let groups = by_shard(true, drivers.clone(), |d| d);
        assert!(groups.len() > 1);
        for group in &groups {
            let shard = driver_shard(&group[0]);
            assert!(group.iter().all(|d| driver_shard(d) == shard));
        }
        assert_eq!(groups.concat().len(), drivers.len());
    }

    #[test]
    fn big_groups_are_cut_into_calls_of_bounded_size() {
        let drivers: Vec<String> = (0..1_201).map(|i| format!("d{i}")).collect();
        let groups = by_shard(false, drivers, |d| d);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 201]
        );
    }
}
