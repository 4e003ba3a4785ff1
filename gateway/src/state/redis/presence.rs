//! The Redis engine's presence: sockets on live replicas, OFFLINE after the grace.

use super::*;
use crate::state::PresenceStore;

#[async_trait]
impl PresenceStore for RedisState {
    async fn presence_opened(&self, driver: &str) -> Result<(), StateError> {
        let drivers = [driver.to_owned()];
        tokio::try_join!(
            self.assert_presence(drivers.to_vec()),
            self.node_drivers("add", &drivers),
        )?;
        Ok(())
    }

    async fn presence_closed(&self, driver: &str) -> Result<(), StateError> {
        let drivers = [driver.to_owned()];
        tokio::try_join!(
            self.release_presence(&self.settings.node_id, "", drivers.to_vec(), None, false),
            self.node_drivers("remove", &drivers),
        )?;
        Ok(())
    }

    async fn presence_resync(&self, drivers: &[String]) -> Result<(), StateError> {
        // Recorded here but no longer held: released, their grace starts now.
        let dropped = self.node_drivers("replace", drivers).await?;
        tokio::try_join!(
            self.release_presence(&self.settings.node_id, "", dropped, None, true),
            self.assert_presence(drivers.to_vec()),
        )?;
        Ok(())
    }

    async fn is_present(&self, driver: &str) -> Result<bool, StateError> {
        let nodes = self
            .run(
                &self.scripts.presence_nodes,
                vec![self.keys.presence(driver)],
                vec![],
            )
            .await?;
        self.any_live(strings(nodes)).await
    }

    async fn is_reachable(&self, driver: &str) -> Result<bool, StateError> {
        if self.is_present(driver).await? {
            return Ok(true);
        }
        let pending = self
            .run(
                &self.in_grace,
                vec![self.keys.presence_pending()],
                vec![driver.to_owned()],
            )
            .await?;
        Ok(text(&pending).is_some())
    }

    async fn expire_presence(&self, reap_lapsed: bool) -> Result<Vec<StatusChange>, StateError> {
        if reap_lapsed {
            self.reap_nodes(None).await?;
        }
        self.expire_due().await
    }
}
