//! A fault-injecting TCP proxy for network-fault tests.
//!
//! [`FaultProxy`] listens on `127.0.0.1`, and forwards every accepted connection to an
//! upstream address (the server). It runs on its own thread with its own tokio runtime, so
//! it keeps forwarding while the test thread blocks (in `psql`, a sleep, or another runtime's
//! `block_on`), and it can be driven from synchronous and asynchronous code alike.
//!
//! Faults ([`Fault`]) are injected
//!
//! * on command, through a [`ProxyHandle`] ([`ProxyHandle::inject`] applies a fault to every
//!   open connection now; [`ProxyHandle::inject_at`] arms it behind a [`Trigger`]), or
//! * by script: [`FaultProxy::script`] queues one [`ConnectionPlan`] per connection to be
//!   accepted (connection 1: reset after 50 KB from the server; connection 2: pass through;
//!   ...). Connections beyond the script use the default plan (pass-through unless set with
//!   [`FaultProxy::set_default_plan`]).
//!
//! Byte-offset triggers are exact: a chunk that crosses the offset is split, the bytes up to
//! the offset are forwarded, and the fault takes effect before the next byte. Every fault
//! that took effect is recorded ([`ProxyHandle::fired`]) so a test can assert that the fault
//! it meant to inject really happened.
//!
//! ```no_run
//! use std::time::Duration;
//! use walstream_test_support::{ConnectionPlan, Direction, Fault, FaultProxy, Trigger};
//!
//! # fn demo(server_port: u16) -> std::io::Result<()> {
//! let proxy = FaultProxy::start(("127.0.0.1", server_port))?;
//! proxy.script([
//!     // First connection: reset (RST) after 50 KB from the server.
//!     ConnectionPlan::new().at(Trigger::bytes(Direction::ToClient, 50_000), Fault::Reset),
//!     // Second connection: stall for 3 s after one second.
//!     ConnectionPlan::new().at(Trigger::after(Duration::from_secs(1)),
//!         Fault::Stall { direction: None, duration: Duration::from_secs(3) }),
//! ]);
//! let port = proxy.port(); // connect the client here instead of to the server
//! # let _ = port; Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// Size of the proxy's read buffer per direction.
const CHUNK: usize = 16 * 1024;

/// A direction of traffic through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server (upstream).
    ToServer,
    /// From the server to the client (downstream).
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }

    fn both() -> [Self; 2] {
        [Self::ToServer, Self::ToClient]
    }

    fn applies(selected: Option<Self>, this: Self) -> bool {
        selected.is_none_or(|d| d == this)
    }
}

/// A network fault.
///
/// Faults with a `direction` of `None` apply to both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Abort the connection on both sides with a TCP RST (`SO_LINGER` 0, then close): the
    /// peers see "connection reset by peer".
    Reset,
    /// Close the connection on both sides gracefully (FIN), dropping anything not yet
    /// forwarded.
    Close,
    /// Stop forwarding in `direction` and send FIN to that direction's receiver: it sees end
    /// of stream while the other direction keeps working.
    HalfClose(Direction),
    /// Stop forwarding for `duration` (nothing is read either, so the sender's buffers fill
    /// up and TCP back-pressure applies). `Duration::MAX` stalls until [`Fault::Resume`].
    Stall {
        /// The stalled direction (`None`: both).
        direction: Option<Direction>,
        /// How long.
        duration: Duration,
    },
    /// Hold every forwarded chunk for `delay` before writing it (from now on).
    Delay {
        /// The delayed direction (`None`: both).
        direction: Option<Direction>,
        /// The added delay per chunk.
        delay: Duration,
    },
    /// Limit the bandwidth to `bytes_per_sec` (from now on).
    Throttle {
        /// The throttled direction (`None`: both).
        direction: Option<Direction>,
        /// The rate; at least 1.
        bytes_per_sec: u64,
    },
    /// Forward `bytes` more bytes in `direction`, then close the connection on both sides:
    /// the receiver sees a message cut off mid-frame.
    Truncate {
        /// The truncated direction.
        direction: Direction,
        /// Bytes forwarded before the cut.
        bytes: u64,
    },
    /// End stalls, delays and throttling in `direction` (`None`: both).
    Resume {
        /// The direction (`None`: both).
        direction: Option<Direction>,
    },
}

