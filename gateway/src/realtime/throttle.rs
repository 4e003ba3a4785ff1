//! Rate limits decided on this replica: the per-socket event budget (floods) and the "first
//! position of each second" rule for admins.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

/// Events a socket may send per second, sustained; bursts up to twice that.
pub const EVENTS_PER_SECOND: f64 = 30.0;
const BURST: f64 = EVENTS_PER_SECOND * 2.0;

/// A token bucket per socket, kept in the socket's extensions.
pub struct EventBudget {
    state: Mutex<(f64, Instant)>,
}

impl Default for EventBudget {
    fn default() -> Self {
        Self {
            state: Mutex::new((BURST, Instant::now())),
        }
    }
}

impl EventBudget {
    /// Takes one event from the budget; `false` when the socket is flooding.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * EVENTS_PER_SECOND).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Admins get a driver's first position of each second (decided on the driver's replica).
#[derive(Default)]
pub struct AdminLocationThrottle {
    last_second: Mutex<HashMap<String, u64>>,
}

/// Entries kept before old seconds are pruned.
const PRUNE_ABOVE: usize = 50_000;

impl AdminLocationThrottle {
    pub fn first_this_second(&self, driver: &str) -> bool {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.first_in(driver, second)
    }

    fn first_in(&self, driver: &str, second: u64) -> bool {
        let mut seen = self.last_second.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > PRUNE_ABOVE {
            seen.retain(|_, s| *s + 1 >= second);
        }
        match seen.insert(driver.to_owned(), second) {
            Some(previous) => previous != second,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_runs_out_of_budget() {
        let budget = EventBudget::default();
        let accepted = (0..200).filter(|_| budget.take()).count();
        assert!(accepted >= BURST as usize && accepted < 200, "{accepted}");
    }

    #[test]
    fn admins_get_one_position_per_driver_per_second() {
        let t = AdminLocationThrottle::default();
        assert!(t.first_in("d", 5));
        assert!(!t.first_in("d", 5));
        assert!(t.first_in("other", 5));
        assert!(t.first_in("d", 6));
    }
}
