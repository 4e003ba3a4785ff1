//! The vendored engineioxide's packet channel behaves as the tokio mpsc it replaces, where
//! engineioxide relies on it (vendor/README.md): order, capacity, permits, waiting for room,
//! closing. Its memory: tests/socket_memory.rs.

use engineioxide::queue;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

#[tokio::test]
async fn packets_arrive_in_order_up_to_the_capacity() {
    let (tx, mut rx) = queue::channel(2);
    tx.try_send(1).expect("room");
    tx.try_send(2).expect("room");
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert_eq!(rx.recv().await, Some(1));
    tx.try_send(3).expect("room");
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn a_dropped_permit_frees_its_slot_and_reserve_waits_for_one() {
    let (tx, mut rx) = queue::channel::<u8>(1);
    drop(tx.try_reserve().expect("room"));
    let permit = tx.try_reserve().expect("the slot was freed");
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    permit.send(7);
    let waiting = tokio::spawn(async move {
        tx.reserve().await.expect("room once drained").send(8);
        tx
    });
    assert_eq!(rx.recv().await, Some(7));
    assert_eq!(rx.recv().await, Some(8));
    drop(waiting.await.expect("sender task"));
    assert_eq!(rx.recv().await, None, "sender dropped");
}

#[tokio::test]
async fn closing_the_receiver_ends_sends_but_not_what_was_queued() {
    let (tx, mut rx) = queue::channel(4);
    tx.try_send(1).expect("room");
    let closed = tokio::spawn(async move {
        tx.closed().await;
        tx
    });
    tokio::task::yield_now().await;
    rx.close();
    let tx = closed.await.expect("closed() completes");
    assert!(tx.is_closed());
    assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
    assert!(tx.reserve().await.is_err());
    assert!(tx.send(3).await.is_err());
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, None);
}
