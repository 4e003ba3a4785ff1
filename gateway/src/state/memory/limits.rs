//! The memory engine's per-user limits: sockets per user, handshakes per window.

use super::*;
use crate::state::LimitStore;

#[async_trait]
impl LimitStore for MemoryState {
    async fn user_socket_opened(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
        max: u32,
    ) -> Result<Vec<String>, StateError> {
        let mut inner = self.lock();
        let open = inner.user_sockets.entry((ns, user.to_owned())).or_default();
        open.push(socket.to_owned());
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if max == 0 || open.len() <= max {
            return Ok(Vec::new());
        }
        let excess = open.len() - max;
        Ok(open.drain(..excess).collect())
    }

    async fn user_socket_closed(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
    ) -> Result<(), StateError> {
        let mut inner = self.lock();
        let key = (ns, user.to_owned());
        if let Some(open) = inner.user_sockets.get_mut(&key) {
            open.retain(|s| s != socket);
            if open.is_empty() {
                inner.user_sockets.remove(&key);
            }
        }
        Ok(())
    }

    async fn handshake_allowed(
        &self,
        user: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        // Forget finished windows now and then, so users who left take no memory.
        if inner.handshakes.len() > HANDSHAKE_WINDOWS_KEPT {
            inner
                .handshakes
                .retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let (start, count) = inner.handshakes.entry(user.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        Ok(*count <= limit)
    }
}
