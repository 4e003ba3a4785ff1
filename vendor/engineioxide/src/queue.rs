//! The bounded channel of a socket's outgoing packets, allocated as it is used.
//!
//! `tokio::sync::mpsc` allocates its first block of 32 slots when the channel is made: with
//! `PacketBuf` slots (168 bytes) that is 5.4 KB per socket, idle or not, the largest part of an
//! idle connection's memory. This channel keeps its packets in a `VecDeque` under a lock, which
//! allocates on the first packet and is given back when a burst has drained, and counts its
//! capacity with a semaphore. It has the part of `mpsc`'s API engineioxide uses, with `mpsc`'s
//! error types and semantics: a permit reserves a slot, `recv` returns `None` once the channel is
//! closed (or its sender dropped) and drained, senders see a closed receiver.

use std::{
    collections::VecDeque,
    fmt,
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use tokio::sync::{
    Notify, Semaphore, TryAcquireError,
    mpsc::error::{SendError, TryRecvError, TrySendError},
};

/// A queue that grew past this many slots for a burst is shrunk back to it once drained.
const KEPT_SLOTS: usize = 4;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// One permit per free slot.
    slots: Semaphore,
    /// Woken when the receiver closes.
    closed: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    rx_waker: Option<Waker>,
    rx_closed: bool,
    sender_dropped: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a channel of `capacity` slots. Nothing is allocated for the packets until one is sent.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            rx_waker: None,
            rx_closed: false,
            sender_dropped: false,
        }),
        slots: Semaphore::new(capacity),
        closed: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending half (one per channel).
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A reserved slot: [`Permit::send`] fills it; dropping it frees it.
pub struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Reserves a slot if one is free.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        match self.shared.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(Permit {
                    shared: &self.shared,
                })
            }
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(())),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(())),
        }
    }

    /// Waits for a free slot and reserves it; fails once the receiver is closed.
    pub async fn reserve(&self) -> Result<Permit<'_, T>, SendError<()>> {
        match self.shared.slots.acquire().await {
            Ok(permit) => {
                permit.forget();
                Ok(Permit {
                    shared: &self.shared,
                })
            }
            Err(_) => Err(SendError(())),
        }
    }

    /// Waits for a free slot and sends `value`; gives it back if the receiver is closed.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.reserve().await {
            Ok(permit) => {
                permit.send(value);
                Ok(())
            }
            Err(SendError(())) => Err(SendError(value)),
        }
    }

    /// Sends `value` if a slot is free.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_reserve() {
            Ok(permit) => {
                permit.send(value);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(value)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(value)),
        }
    }

    /// Whether the receiver is closed (nothing sent from now on is received).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().rx_closed
    }

    /// Completes when the receiver is closed.
    pub async fn closed(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.closed.notified());
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.sender_dropped = true;
            state.rx_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Permit<'_, T> {
    /// Fills the reserved slot. Dropped if the receiver closed meanwhile, as with `mpsc`.
    pub fn send(self, value: T) {
        let shared = self.shared;
        std::mem::forget(self);
        let waker = {
            let mut state = shared.lock();
            if state.rx_closed {
                drop(state);
                shared.slots.add_permits(1);
                return;
            }
            state.queue.push_back(value);
            state.rx_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.shared.slots.add_permits(1);
    }
}

impl<T> Receiver<T> {
    /// The next value; `None` once the channel is closed or its sender gone, and drained.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(value) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > KEPT_SLOTS {
                state.queue.shrink_to(KEPT_SLOTS);
            }
            drop(state);
            self.shared.slots.add_permits(1);
            return Poll::Ready(Some(value));
        }
        if state.rx_closed || state.sender_dropped {
            return Poll::Ready(None);
        }
        if !state
            .rx_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.rx_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits for the next value (see [`Receiver::poll_recv`]).
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next value if one is there.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.poll_recv(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(value)) => Ok(value),
            Poll::Ready(None) => Err(TryRecvError::Disconnected),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// Closes the channel: nothing more can be sent; what is queued can still be received.
    pub fn close(&mut self) {
        self.shared.lock().rx_closed = true;
        self.shared.slots.close();
        self.shared.closed.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Receiver")
            .field("queued", &state.queue.len())
            .field("closed", &state.rx_closed)
            .finish()
    }
}
