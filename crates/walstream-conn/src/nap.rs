//! Sub-millisecond sleeps for batched reads over Unix-domain sockets.
//!
//! tokio's timer has a resolution of one millisecond, but a walsender's Unix socket holds
//! less than a millisecond of its output (see `transport::UNIX_NAP`), so a reader that
//! batches there must sleep for a fraction of that. One process-wide thread (started on first
//! use, then idle on a condition variable whenever nobody naps) keeps the pending deadlines and
//! wakes each task at its own; the kernel's high-resolution timers make the sleep accurate to
//! the thread's timer slack (50 µs by default).

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The pending naps: a deadline and the task to wake at it (at most one entry per task).
struct Naps {
    pending: Mutex<Vec<(Instant, Waker)>>,
    changed: Condvar,
}

impl Naps {
    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, Waker)>> {
        // Nothing can be left inconsistent by a panic while the lock is held (pushes and
        // removals only): a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut pending = self.lock();
        let mut due = Vec::new();
        loop {
            let now = Instant::now();
            let mut i = 0;
            while i < pending.len() {
                if pending[i].0 <= now {
                    due.push(pending.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
            if !due.is_empty() {
                drop(pending);
                due.drain(..).for_each(Waker::wake);
                pending = self.lock();
                continue;
            }
            pending = match pending.iter().map(|(at, _)| *at).min() {
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(next) => {
                    self.changed
                        .wait_timeout(pending, next - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// The process's nap thread, started on first use; `None` if it could not be started, or in
/// a child process forked after it started (threads do not survive a `fork`: a nap there
/// would never end).
fn naps() -> Option<&'static Naps> {
    static NAPS: OnceLock<Option<(&'static Naps, u32)>> = OnceLock::new();
    let started = NAPS.get_or_init(|| {
        let naps: &'static Naps = Box::leak(Box::new(Naps {
            pending: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("walstream-nap".into())
            .spawn(move || naps.run())
            .ok()
            .map(|_| (naps, std::process::id()))
    });
    (*started).and_then(|(naps, pid)| (pid == std::process::id()).then_some(naps))
}

/// Whether sub-millisecond naps are available (the nap thread runs).
pub(crate) fn available() -> bool {
    naps().is_some()
}

/// A sleep until a deadline, with sub-millisecond resolution.
#[derive(Debug)]
pub(crate) struct Nap {
    deadline: Instant,
}

impl Nap {
    pub(crate) fn until(deadline: Instant) -> Self {
        Self { deadline }
    }

    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// Ready once the deadline passed; otherwise the task is woken at (or soon after) it.
    /// A nap dropped early leaves at most one spurious wake-up behind.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let Some(naps) = naps() else {
            // No nap thread (`available()` says so; the transport then uses tokio's timer):
            // do not hang a caller that polls anyway.
            return Poll::Ready(());
        };
        let mut pending = naps.lock();
        let earliest = pending.iter().map(|(at, _)| *at).min();
        match pending.iter_mut().find(|(_, w)| w.will_wake(cx.waker())) {
            // The same task naps already: keep the earlier deadline (a wake-up that comes
            // too early only makes the task poll again).
            Some(entry) => entry.0 = entry.0.min(self.deadline),
            None => pending.push((self.deadline, cx.waker().clone())),
        }
        drop(pending);
        if earliest.is_none_or(|e| self.deadline < e) {
            naps.changed.notify_one();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn naps_end_after_their_deadline_and_well_before_a_millisecond_timer_would() {
        assert!(available());
        let mut shortest = Duration::MAX;
        for _ in 0..50 {
            let start = Instant::now();
            let mut nap = Nap::until(start + Duration::from_micros(200));
            poll_fn(|cx| nap.poll(cx)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_micros(200), "woke early: {took:?}");
            shortest = shortest.min(took);
        }
        // A millisecond timer could not end any of them before 1 ms; on a loaded machine
        // some naps end late, but not all 50.
        assert!(
            shortest < Duration::from_micros(900),
            "shortest nap {shortest:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_naps_each_wake_their_own_task() {
        let tasks: Vec<_> = (0..20u64)
            .map(|i| {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let wait = Duration::from_micros(100 + 37 * i);
                    let mut nap = Nap::until(start + wait);
                    poll_fn(|cx| nap.poll(cx)).await;
                    assert!(start.elapsed() >= wait);
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a nap never ended")
                .unwrap();
        }
    }
}
