//! The Redis engine's replica leases and their socket counts.

use super::*;
use crate::state::LeaseStore;

#[async_trait]
impl LeaseStore for RedisState {
    async fn renew_lease(&self, stats: &NodeStats) -> Result<bool, StateError> {
        let json = serde_json::to_string(stats).map_err(|e| StateError::Data(e.to_string()))?;
        let reply = self
            .run(
                &self.scripts.renew_lease,
                vec![
                    self.keys.leases(),
                    self.keys.epochs(),
                    self.keys.node_stats(),
                ],
                vec![
                    self.settings.node_id.clone(),
                    self.settings.node_ttl.as_millis().to_string(),
                    json,
                ],
            )
            .await?
            .into_array();
        let epoch = reply
            .get(1)
            .and_then(text)
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| StateError::Data("renew_lease answered without an epoch".into()))?;
        // A renewal whose answer never arrived (timed out here, delivered when a partition
        // healed) may have found the lease lapsed and started a new epoch: the lease was lost
        // all the same, though this renewal finds it live.
        let known = self.epoch.swap(epoch, Ordering::SeqCst);
        let live = reply.first().and_then(Value::as_i64) == Some(1);
        Ok(live && (known == 0 || known == epoch))
    }

    async fn live_nodes(&self) -> Result<Vec<NodeStats>, StateError> {
        let rows = self
            .run(
                &self.scripts.live_nodes,
                vec![self.keys.leases(), self.keys.node_stats()],
                vec![],
            )
            .await?;
        Ok(strings(rows)
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    async fn release_lease(&self) -> Result<(), StateError> {
        self.reap_nodes(Some(&self.settings.node_id)).await
    }
}
