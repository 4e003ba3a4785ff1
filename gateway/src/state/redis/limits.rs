//! The Redis engine's per-user limits: sockets per user, handshakes per window.

use super::*;
use crate::state::LimitStore;

#[async_trait]
impl LimitStore for RedisState {
    async fn user_socket_opened(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
        max: u32,
    ) -> Result<Vec<String>, StateError> {
        let replaced = self
            .run(
                &self.scripts.user_socket_opened,
                vec![self.keys.user_sockets(ns, user)],
                vec![
                    socket.to_owned(),
                    max.to_string(),
                    USER_SOCKETS_TTL.as_millis().to_string(),
                ],
            )
            .await?;
        Ok(strings(replaced))
    }

    async fn user_socket_closed(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
    ) -> Result<(), StateError> {
        self.run(
            &self.user_socket_closed,
            vec![self.keys.user_sockets(ns, user)],
            vec![socket.to_owned()],
        )
        .await?;
        Ok(())
    }

    async fn handshake_allowed(
        &self,
        user: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StateError> {
        let allowed = self
            .run(
                &self.scripts.handshake_rate,
                vec![self.keys.handshakes(user)],
                vec![limit.to_string(), window.as_millis().to_string()],
            )
            .await?;
        Ok(allowed.as_i64() == Some(1))
    }
}
