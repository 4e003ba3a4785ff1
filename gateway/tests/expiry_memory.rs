//! What the expiry deadlines cost per connected socket (lifecycle.md asks for one structure per
//! replica, not a task per socket), measured with dhat in a test binary of its own.

use std::time::Duration;

use gateway::realtime::expiry::Deadlines;
use shared::namespace::Namespace;
use socketioxide::socket::Sid;

/// dhat counts this binary's heap (its own test binary, so it sees only this test).
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[test]
fn a_watched_socket_costs_one_small_entry() {
    const SOCKETS: u64 = 100_000;
    let _profiler = dhat::Profiler::builder().testing().build();
    let deadlines = Deadlines::new(Duration::from_secs(60));
    let ids: Vec<Sid> = (0..SOCKETS).map(|_| Sid::new()).collect();
    let before = dhat::HeapStats::get().curr_bytes;
    for (i, sid) in ids.iter().enumerate() {
        // Expiries spread over an hour, as tokens issued over time are.
        let expires_at_ms = 1_000_000 + (i as u64 * 36_000) % 3_600_000;
        deadlines.watch(Namespace::Drivers, *sid, expires_at_ms, 0);
    }
    let per_socket = (dhat::HeapStats::get().curr_bytes - before) as f64 / SOCKETS as f64;
    println!("expiry deadlines: {per_socket:.1} bytes per watched socket ({SOCKETS} sockets)");
    assert_eq!(deadlines.len(), SOCKETS as usize);
    // A sleeping task per socket would cost kilobytes; one ordered entry costs tens of bytes.
    assert!(per_socket < 128.0, "{per_socket:.1} bytes per socket");

    for (i, sid) in ids.iter().enumerate() {
        let expires_at_ms = 1_000_000 + (i as u64 * 36_000) % 3_600_000;
        deadlines.forget(Namespace::Drivers, *sid, expires_at_ms);
    }
    assert!(
        deadlines.is_empty(),
        "a closed socket leaves nothing behind"
    );
}
