//! Writes a publish's deliveries from one task per thread instead of waking every
//! subscriber's task to write its own.
//!
//! A publish queues the frame on each subscriber at once (so bounds and order hold
//! as before) and hands the connections to this thread's flusher, woken once. When
//! the flusher runs — after the tasks already ready, such as a publisher reading on —
//! it writes each connection's whole queue in one system call: everything published
//! meanwhile goes out together, as uWebSockets' end-of-loop drain does, and no
//! subscriber task is woken, polled and put back to sleep per delivery (measured with
//! `yamabiko bench --broadcast`: the tasks' polling was most of the library's share
//! of the CPU per delivery).
//!
//! A connection that is full, or is being written by its own task, is left to that
//! task, as with a [`Cork`](super::Cork). Without a tokio runtime on the publishing
//! thread there is no flusher, and the subscribers' tasks are woken to write.
//!
//! A thread's flusher runs on the runtime the thread first published from, until that
//! runtime shuts down; then the next publish starts one on the current runtime. (A
//! runtime kept alive but no longer driven would hold its thread's deliveries: a
//! thread that publishes from two runtimes should not leave the first one idle.)

use super::Outlet;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// Connections with deliveries to write (the hub claimed each one's write).
pub(crate) type Batch = Vec<Arc<dyn Outlet>>;

/// Connections written per run of the flusher before it lets other tasks run: a
/// publish to 10,000 connections should not hold up a poster's acknowledgement (or
/// the next publish) for the whole fan-out.
const WRITES_PER_RUN: usize = 128;

thread_local! {
    static LOCAL: RefCell<Option<Arc<Flusher>>> = const { RefCell::new(None) };
}

/// One thread's flusher: the connections waiting for it and its task's waker.
struct Flusher {
    state: Mutex<State>,
}

struct State {
    waiting: Batch,
    /// The flusher task, parked until connections wait.
    task: Option<Waker>,
    /// False once the task is gone (its runtime shut down): nothing more is taken.
    alive: bool,
}

impl Flusher {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock panics; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `batch` (leaving it empty) unless the task is gone.
    fn take(&self, batch: &mut Batch) -> bool {
        let task = {
            let mut s = self.lock();
            if !s.alive {
                return false;
            }
            s.waiting.append(batch);
            s.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
        true
    }
}

/// Hands `batch` to this thread's flusher (started on the current tokio runtime the
/// first time), or, with no runtime, wakes each connection's task to write.
pub(crate) fn hand_over(batch: &mut Batch) {
    if batch.is_empty() {
        return;
    }
    let taken = LOCAL
        .try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            if let Some(f) = local.as_ref() {
                if f.take(batch) {
                    return Some(());
                }
            }
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let f = Arc::new(Flusher {
                state: Mutex::new(State {
                    waiting: Vec::new(),
                    task: None,
                    alive: true,
                }),
            });
            // Unconstrained: tokio's cooperative budget would otherwise make every
            // write after the 128th in one run report "not ready" and fall back to
            // the subscriber's task; the flusher yields after each batch instead.
            let gone = Gone {
                flusher: f.clone(),
                taken: VecDeque::new(),
            };
            runtime.spawn(tokio::task::unconstrained(run(gone)));
            let taken = f.take(batch);
            *local = Some(f);
            taken.then_some(())
        })
        .ok()
        .flatten();
    if taken.is_none() {
        for outlet in batch.drain(..) {
            outlet.wake_driver();
        }
    }
}

/// The flusher task: writes waiting connections, yields, repeats. It owns the
/// [`Gone`] marker from the start, so that it marks the flusher gone even if its
/// runtime drops it before it ever runs, and keeps the connections it has taken but
/// not yet written there.
async fn run(mut gone: Gone) {
    let f = gone.flusher.clone();
    loop {
        if gone.taken.is_empty() {
            poll_fn(|cx| {
                let mut s = f.lock();
                if s.waiting.is_empty() {
                    s.task = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                gone.taken.extend(s.waiting.drain(..));
                Poll::Ready(())
            })
            .await;
        }
        let n = gone.taken.len().min(WRITES_PER_RUN);
        for outlet in gone.taken.drain(..n) {
            outlet.write_now();
        }
        // Let the tasks that became ready meanwhile (the publisher among them) run
        // before the next writes.
        tokio::task::yield_now().await;
    }
}

/// Marks the flusher gone when its task is dropped (its runtime shut down) and wakes
/// the connections still waiting — handed over, or taken but not yet written — so
/// that their own tasks write (or end).
struct Gone {
    flusher: Arc<Flusher>,
    taken: VecDeque<Arc<dyn Outlet>>,
}

impl Drop for Gone {
    fn drop(&mut self) {
        let waiting = {
            let mut s = self.flusher.lock();
            s.alive = false;
            std::mem::take(&mut s.waiting)
        };
        for outlet in self.taken.drain(..).chain(waiting) {
            outlet.wake_driver();
        }
    }
}
