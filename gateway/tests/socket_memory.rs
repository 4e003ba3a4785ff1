//! What each socket's outgoing packet channel costs, with the vendored engineioxide's channel
//! (vendor/README.md, "a socket's packet channel allocated as it is used"): nothing until a packet
//! is sent, and a burst's room given back once drained. With tokio's mpsc, which engineioxide uses
//! upstream, every socket paid for a block of 32 packet slots (5.4 KB) at connect. This test does
//! not compile without the patch. The only test of its binary, so that dhat counts only it (the
//! channel's behaviour: tests/packet_queue.rs).

use engineioxide::queue::{self, Receiver, Sender};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// The size of engineioxide's `PacketBuf` (a `SmallVec` of two packets).
type Slot = [u8; 168];

fn heap() -> usize {
    dhat::HeapStats::get().curr_bytes
}

#[tokio::test]
async fn a_socket_channel_costs_little_until_used_and_gives_a_burst_back() {
    let _profiler = dhat::Profiler::builder().testing().build();
    const SOCKETS: usize = 1_000;
    let before = heap();
    let mut channels: Vec<(Sender<Slot>, Receiver<Slot>)> =
        (0..SOCKETS).map(|_| queue::channel(128)).collect();
    let idle = (heap() - before) as f64 / SOCKETS as f64;
    println!("an unused channel: {idle:.0} bytes");
    // tokio's mpsc: 32 slots of 168 bytes and its bookkeeping, over 5,400 bytes.
    assert!(idle < 512.0, "{idle:.0} bytes per unused channel");

    // One socket gets a burst of 100 packets, then drains it.
    let (tx, rx) = &mut channels[0];
    let quiet = heap();
    for _ in 0..100 {
        tx.try_send([0; 168]).expect("room");
    }
    assert!(heap() - quiet >= 100 * 168, "the burst is held");
    for _ in 0..100 {
        rx.recv().await.expect("queued");
    }
    let kept = heap().saturating_sub(quiet);
    assert!(kept <= 4 * 168, "{kept} bytes kept after the burst drained");
}