/// When an armed fault takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// At once (for a script: when the connection is accepted).
    Now,
    /// After `bytes` more bytes were forwarded in `direction` (for a script: counted from
    /// the start of the connection, so it is the byte offset in that direction).
    Bytes {
        /// The direction counted.
        direction: Direction,
        /// The number of bytes.
        bytes: u64,
    },
    /// After a delay (for a script: from the connection's acceptance).
    After(Duration),
}

impl Trigger {
    /// [`Trigger::Bytes`]: after `bytes` bytes in `direction`.
    pub fn bytes(direction: Direction, bytes: u64) -> Self {
        Self::Bytes { direction, bytes }
    }

    /// [`Trigger::After`]: after `delay`.
    pub fn after(delay: Duration) -> Self {
        Self::After(delay)
    }
}

/// The faults for one connection, in arming order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ConnectionPlan {
    steps: Vec<(Trigger, Fault)>,
    refuse: bool,
}

impl ConnectionPlan {
    /// Pass-through: no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fault that takes effect at `trigger`.
    pub fn at(mut self, trigger: Trigger, fault: Fault) -> Self {
        self.steps.push((trigger, fault));
        self
    }

    /// Refuse the connection: it is reset right after being accepted, without contacting
    /// the server (the server looks down).
    pub fn refuse() -> Self {
        Self {
            steps: Vec::new(),
            refuse: true,
        }
    }
}

/// A fault that took effect, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredFault {
    /// The connection's number (1 = the first accepted).
    pub connection: u64,
    /// The fault.
    pub fault: Fault,
    /// Bytes forwarded to the server so far on that connection.
    pub to_server: u64,
    /// Bytes forwarded to the client so far on that connection.
    pub to_client: u64,
    /// When it took effect.
    pub at: Instant,
}

/// A running fault proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    handle: ProxyHandle,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle to control a [`FaultProxy`] from any thread or task.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<ProxyState>,
    /// Woken on every new connection and fired fault.
    activity: Notify,
    stop: Notify,
    stopping: AtomicBool,
}

#[derive(Debug, Default)]
struct ProxyState {
    script: VecDeque<ConnectionPlan>,
    default_plan: ConnectionPlan,
    accepted: u64,
    connected: u64,
    /// Weak: a connection's sockets close when its last task lets go of it.
    connections: Vec<std::sync::Weak<Conn>>,
    fired: Vec<FiredFault>,
    /// Bytes forwarded over all connections, by direction index.
    forwarded: [u64; 2],
}

impl FaultProxy {
    /// Starts a proxy on a free port of `127.0.0.1` forwarding to `upstream`.
    pub fn start(upstream: impl ToSocketAddrs) -> io::Result<Self> {
        let upstream = upstream.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "upstream has no address")
        })?;
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(ProxyState::default()),
            activity: Notify::new(),
            stop: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fault proxy: cannot register the listener: {e}");
                            return;
                        }
                    };
                    accept_loop(listener, thread_shared).await;
                });
                // Dropping the runtime here cancels every connection task, closing sockets.
            })?;
        Ok(Self {
            handle: ProxyHandle { shared },
            addr,
            thread: Some(thread),
        })
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port on `127.0.0.1`: point the client here.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A handle for controlling the proxy from elsewhere.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Queues plans for the next accepted connections, in order (appended to any plans still
    /// queued).
    pub fn script(&self, plans: impl IntoIterator<Item = ConnectionPlan>) {
        self.handle.lock().script.extend(plans);
    }

    /// The plan for connections accepted when the script is exhausted.
    pub fn set_default_plan(&self, plan: ConnectionPlan) {
        self.handle.lock().default_plan = plan;
    }
}

impl std::ops::Deref for FaultProxy {
    type Target = ProxyHandle;

    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.handle.shared.stopping.store(true, Ordering::SeqCst);
        self.handle.shared.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ProxyHandle {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        lock(&self.shared.state)
    }

    /// Applies `fault` to every open connection now.
    pub fn inject(&self, fault: Fault) {
        self.inject_at(Trigger::Now, fault);
    }

    /// Arms `fault` behind `trigger` on every open connection (byte counts and delays are
    /// counted from now).
    pub fn inject_at(&self, trigger: Trigger, fault: Fault) {
        let conns: Vec<Arc<Conn>> = self
            .lock()
            .connections
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for conn in conns {
            conn.arm(trigger, fault);
        }
    }

