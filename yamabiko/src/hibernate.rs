//! Idle connections kept without a task: [`Hibernator`].
//!
//! A server's connections are mostly idle: a chat page open all day, a dashboard
//! waiting for the next event. An idle [`Conn`] in its own task costs about 2 KB of
//! the server's memory (the task, the connection's shared state and reader, a
//! keepalive timer). A connection [hibernated](Hibernator::hibernate) is kept as its
//! transport and settings alone, in one shared keeper task, in about a quarter of
//! that; when bytes arrive, its read deadline passes or its keepalive times out, it
//! is built again and handed to the hibernator's wake function in a new task, as if
//! it had never slept. While it sleeps the keeper sends its keepalive pings.
//!
//! Only a connection at rest can sleep: nothing read and not yet handed out, nothing
//! queued to write, no close under way, and no [`ControlHandle`](crate::ControlHandle)
//! or [`Hub`](crate::Hub) subscription holding it. Anything else is refused and
//! given back, unchanged.
//!
//! What a connection sleeps with is up to the application: the hibernator keeps a
//! value of type `T` with each connection (a user id, a permit) and hands it back on
//! waking.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::net::{TcpListener, TcpStream};
//! use yamabiko::{Conn, Hibernator, Upgrader};
//!
//! /// Echoes; after 10 s without a message the connection sleeps, and this runs
//! /// again (in a new task) when the next one comes.
//! async fn serve(mut conn: Conn<TcpStream>, sleeps: Hibernator<TcpStream>) {
//!     loop {
//!         match tokio::time::timeout(Duration::from_secs(10), conn.read_message()).await {
//!             Ok(Ok(msg)) => {
//!                 if conn.write_message(msg).await.is_err() {
//!                     return;
//!                 }
//!             }
//!             Ok(Err(_)) => return,
//!             // `read_message` is cancel-safe: nothing is lost by timing it out.
//!             Err(_) => match sleeps.hibernate(conn, ()) {
//!                 Ok(()) => return,
//!                 Err((back, ())) => conn = back,
//!             },
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let sleeps = Hibernator::new(|conn, (), sleeps| serve(conn, sleeps));
//! let listener = TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let sleeps = sleeps.clone();
//!     tokio::spawn(async move {
//!         if let Ok(conn) = Upgrader::new().upgrade(tcp).await {
//!             serve(conn, sleeps).await;
//!         }
//!     });
//! }
//! # }
//! ```

use crate::conn::{epoch, Absorbed, Dormant, Tend};
use crate::Conn;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

