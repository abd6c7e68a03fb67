//! A producer thread feeding a bounded channel: the consumer never waits while batches are ready.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};

use crate::error::Result;

/// An iterator over `Result<T>` produced ahead of time on a background thread (at most `cap` waiting).
/// Dropping it stops the producer after its current item.
pub struct Prefetch<T> {
    rx: Option<Receiver<Result<T>>>,
    handle: Option<JoinHandle<()>>,
    len: usize,
}

/// Runs `make(0..n)` in order on a background thread into a queue of capacity `cap`.
pub fn spawn_prefetch<T: Send + 'static>(
    n: usize,
    cap: usize,
    make: impl Fn(usize) -> Result<T> + Send + 'static,
) -> Prefetch<T> {
    let (tx, rx) = bounded(cap.max(1));
    let handle = std::thread::spawn(move || {
        for i in 0..n {
            let item = make(i);
            let failed = item.is_err();
            if tx.send(item).is_err() || failed {
                break;
            }
        }
    });
    Prefetch { rx: Some(rx), handle: Some(handle), len: n }
}

impl<T> Prefetch<T> {
    /// Number of items the producer was asked for.
    pub fn planned_len(&self) -> usize {
        self.len
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