    /// Resets every open connection (shorthand for `inject(Fault::Reset)`).
    pub fn reset_all(&self) {
        self.inject(Fault::Reset);
    }

    /// Makes the proxy refuse (reset at once) every connection accepted from now on, or
    /// accept them normally again. Refusing clears the queued script.
    pub fn set_refusing(&self, refuse: bool) {
        let mut state = self.lock();
        state.default_plan = if refuse {
            ConnectionPlan::refuse()
        } else {
            ConnectionPlan::new()
        };
        if refuse {
            state.script.clear();
        }
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> u64 {
        self.lock().accepted
    }

    /// How many accepted connections were connected through to the server (from then on,
    /// [`inject`](Self::inject) reaches them).
    pub fn connected(&self) -> u64 {
        self.lock().connected
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.lock()
            .connections
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|c| !c.is_dead())
            .count()
    }

    /// Bytes forwarded in `direction` over all connections so far.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.lock().forwarded[direction.index()]
    }

    /// The faults that took effect so far, in order.
    pub fn fired(&self) -> Vec<FiredFault> {
        self.lock().fired.clone()
    }

    /// Waits (asynchronously) until at least `n` connections were accepted; `false` on
    /// timeout.
    pub async fn wait_accepted(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.accepted >= n).await
    }

    /// Waits (asynchronously) until at least `n` faults took effect; `false` on timeout.
    pub async fn wait_fired(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.fired.len() >= n).await
    }

    /// Waits (asynchronously) until at least `n` connections reached the server; `false` on
    /// timeout.
    pub async fn wait_connected(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connected >= n).await
    }

    /// [`wait_connected`](Self::wait_connected) for synchronous code (polls; do not call it
    /// from inside an async task).
    pub fn wait_connected_blocking(&self, n: u64, timeout: Duration) -> bool {
        self.poll_until(timeout, |s| s.connected >= n)
    }

    /// [`wait_accepted`](Self::wait_accepted) for synchronous code (polls; do not call it
    /// from inside an async task).
    pub fn wait_accepted_blocking(&self, n: u64, timeout: Duration) -> bool {
        self.poll_until(timeout, |s| s.accepted >= n)
    }

    /// [`wait_fired`](Self::wait_fired) for synchronous code.
    pub fn wait_fired_blocking(&self, n: usize, timeout: Duration) -> bool {
        self.poll_until(timeout, |s| s.fired.len() >= n)
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&ProxyState) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.activity.notified();
            if done(&self.lock()) {
                return true;
            }
            // A short poll interval as well: notify_waiters only reaches registered waiters.
            let step = tokio::time::Instant::now() + Duration::from_millis(20);
            if tokio::time::timeout_at(step.min(deadline), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return done(&self.lock());
            }
        }
    }

    fn poll_until(&self, timeout: Duration, done: impl Fn(&ProxyState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.lock()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not wedge the proxy).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let accepted = tokio::select! {
            () = shared.stop.notified() => return,
            r = listener.accept() => r,
        };
        let Ok((client, _)) = accepted else {
            // EMFILE and friends: back off a little and keep serving.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (id, plan) = {
            let mut state = lock(&shared.state);
            state.accepted += 1;
            state.connections.retain(|c| c.strong_count() > 0);
            let plan = state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default_plan.clone());
            (state.accepted, plan)
        };
        shared.activity.notify_waiters();
        tokio::spawn(serve(Arc::clone(&shared), id, client, plan));
    }
}