type WakeFn<S, T> =
    dyn Fn(Conn<S>, T, Hibernator<S, T>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Holds idle connections without a task each, and hands each back — in a new task,
/// to the wake function — when something arrives for it. See the [module
/// documentation](self). Cloning gives another handle to the same hibernator.
pub struct Hibernator<S, T = ()> {
    keeper: Arc<Keeper<S, T>>,
}

/// The state the handles and the keeper task share.
struct Keeper<S, T> {
    state: Mutex<State<S, T>>,
    on_wake: Box<WakeFn<S, T>>,
    /// Live [`Hibernator`] handles: with none left and nobody asleep, the keeper
    /// task ends.
    handles: AtomicUsize,
}

struct State<S, T> {
    sleepers: Slab<Arc<Sleeper<S, T>>>,
    /// Sleepers whose transport signalled readiness, or just put to sleep.
    ready: Vec<Arc<Sleeper<S, T>>>,
    /// When each sleeper has something due (deadline, keepalive), earliest first,
    /// with its key; an entry that comes up before its sleeper is due (the sleeper
    /// woke since, or another took its key) is skipped.
    due: BinaryHeap<Reverse<(Due, u32)>>,
    /// The keeper task, when it waits.
    task: Option<Waker>,
    running: bool,
    /// [`Hibernator::wake_all`] was called: wake everyone asleep now.
    wake_all: bool,
}

/// One sleeping connection. It is its own waker: readiness of its transport queues
/// it for the keeper.
struct Sleeper<S, T> {
    key: u32,
    slot: Mutex<Option<(Dormant<S>, T)>>,
    queued: AtomicBool,
    keeper: Weak<Keeper<S, T>>,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // Nothing under these locks panics; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S, T> Hibernator<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
{
    /// A hibernator whose sleepers, on waking, are handed to `on_wake` with their
    /// value and a handle to this hibernator; the future it returns is spawned.
    pub fn new<F, Fut>(on_wake: F) -> Self
    where
        F: Fn(Conn<S>, T, Hibernator<S, T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Fix the instant sleepers' times count from before any is put away.
        let _ = epoch();
        Hibernator::from_keeper(Arc::new(Keeper {
            state: Mutex::new(State {
                sleepers: Slab::new(),
                ready: Vec::new(),
                due: BinaryHeap::new(),
                task: None,
                running: false,
                wake_all: false,
            }),
            on_wake: Box::new(move |conn, value, handle| Box::pin(on_wake(conn, value, handle))),
            handles: AtomicUsize::new(0),
        }))
    }

    fn from_keeper(keeper: Arc<Keeper<S, T>>) -> Self {
        keeper.handles.fetch_add(1, Ordering::AcqRel);
        Hibernator { keeper }
    }

    /// Puts `conn` to sleep with `value`, if it is at rest (see the [module
    /// documentation](self)); otherwise, or outside a tokio runtime, gives both back
    /// unchanged. The caller's task can end: the connection is kept by the
    /// hibernator's task, started on the current runtime the first time. If that
    /// runtime shuts down, the connections asleep in it are dropped with it, and the
    /// next call starts the task anew on its own runtime.
    #[allow(clippy::result_large_err)]
    pub fn hibernate(&self, conn: Conn<S>, value: T) -> Result<(), (Conn<S>, T)> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err((conn, value));
        };
        let dormant = match conn.into_dormant() {
            Ok(d) => d,
            Err(conn) => return Err((conn, value)),
        };
        let due = dormant.due();
        let task = {
            let mut s = lock(&self.keeper.state);
            let entry = s.sleepers.vacant_entry();
            let Ok(key) = u32::try_from(entry.key()) else {
                drop(s);
                return Err((dormant.wake(bytes::BytesMut::new(), None), value));
            };
            let sleeper = Arc::new(Sleeper {
                key,
                slot: Mutex::new(Some((dormant, value))),
                // Queued below: the keeper's first read registers for readiness.
                queued: AtomicBool::new(true),
                keeper: Arc::downgrade(&self.keeper),
            });
            entry.insert(sleeper.clone());
            s.ready.push(sleeper);
            if let Some(at) = due {
                s.due.push(Reverse((Due::from(at), key)));
            }
            if !s.running {
                s.running = true;
                let stopped = Stopped(self.keeper.clone());
                runtime.spawn(tokio::task::unconstrained(keep(stopped)));
            }
            s.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
        Ok(())
    }

    /// How many connections sleep now.
    pub fn len(&self) -> usize {
        lock(&self.keeper.state).sleepers.len()
    }

    /// Whether no connection sleeps.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every connection asleep now (each handed to the wake function as if
    /// bytes had arrived): for a server shutting down, whose connections' tasks then
    /// close them as they do.
    pub fn wake_all(&self) {
        let task = {
            let mut s = lock(&self.keeper.state);
            s.wake_all = true;
            s.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<S, T> Clone for Hibernator<S, T> {
    fn clone(&self) -> Self {
        self.keeper.handles.fetch_add(1, Ordering::AcqRel);
        Hibernator {
            keeper: self.keeper.clone(),
        }
    }
}

impl<S, T> Drop for Hibernator<S, T> {
    fn drop(&mut self) {
        if self.keeper.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last handle: the keeper ends once nobody sleeps.
            let task = lock(&self.keeper.state).task.take();
            if let Some(task) = task {
                task.wake();
            }
        }
    }
}

impl<S, T> fmt::Debug for Hibernator<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hibernator")
            .field("asleep", &lock(&self.keeper.state).sleepers.len())
            .finish_non_exhaustive()
    }
}

impl<S, T> Wake for Sleeper<S, T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(keeper) = self.keeper.upgrade() else {
            return;
        };
        let task = {
            let mut s = lock(&keeper.state);
            s.ready.push(self.clone());
            s.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// An instant as nanoseconds from [`epoch`]: half the size of an `Instant` in the
/// heap of what is due.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due(u64);

impl From<Instant> for Due {
    fn from(at: Instant) -> Due {
        let n = at.saturating_duration_since(epoch()).as_nanos();
        Due(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl Due {
    fn instant(self) -> Instant {
        epoch() + std::time::Duration::from_nanos(self.0)
    }
}

/// Why a sleeper is woken.
enum Waking {
    /// Bytes arrived (or the end of the stream, or an error: the connection's first
    /// read finds out), with the rest of an answer to send first.
    Arrived(bytes::BytesMut, Option<bytes::Bytes>),
    /// Something was due, with the rest of a ping to send first.
    Due(Option<bytes::Bytes>),
}

/// The keeper task: reads for the sleepers that became ready, tends those with
/// something due, wakes whom it must. Never holds the state lock while it touches a
/// transport (a transport may wake its waker from inside a poll).
async fn keep<S, T>(stopped: Stopped<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
{
    let keeper = stopped.0.clone();
    let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut turns = 0;
    poll_fn(|cx| loop {
        let Some(work) = keeper.take_work(cx) else {
            return Poll::Ready(());
        };
        if turns == TURNS_PER_POLL && !work.is_empty() {
            // Let the runtime's other tasks (the connections just woken among
            // them) run; this work waits for the next poll.
            keeper.put_back(work);
            turns = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        turns += 1;
        if work.is_empty() {
            turns = 0;
            match work.next_due {
                Some(at) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
                }
                None => return Poll::Pending,
            }
        }
        for sleeper in work.all {
            keeper.wake(&sleeper, Waking::Due(None));
        }
        for sleeper in work.ready {
            sleeper.queued.store(false, Ordering::Release);
            let waker = Waker::from(sleeper.clone());
            let arrived = {
                let mut slot = lock(&sleeper.slot);
                match slot.as_mut() {
                    Some((dormant, _)) => dormant.poll_arrival(&mut Context::from_waker(&waker)),
                    None => Poll::Pending,
                }
            };
            let Poll::Ready(result) = arrived else {
                continue;
            };
            let bytes = match result {
                Ok(bytes) if !bytes.is_empty() => bytes,
                // The end of the stream or an error: the connection's read reports it.
                _ => {
                    keeper.wake(&sleeper, Waking::Arrived(bytes::BytesMut::new(), None));
                    continue;
                }
            };
            let now = Instant::now();
            let absorbed = {
                let mut slot = lock(&sleeper.slot);
                slot.as_mut().map(|(dormant, _)| {
                    let absorbed = dormant.absorb(&bytes, now, &mut Context::from_waker(&waker));
                    (absorbed, dormant.due())
                })
            };
            match absorbed {
                // Pings answered, pongs noted: asleep still. Its keepalive moved on,
                // and the transport must be read again (readiness is edge-triggered).
                Some((Absorbed::Yes, due)) => {
                    let mut s = lock(&keeper.state);
                    if let Some(at) = due {
                        s.due.push(Reverse((Due::from(at), sleeper.key)));
                    }
                    if !sleeper.queued.swap(true, Ordering::AcqRel) {
                        s.ready.push(sleeper.clone());
                    }
                }
                Some((Absorbed::Partly(unsent), _)) => {
                    keeper.wake(
                        &sleeper,
                        Waking::Arrived(bytes::BytesMut::new(), Some(unsent)),
                    );
                }
                Some((Absorbed::No, _)) => keeper.wake(&sleeper, Waking::Arrived(bytes, None)),
                None => {}
            }
        }
        let now = Instant::now();
        for sleeper in work.due {
            let waker = Waker::from(sleeper.clone());
            let tended = {
                let mut slot = lock(&sleeper.slot);
                match slot.as_mut() {
                    // Not its own entry (it came from an earlier sleeper of the
                    // same key): its own is still in the heap.
                    Some((dormant, _)) if dormant.due().is_none_or(|at| at > now) => None,
                    Some((dormant, _)) => Some(dormant.tend(now, &mut Context::from_waker(&waker))),
                    None => None,
                }
            };
            match tended {
                Some(Tend::Sleep(Some(at))) => {
                    let entry = Reverse((Due::from(at), sleeper.key));
                    lock(&keeper.state).due.push(entry);
                }
                Some(Tend::Sleep(None)) | None => {}
                Some(Tend::Wake(unsent)) => keeper.wake(&sleeper, Waking::Due(unsent)),
            }
        }
    })
    .await;
}

/// Owned by the keeper task from the moment it is spawned: when the task ends — or
/// its runtime shuts down and drops it, even before it first ran — the next
/// `hibernate` starts a new one, and the connections asleep with the old one are
/// dropped (their sockets belonged to that runtime).
struct Stopped<S, T>(Arc<Keeper<S, T>>);

impl<S, T> Drop for Stopped<S, T> {
    fn drop(&mut self) {
        let (sleepers, ready) = {
            let mut s = lock(&self.0.state);
            s.running = false;
            s.due.clear();
            (
                std::mem::take(&mut s.sleepers),
                std::mem::take(&mut s.ready),
            )
        };
        // Outside the lock: dropping a connection drops its transport.
        drop(ready);
        for (_, sleeper) in sleepers {
            drop(lock(&sleeper.slot).take());
        }
    }
}

/// Sleepers read for (or tended) in one turn of the keeper.
const PER_TURN: usize = 256;

/// Turns of the keeper before it lets other tasks run: a burst of arrivals for ten
/// thousand sleepers must not hold a runtime thread for the whole burst.
const TURNS_PER_POLL: usize = 4;

/// What the keeper task has to do in one turn (see [`Keeper::take_work`]).
struct Work<S, T> {
    ready: Vec<Arc<Sleeper<S, T>>>,
    due: Vec<Arc<Sleeper<S, T>>>,
    all: Vec<Arc<Sleeper<S, T>>>,
    next_due: Option<Instant>,
}

impl<S, T> Work<S, T> {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.due.is_empty() && self.all.is_empty()
    }
}

impl<S, T> Keeper<S, T> {
    /// Gives back work taken but not done (the keeper yields first).
    fn put_back(&self, work: Work<S, T>) {
        let mut s = lock(&self.state);
        let mut ready = work.ready;
        ready.append(&mut s.ready);
        s.ready = ready;
        for x in work.due {
            // Tended as soon as the keeper runs again (the entry was due).
            s.due.push(Reverse((Due(0), x.key)));
        }
        if !work.all.is_empty() {
            s.wake_all = true;
        }
    }

    /// Takes what is to be done now, registering the task (`cx`) if nothing is;
    /// `None` when the task should end (no handle left, nobody asleep).
    fn take_work(&self, cx: &Context<'_>) -> Option<Work<S, T>> {
        let mut s = lock(&self.state);
        if s.sleepers.is_empty() && self.handles.load(Ordering::Acquire) == 0 {
            s.running = false;
            return None;
        }
        let n = s.ready.len().min(PER_TURN);
        let ready: Vec<_> = s.ready.drain(..n).collect();
        let all = if std::mem::take(&mut s.wake_all) {
            s.sleepers.iter().map(|(_, x)| x.clone()).collect()
        } else {
            Vec::new()
        };
        let now = Instant::now();
        let mut due = Vec::new();
        let now = Due::from(now);
        while let Some(&Reverse((at, key))) = s.due.peek() {
            if at > now || due.len() == PER_TURN {
                break;
            }
            s.due.pop();
            // The entry may be of an earlier sleeper of the same key: the keeper
            // tends the sleeper only if something of its own is due.
            if let Some(x) = s.sleepers.get(key as usize) {
                due.push(x.clone());
            }
        }
        // Entries of sleepers woken since: dropped when they outnumber the living.
        if s.due.len() > 2 * s.sleepers.len() + 64 {
            let State { sleepers, due, .. } = &mut *s;
            due.retain(|Reverse((_, key))| sleepers.contains(*key as usize));
        }
        let work = Work {
            ready,
            due,
            all,
            next_due: s.due.peek().map(|Reverse((at, _))| at.instant()),
        };
        if work.is_empty() {
            s.task = Some(cx.waker().clone());
        }
        Some(work)
    }
}

impl<S, T> Keeper<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
{
    /// Takes `sleeper` out and hands its connection, awake, to the wake function in
    /// a new task.
    fn wake(self: &Arc<Self>, sleeper: &Arc<Sleeper<S, T>>, why: Waking) {
        let Some((dormant, value)) = lock(&sleeper.slot).take() else {
            return;
        };
        let conn = match why {
            Waking::Arrived(leftover, unsent) => dormant.wake(leftover, unsent),
            Waking::Due(unsent) => dormant.wake(bytes::BytesMut::new(), unsent),
        };
        let handle = Hibernator::from_keeper(self.clone());
        // Made (and spawned) before the sleeper leaves the count: whoever waits for
        // the hibernator to be empty (a server shutting down) finds the task.
        tokio::spawn((self.on_wake)(conn, value, handle));
        let mut s = lock(&self.state);
        let key = sleeper.key as usize;
        if s.sleepers.get(key).is_some_and(|x| Arc::ptr_eq(x, sleeper)) {
            s.sleepers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Hibernator, Sleeper, PER_TURN, TURNS_PER_POLL};
    use crate::{Config, Conn, Role};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt, DuplexStream};
    use tokio::net::TcpStream;

    /// More sleepers woken at once than the keeper takes before it yields: every
    /// one is woken, with its value, once.
    #[tokio::test]
    async fn a_burst_larger_than_the_keepers_turns_wakes_everyone_once() {
        let n = PER_TURN * TURNS_PER_POLL * 2 + 7;
        let woken = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(vec![0u8; n]));
        let (w, s2) = (woken.clone(), seen.clone());
        let sleeps: Hibernator<DuplexStream, usize> =
            Hibernator::new(move |mut conn: Conn<DuplexStream>, i: usize, _| {
                let (w, seen) = (w.clone(), s2.clone());
                async move {
                    let m = conn.read_message().await.expect("the message that woke it");
                    assert_eq!(m.as_bytes(), i.to_string().as_bytes());
                    seen.lock().unwrap()[i] += 1;
                    w.fetch_add(1, Ordering::SeqCst);
                }
            });
        let config = Config {
            keepalive: None,
            ..Config::default()
        };
        let mut peers = Vec::new();
        for i in 0..n {
            let (server, peer) = tokio::io::duplex(256);
            let conn = Conn::from_raw(server, Role::Server, &config, bytes::BytesMut::new());
            assert!(sleeps.hibernate(conn, i).is_ok());
            peers.push(peer);
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while sleeps.len() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("all asleep");
        // A masked text frame with the index, to every one at once.
        for (i, peer) in peers.iter_mut().enumerate() {
            let payload = i.to_string();
            let mut frame = bytes::BytesMut::new();
            crate::proto::encoder::encode_frame(
                &mut frame,
                crate::proto::OpCode::Text,
                true,
                false,
                Some([1, 2, 3, 4]),
                payload.as_bytes(),
            );
            peer.write_all(&frame).await.expect("write");
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while woken.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("all woken");
        assert!(seen.lock().unwrap().iter().all(|&c| c == 1));
        assert!(sleeps.is_empty());
    }

    /// A sleeping TCP connection with a pointer-sized value fits a 176-byte
    /// allocation (its `Arc` adds 16): the figure behind `yamabiko echo`'s bytes per
    /// idle connection. A field added here shows up in that measurement.
    #[test]
    fn a_sleeper_stays_small() {
        let size = std::mem::size_of::<Sleeper<TcpStream, usize>>();
        assert!(size <= 168, "Sleeper<TcpStream, usize> is {size} bytes");
    }
}