/// Sets `SO_LINGER` to 0 so that closing the socket sends RST.
fn set_reset_on_close(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn serve(shared: Arc<Shared>, id: u64, client: TcpStream, plan: ConnectionPlan) {
    let _ = client.set_nodelay(true);
    if plan.refuse {
        set_reset_on_close(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        set_reset_on_close(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (kill_tx, kill_rx) = watch::channel(Kill::No);
    let conn = Arc::new(Conn {
        id,
        shared: Arc::downgrade(&shared),
        runtime: tokio::runtime::Handle::current(),
        client: Arc::new(client),
        server: Arc::new(server),
        state: Mutex::new(ConnState::default()),
        counters: [AtomicU64::new(0), AtomicU64::new(0)],
        changed: Notify::new(),
        kill: kill_tx,
    });
    {
        let mut state = lock(&shared.state);
        state.connections.push(Arc::downgrade(&conn));
        state.connected += 1;
    }
    for (trigger, fault) in plan.steps {
        conn.arm(trigger, fault);
    }
    shared.activity.notify_waiters();
    let up = tokio::spawn(pump(
        Arc::clone(&conn),
        Direction::ToServer,
        kill_rx.clone(),
    ));
    let down = tokio::spawn(pump(Arc::clone(&conn), Direction::ToClient, kill_rx));
    let _ = up.await;
    let _ = down.await;
    conn.mark_dead();
    // The last references to the sockets go with `conn` (the pumps are done).
}

/// Whether (and how) a connection was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    No,
    Close,
    Reset,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    shared: std::sync::Weak<Shared>,
    /// The proxy's runtime, for timers armed from other threads.
    runtime: tokio::runtime::Handle,
    client: Arc<TcpStream>,
    server: Arc<TcpStream>,
    state: Mutex<ConnState>,
    /// Bytes forwarded, by direction index.
    counters: [AtomicU64; 2],
    /// Woken whenever the state changes.
    changed: Notify,
    kill: watch::Sender<Kill>,
}

#[derive(Debug, Default)]
struct ConnState {
    dirs: [DirState; 2],
    /// Byte-count triggers: (direction, absolute offset, fault).
    byte_triggers: Vec<(Direction, u64, Fault)>,
    dead: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct DirState {
    stall_until: Option<Instant>,
    delay: Duration,
    throttle: Option<u64>,
    /// Bytes still allowed before a truncation closes the connection.
    truncate_after: Option<u64>,
    half_closed: bool,
}

impl Conn {
    fn forwarded(&self, d: Direction) -> u64 {
        self.counters[d.index()].load(Ordering::SeqCst)
    }

    fn is_dead(&self) -> bool {
        lock(&self.state).dead || *self.kill.borrow() != Kill::No
    }

    fn mark_dead(&self) {
        lock(&self.state).dead = true;
    }

    fn arm(self: &Arc<Self>, trigger: Trigger, fault: Fault) {
        match trigger {
            Trigger::Now => self.fire(fault),
            Trigger::Bytes { direction, bytes } => {
                let at = self.forwarded(direction).saturating_add(bytes);
                lock(&self.state).byte_triggers.push((direction, at, fault));
                self.changed.notify_waiters();
                if bytes == 0 {
                    self.fire_due(direction);
                }
            }
            Trigger::After(delay) => {
                // Weak: a pending timer must not keep the sockets open.
                let conn = Arc::downgrade(self);
                let mut kill = self.kill.subscribe();
                self.runtime.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {
                            if let Some(conn) = conn.upgrade() {
                                conn.fire(fault);
                            }
                        }
                        _ = kill.wait_for(|k| *k != Kill::No) => {}
                    }
                });
            }
        }
    }

    /// Fires the byte triggers of `d` whose offset was reached.
    fn fire_due(&self, d: Direction) {
        let done = self.forwarded(d);
        let due: Vec<Fault> = {
            let mut state = lock(&self.state);
            let mut due = Vec::new();
            state.byte_triggers.retain(|&(dir, at, fault)| {
                if dir == d && at <= done {
                    due.push(fault);
                    false
                } else {
                    true
                }
            });
            due
        };
        for fault in due {
            self.fire(fault);
        }
    }

    /// The most bytes `d` may forward before a trigger or a truncation must be handled.
    fn budget(&self, d: Direction) -> u64 {
        let done = self.forwarded(d);
        let state = lock(&self.state);
        let mut budget = u64::MAX;
        for &(dir, at, _) in &state.byte_triggers {
            if dir == d {
                budget = budget.min(at.saturating_sub(done));
            }
        }
        if let Some(left) = state.dirs[d.index()].truncate_after {
            budget = budget.min(left);
        }
        budget
    }

    fn fire(&self, fault: Fault) {
        if *self.kill.borrow() != Kill::No {
            return;
        }
        self.record(fault);
        match fault {
            Fault::Reset => {
                set_reset_on_close(&self.client);
                set_reset_on_close(&self.server);
                self.kill.send_replace(Kill::Reset);
            }
            Fault::Close => {
                self.kill.send_replace(Kill::Close);
            }
            Fault::HalfClose(d) => {
                lock(&self.state).dirs[d.index()].half_closed = true;
                let _ = SockRef::from(self.destination(d).as_ref()).shutdown(Shutdown::Write);
            }
            Fault::Stall {
                direction,
                duration,
            } => {
                let until = Instant::now().checked_add(duration);
                let mut state = lock(&self.state);
                for d in Direction::both() {
                    if Direction::applies(direction, d) {
                        // `None` (overflow) means "until resumed": a far-future instant.
                        state.dirs[d.index()].stall_until = Some(until.unwrap_or_else(|| {
                            Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
                        }));
                    }
                }
            }
            Fault::Delay { direction, delay } => {
                let mut state = lock(&self.state);
                for d in Direction::both() {
                    if Direction::applies(direction, d) {
                        state.dirs[d.index()].delay = delay;
                    }
                }
            }
            Fault::Throttle {
                direction,
                bytes_per_sec,
            } => {
                let mut state = lock(&self.state);
                for d in Direction::both() {
                    if Direction::applies(direction, d) {
                        state.dirs[d.index()].throttle = Some(bytes_per_sec.max(1));
                    }
                }
            }
            Fault::Truncate { direction, bytes } => {
                lock(&self.state).dirs[direction.index()].truncate_after = Some(bytes);
                if bytes == 0 {
                    self.kill.send_replace(Kill::Close);
                }
            }
            Fault::Resume { direction } => {
                let mut state = lock(&self.state);
                for d in Direction::both() {
                    if Direction::applies(direction, d) {
                        let s = &mut state.dirs[d.index()];
                        s.stall_until = None;
                        s.delay = Duration::ZERO;
                        s.throttle = None;
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    fn record(&self, fault: Fault) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let fired = FiredFault {
            connection: self.id,
            fault,
            to_server: self.forwarded(Direction::ToServer),
            to_client: self.forwarded(Direction::ToClient),
            at: Instant::now(),
        };
        lock(&shared.state).fired.push(fired);
        shared.activity.notify_waiters();
    }

    fn source(&self, d: Direction) -> &Arc<TcpStream> {
        match d {
            Direction::ToServer => &self.client,
            Direction::ToClient => &self.server,
        }
    }

    fn destination(&self, d: Direction) -> &Arc<TcpStream> {
        match d {
            Direction::ToServer => &self.server,
            Direction::ToClient => &self.client,
        }
    }

    fn dir(&self, d: Direction) -> DirState {
        lock(&self.state).dirs[d.index()]
    }

    /// Waits while `d` is stalled. Returns `false` when the connection was killed or the
    /// direction half-closed.
    async fn wait_unstalled(&self, d: Direction, kill: &mut watch::Receiver<Kill>) -> bool {
        loop {
            let changed = self.changed.notified();
            if *kill.borrow() != Kill::No {
                return false;
            }
            let s = self.dir(d);
            if s.half_closed {
                return false;
            }
            let Some(until) = s.stall_until else {
                return true;
            };
            let now = Instant::now();
            if until <= now {
                lock(&self.state).dirs[d.index()].stall_until = None;
                return true;
            }
            let sleep = until - now;
            tokio::select! {
                () = tokio::time::sleep(sleep.min(Duration::from_secs(3600))) => {}
                () = changed => {}
                _ = kill.changed() => {}
            }
        }
    }
}

/// Forwards direction `d` of `conn` until end of stream, an error or a kill.
async fn pump(conn: Arc<Conn>, d: Direction, mut kill: watch::Receiver<Kill>) {
    let src = Arc::clone(conn.source(d));
    let dst = Arc::clone(conn.destination(d));
    let mut buf = vec![0u8; CHUNK];
    loop {
        if !conn.wait_unstalled(d, &mut kill).await {
            break;
        }
        let read = tokio::select! {
            r = read_some(&src, &mut buf) => r,
            _ = kill.changed() => break,
            () = conn.changed.notified() => continue,
        };
        let n = match read {
            Ok(0) => {
                // End of stream: pass the FIN on, keep the other direction going.
                let _ = SockRef::from(dst.as_ref()).shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => {
                // The peer reset or failed: abort the other side the same way.
                abort(&conn);
                return;
            }
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if !conn.wait_unstalled(d, &mut kill).await {
                return;
            }
            let budget = conn.budget(d);
            if budget == 0 {
                // A trigger at this exact offset (armed while we were reading) or an
                // exhausted truncation.
                conn.fire_due(d);
                if conn.dir(d).truncate_after == Some(0) {
                    conn.kill.send_if_modified(|k| {
                        let was = *k;
                        if was == Kill::No {
                            *k = Kill::Close;
                        }
                        was == Kill::No
                    });
                    return;
                }
                continue;
            }
            let s = conn.dir(d);
            let mut take = usize::try_from(budget)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            if let Some(rate) = s.throttle {
                // Write in slices of ~50 ms worth of data.
                let slice = usize::try_from((rate / 20).max(1)).unwrap_or(usize::MAX);
                take = take.min(slice);
            }
            if !s.delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(s.delay) => {}
                    _ = kill.changed() => return,
                }
            }
            let written = tokio::select! {
                r = write_all(&dst, &chunk[..take]) => r,
                _ = kill.changed() => return,
            };
            if written.is_err() {
                abort(&conn);
                return;
            }
            let take_u64 = u64::try_from(take).unwrap_or(u64::MAX);
            conn.counters[d.index()].fetch_add(take_u64, Ordering::SeqCst);
            if let Some(shared) = conn.shared.upgrade() {
                lock(&shared.state).forwarded[d.index()] += take_u64;
            }
            chunk = &chunk[take..];
            let truncated = {
                let mut state = lock(&conn.state);
                let t = &mut state.dirs[d.index()].truncate_after;
                if let Some(left) = t {
                    *left = left.saturating_sub(take_u64);
                }
                *t == Some(0)
            };
            conn.fire_due(d);
            if truncated {
                conn.kill.send_if_modified(|k| {
                    let was = *k;
                    if was == Kill::No {
                        *k = Kill::Close;
                    }
                    was == Kill::No
                });
                return;
            }
            if let Some(rate) = s.throttle {
                let nanos = take_u64.saturating_mul(1_000_000_000) / rate;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_nanos(nanos)) => {}
                    _ = kill.changed() => return,
                }
            }
        }
    }
}

/// Resets both sides of `conn` after an error on one of them.
fn abort(conn: &Conn) {
    set_reset_on_close(&conn.client);
    set_reset_on_close(&conn.server);
    conn.kill.send_if_modified(|k| {
        let was = *k;
        if was == Kill::No {
            *k = Kill::Reset;
        }
        was == Kill::No
    });
}

async fn read_some(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(s: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    /// An echo server on its own thread: echoes everything, one thread per connection.
    struct Echo {
        port: u16,
    }

    fn echo_server() -> Echo {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { port }
    }

    /// Connects and waits until the proxy reached the server for this connection.
    fn connect(proxy: &FaultProxy) -> StdStream {
        let before = proxy.accepted();
        let s = StdStream::connect(proxy.addr()).unwrap();
        assert!(proxy.wait_accepted_blocking(before + 1, Duration::from_secs(5)));
        let _ = proxy.wait_connected_blocking(before + 1, Duration::from_millis(500));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Reads until EOF or error; returns the bytes and the error kind (None for EOF).
    fn read_to_end(s: &mut StdStream) -> (Vec<u8>, Option<io::ErrorKind>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.kind())),
            }
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i % 251).unwrap()).collect()
    }

    #[test]
    fn passes_traffic_through() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        let data = pattern(200_000);
        let mut writer = s.try_clone().unwrap();
        let sent = data.clone();
        let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, data);
        assert_eq!(proxy.forwarded(Direction::ToServer), 200_000);
        assert!(proxy.wait_accepted_blocking(1, Duration::from_secs(1)));
        assert!(proxy.fired().is_empty());
    }

    #[test]
    fn scripted_reset_at_exact_offset_then_pass_through() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        proxy.script([
            ConnectionPlan::new().at(Trigger::bytes(Direction::ToClient, 50_000), Fault::Reset)
        ]);
        let mut s = connect(&proxy);
        let data = pattern(120_000);
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        std::thread::spawn(move || {
            let _ = w.write_all(&sent);
        });
        let (got, err) = read_to_end(&mut s);
        assert_eq!(got.len(), 50_000, "exactly the bytes before the offset");
        assert_eq!(got, data[..50_000]);
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
        let fired = proxy.fired();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].fault, Fault::Reset);
        assert_eq!(fired[0].connection, 1);
        assert_eq!(fired[0].to_client, 50_000);

        // The second connection passes through.
        let mut s = connect(&proxy);
        s.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(proxy.accepted(), 2);
    }

    #[test]
    fn truncate_cuts_mid_message_with_fin() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        proxy.script([ConnectionPlan::new().at(
            Trigger::bytes(Direction::ToClient, 10),
            Fault::Truncate {
                direction: Direction::ToClient,
                bytes: 3,
            },
        )]);
        let mut s = connect(&proxy);
        s.write_all(b"0123456789abcdefghij").unwrap();
        let (got, err) = read_to_end(&mut s);
        assert_eq!(got, b"0123456789abc");
        assert_eq!(err, None, "a clean end of stream mid-message");
    }

    #[test]
    fn half_close_ends_one_direction_only() {
        // A server that reports how many bytes it received once it sees EOF... here: the
        // echo server stops when the client->server direction is half-closed, so the client
        // sees EOF on its reads while its own writes still succeed.
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        s.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        proxy.inject(Fault::HalfClose(Direction::ToClient));
        let (rest, err) = read_to_end(&mut s);
        assert!(rest.is_empty());
        assert_eq!(err, None, "EOF towards the client");
        // Writing towards the server still works (the proxy keeps forwarding it).
        s.write_all(b"more").unwrap();
        let before = proxy.forwarded(Direction::ToServer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.forwarded(Direction::ToServer) < before + 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(proxy.forwarded(Direction::ToServer), 8);
    }

    #[test]
    fn stall_holds_traffic_until_it_ends() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        proxy.inject(Fault::Stall {
            direction: None,
            duration: Duration::from_millis(600),
        });
        let start = Instant::now();
        s.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(550), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn stall_until_resumed() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        proxy.inject(Fault::Stall {
            direction: Some(Direction::ToClient),
            duration: Duration::MAX,
        });
        s.write_all(b"y").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = [0u8; 1];
        let e = s.read_exact(&mut got).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        proxy.inject(Fault::Resume { direction: None });
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"y");
    }

    #[test]
    fn delay_and_throttle_slow_traffic_down() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        proxy.inject(Fault::Delay {
            direction: Some(Direction::ToServer),
            delay: Duration::from_millis(300),
        });
        let start = Instant::now();
        s.write_all(b"d").unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(280));

        proxy.inject(Fault::Resume { direction: None });
        proxy.inject(Fault::Throttle {
            direction: Some(Direction::ToClient),
            bytes_per_sec: 20_000,
        });
        let data = pattern(10_000);
        let start = Instant::now();
        s.write_all(&data).unwrap();
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got).unwrap();
        let took = start.elapsed();
        assert_eq!(got, data);
        // 10 kB at 20 kB/s: about half a second.
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn timed_fault_and_refusal() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        proxy.script([
            ConnectionPlan::new().at(Trigger::after(Duration::from_millis(200)), Fault::Reset)
        ]);
        let mut s = connect(&proxy);
        let start = Instant::now();
        let (_, err) = read_to_end(&mut s);
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
        assert!(start.elapsed() >= Duration::from_millis(150));

        proxy.set_refusing(true);
        let mut s = connect(&proxy);
        let (got, err) = read_to_end(&mut s);
        assert!(got.is_empty());
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
        proxy.set_refusing(false);
        let mut s = connect(&proxy);
        s.write_all(b"ok").unwrap();
        let mut got = [0u8; 2];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
    }

    #[test]
    fn inject_at_counts_from_now_and_handle_waits() {
        let echo = echo_server();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        s.write_all(&pattern(1000)).unwrap();
        let mut got = vec![0u8; 1000];
        s.read_exact(&mut got).unwrap();
        // The proxy counts a chunk once its write returned, a hair after the client can read it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.forwarded(Direction::ToClient) < 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        proxy.inject_at(Trigger::bytes(Direction::ToClient, 100), Fault::Close);
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&pattern(5000));
        });
        let (rest, _) = read_to_end(&mut s);
        assert_eq!(rest.len(), 100);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = proxy.handle();
        assert!(rt.block_on(handle.wait_fired(1, Duration::from_secs(2))));
        assert!(rt.block_on(handle.wait_accepted(1, Duration::from_secs(2))));
        assert!(!rt.block_on(handle.wait_accepted(2, Duration::from_millis(100))));
        assert_eq!(handle.fired()[0].to_client, 1100);
    }

    #[test]
    fn upstream_down_resets_client() {
        // A port with nothing listening.
        let port = {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = FaultProxy::start(("127.0.0.1", port)).unwrap();
        let mut s = connect(&proxy);
        let (got, err) = read_to_end(&mut s);
        assert!(got.is_empty());
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
    }
}
