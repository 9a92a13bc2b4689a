//! The CPU kernels' thread pools: each CPU model has two of the same size, one for work a
//! live request waits on and one whose threads are niced for work only background requests
//! (a batch's) wait on. On a machine with few cores the kernel then gives the cores to the
//! live request's own work (its plugin call, its prompt) before a batch's next step, which
//! the engine cannot interrupt once started.
//!
//! Which pool a call uses is said by the engine thread that makes it ([`as_background`]),
//! so the model code stays free of scheduling arguments.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::CoreError;

/// Niceness of background pools started from now on (set once at start-up).
static BACKGROUND_NICE: AtomicI32 = AtomicI32::new(10);
/// Whether background pools started from now on run in the `SCHED_IDLE` class.
static BACKGROUND_IDLE: AtomicBool = AtomicBool::new(true);

/// Forward passes a live request waits on, running now anywhere in the process (every
/// model's): background passes of other models wait between two layers while there are any,
/// so a live chat request does not share the cores with an embeddings batch, nor a live
/// embedding with a chat batch. Niced threads alone still take a share of the cores.
static LIVE_PASSES: AtomicUsize = AtomicUsize::new(0);

/// Live requests anywhere in the process from when they reach a model's engine to their
/// first output (a token, or the vectors): background kernel work of the other models
/// sleeps while there are any, between two chunks of a matmul, so a live request's own
/// single-threaded moments (sampling, its plugin, its response) do not share the machine
/// with a batch either. Each model's engine also counts its own ([`LiveRequest`]).
static LIVE_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// The longest a background pass waits for live work at one layer boundary or one chunk of
/// a matmul: live passes that follow each other without a gap must not starve it.
pub(crate) const MAX_LIVE_WAIT: Duration = Duration::from_millis(50);

/// How often a waiting background thread looks again.
const LIVE_POLL: Duration = Duration::from_micros(200);

thread_local! {
    static BACKGROUND: Cell<bool> = const { Cell::new(false) };
    static PREEMPT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    /// On a background pool's threads: the live requests of the model the pool belongs to
    /// (which its own engine serves first; its background work must not wait for them).
    static OWN_LIVE: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// A live request counted in the process's live requests and in its model's, until dropped.
#[derive(Debug)]
pub(crate) struct LiveRequest {
    own: Arc<AtomicUsize>,
}

impl LiveRequest {
    /// Counts a live request of the model whose engine counts its own in `own`.
    pub(crate) fn new(own: &Arc<AtomicUsize>) -> Self {
        LIVE_REQUESTS.fetch_add(1, Ordering::Relaxed);
        own.fetch_add(1, Ordering::Relaxed);
        LiveRequest { own: own.clone() }
    }
}

impl Drop for LiveRequest {
    fn drop(&mut self) {
        self.own.fetch_sub(1, Ordering::Relaxed);
        LIVE_REQUESTS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether background work of the model counting its live requests in `own` should sleep:
/// another model has live work, and this one none (its engine is running the background
/// step a live request of its own waits behind: that step must end soon, not sleep).
fn others_live(own: &AtomicUsize) -> bool {
    own.load(Ordering::Relaxed) == 0
        && (LIVE_PASSES.load(Ordering::Relaxed) > 0 || LIVE_REQUESTS.load(Ordering::Relaxed) > 0)
}

/// Whether the calling thread is one of a background pool's (kernels cut their work finer
/// there, to sleep between the pieces).
pub(crate) fn in_background_pool() -> bool {
    OWN_LIVE.with(|own| own.borrow().is_some())
}

/// What a kernel calls before each chunk of its work: on a background pool's thread, a
/// sleep while another model has live work (at most [`MAX_LIVE_WAIT`]); elsewhere nothing.
/// A layer of an embeddings batch takes milliseconds, as long as a whole live request's
/// first token, so waiting only between layers would leave most of it overlapping.
#[inline]
pub(crate) fn yield_to_live() {
    OWN_LIVE.with(|own| {
        if let Some(own) = own.borrow().as_deref() {
            let start = Instant::now();
            while others_live(own) && start.elapsed() < MAX_LIVE_WAIT {
                std::thread::sleep(LIVE_POLL);
            }
        }
    });
}

/// How threads doing background work are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Background {
    /// Niceness, 0 to 19; 0 runs background work like live work.
    pub nice: i32,
    /// Also Linux's `SCHED_IDLE` class (when `nice` > 0): a live thread that wakes takes the
    /// core from a background one at once, instead of when the latter's time slice ends (a
    /// niced thread keeps the core for up to a slice, a few milliseconds, each time a live
    /// request's work hops from one thread to the next).
    pub idle_class: bool,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            nice: 10,
            idle_class: true,
        }
    }
}

/// How the background pools of models loaded from now on are scheduled.
pub fn set_background(background: Background) {
    BACKGROUND_NICE.store(background.nice.clamp(0, 19), Ordering::Relaxed);
    BACKGROUND_IDLE.store(background.idle_class, Ordering::Relaxed);
}

/// Runs `f` on the calling thread with its kernel calls going to the background pools when
/// `background`.
pub(crate) fn as_background<R>(background: bool, f: impl FnOnce() -> R) -> R {
    let before = BACKGROUND.with(|b| b.replace(background));
    let out = f();
    BACKGROUND.with(|b| b.set(before));
    out
}

/// Runs `f` on the calling thread with `flag` as its preemption flag: a model's forward
/// that sees it set between two layers stops and returns [`CoreError::Preempted`].
pub(crate) fn preemptible<R>(flag: &Arc<AtomicBool>, f: impl FnOnce() -> R) -> R {
    let before = PREEMPT.with(|p| p.replace(Some(flag.clone())));
    let out = f();
    PREEMPT.with(|p| *p.borrow_mut() = before);
    out
}

/// The calling thread's preemption flag, if its work may be stopped (read before handing
/// the work to a pool, whose threads do not see it).
pub(crate) fn preempt_flag() -> Option<Arc<AtomicBool>> {
    PREEMPT.with(|p| p.borrow().clone())
}

/// Runs `f`, a forward pass a live request waits on, counted in the process's live passes
/// (also when it panics).
pub(crate) fn live_pass<R>(f: impl FnOnce() -> R) -> R {
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE_PASSES.fetch_sub(1, Ordering::Relaxed);
        }
    }
    LIVE_PASSES.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted;
    f()
}

/// What a model calls between two layers of a forward pass, made on the engine's thread
/// before the pass goes to a pool (whose threads do not know whose work it is): for
/// background work, a wait while a live pass runs in the process (at most
/// [`MAX_LIVE_WAIT`] each time); for live work, nothing.
pub(crate) fn between_layers() -> impl Fn() + Sync + Send {
    let background = BACKGROUND.with(Cell::get);
    move || {
        if background {
            let start = Instant::now();
            while LIVE_PASSES.load(Ordering::Relaxed) > 0 && start.elapsed() < MAX_LIVE_WAIT {
                std::thread::sleep(LIVE_POLL);
            }
        }
    }
}

/// What background work whose kernels are not cut by a pool (a diffusion model's, in
/// burn) calls between two pieces of a step (a UNet's blocks): while any live request or
/// live pass is in the process, a sleep, at most [`MAX_LIVE_WAIT`] each time. A live chat
/// request's first token then shares the cores with no more than one such piece.
pub(crate) fn pause_for_live() {
    if BACKGROUND.with(Cell::get) {
        let start = Instant::now();
        while (LIVE_PASSES.load(Ordering::Relaxed) > 0 || LIVE_REQUESTS.load(Ordering::Relaxed) > 0)
            && start.elapsed() < MAX_LIVE_WAIT
        {
            std::thread::sleep(LIVE_POLL);
        }
    }
}

/// A model's two pools.
pub(crate) struct Pools {
    live: rayon::ThreadPool,
    background: rayon::ThreadPool,
    /// The model's live requests, counted by its engine ([`LiveRequest`]).
    own_live: Arc<AtomicUsize>,
}

impl Pools {
    pub(crate) fn new(name: &'static str, threads: usize) -> Result<Self, CoreError> {
        let failed = |e: rayon::ThreadPoolBuildError| {
            CoreError::Backend(format!("starting the CPU thread pool: {e}"))
        };
        let background = Background {
            nice: BACKGROUND_NICE.load(Ordering::Relaxed),
            idle_class: BACKGROUND_IDLE.load(Ordering::Relaxed),
        };
        let own_live = Arc::new(AtomicUsize::new(0));
        let own = own_live.clone();
        Ok(Pools {
            own_live,
            live: rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(move |i| format!("{name}-{i}"))
                .build()
                .map_err(failed)?,
            background: rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(move |i| format!("{name}-bg-{i}"))
                .start_handler(move |_| {
                    lower_priority(background);
                    OWN_LIVE.with(|o| *o.borrow_mut() = Some(own.clone()));
                })
                .build()
                .map_err(failed)?,
        })
    }

    /// The counter the model's engine keeps its live requests in.
    pub(crate) fn own_live(&self) -> Arc<AtomicUsize> {
        self.own_live.clone()
    }

    /// Runs `op` on the background pool, marked background there too (so that what it
    /// calls pauses for live work: [`pause_for_live`]), when `background`; else on the live
    /// pool.
    pub(crate) fn install_for<R: Send>(
        &self,
        background: bool,
        op: impl FnOnce() -> R + Send,
    ) -> R {
        as_background(background, || {
            self.install(|| as_background(background, op))
        })
    }

    /// Runs `op` on the pool the calling thread asked for.
    pub(crate) fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        if BACKGROUND.with(Cell::get) {
            self.background.install(op)
        } else {
            self.live.install(op)
        }
    }
}

/// Schedules the calling thread as `background` says (Linux keeps both per thread): for
/// every thread that does background work, the runtime's job threads too. Failing is not
/// fatal: background work then competes like live work.
pub fn lower_priority(background: Background) {
    let nice = background.nice;
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is passed but a
        // local `sched_param` the call only reads.
        let (niced, idle) = unsafe {
            let tid = libc::gettid();
            let niced = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
            let idle = if background.idle_class {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param)
            } else {
                0
            };
            (niced, idle)
        };
        if niced != 0 || idle != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), nice, "cannot lower a background thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's niceness and scheduling class.
    fn priority_of_this_thread() -> (i32, i32) {
        // SAFETY: reads the calling thread's own niceness and policy.
        unsafe {
            let tid = libc::gettid();
            (
                libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                libc::sched_getscheduler(tid),
            )
        }
    }

    #[test]
    fn background_calls_run_on_niced_idle_class_threads_and_live_calls_do_not() {
        let pools = Pools::new("test-pool", 2).unwrap();
        let base = priority_of_this_thread();
        let live = as_background(false, || pools.install(priority_of_this_thread));
        let background = as_background(true, || pools.install(priority_of_this_thread));
        let after = pools.install(priority_of_this_thread);
        assert_eq!(live, base);
        assert_eq!(after, base, "the flag is restored after the call");
        assert_eq!(background, ((base.0 + 10).min(19), libc::SCHED_IDLE));
        // Without the idle class: niced only.
        let thread = std::thread::spawn(|| {
            lower_priority(Background {
                nice: 5,
                idle_class: false,
            });
            priority_of_this_thread()
        });
        assert_eq!(thread.join().unwrap(), ((base.0 + 5).min(19), base.1));
    }

    #[test]
    fn background_work_pauses_between_pieces_while_a_live_request_waits() {
        let own = Arc::new(AtomicUsize::new(0));
        let live = LiveRequest::new(&own);
        // Live work never pauses.
        let t = Instant::now();
        pause_for_live();
        assert!(t.elapsed() < MAX_LIVE_WAIT);
        // Background work pauses, up to its bound, on whichever pool thread runs it.
        let pools = Pools::new("test-pause", 1).unwrap();
        let waited = pools.install_for(true, || {
            let t = Instant::now();
            pause_for_live();
            t.elapsed()
        });
        assert!(waited >= MAX_LIVE_WAIT, "{waited:?}");
        drop(live);
    }

    #[test]
    fn background_passes_wait_between_layers_while_a_live_pass_runs() {
        let live_between = between_layers();
        let background_between = as_background(true, between_layers);
        let (started, go) = std::sync::mpsc::channel();
        let (release, done) = std::sync::mpsc::channel::<()>();
        let live = std::thread::spawn(move || {
            live_pass(|| {
                started.send(()).unwrap();
                done.recv().unwrap();
            })
        });
        go.recv().unwrap();
        assert!(LIVE_PASSES.load(Ordering::Relaxed) >= 1);
        // Live work never waits; background work waits for the live pass, up to its bound.
        live_between();
        let waited = Instant::now();
        background_between();
        assert!(waited.elapsed() >= MAX_LIVE_WAIT);
        release.send(()).unwrap();
        live.join().unwrap();
        // A pass that panics leaves the count as it found it.
        let before = LIVE_PASSES.load(Ordering::Relaxed);
        let _ = std::panic::catch_unwind(|| live_pass(|| panic!("a kernel bug")));
        assert_eq!(LIVE_PASSES.load(Ordering::Relaxed), before);
    }

    #[test]
    fn background_kernel_chunks_sleep_while_another_model_has_a_live_request() {
        let pools = Pools::new("test-yield", 2).unwrap();
        let other = Arc::new(AtomicUsize::new(0));
        let chunk = || {
            let start = Instant::now();
            as_background(true, || pools.install(yield_to_live));
            start.elapsed()
        };
        // Another model's live request: the background chunk waits, up to its bound.
        let live = LiveRequest::new(&other);
        assert!(chunk() >= MAX_LIVE_WAIT);
        // Live work never waits, even beside it.
        let start = Instant::now();
        pools.install(yield_to_live);
        assert!(start.elapsed() < MAX_LIVE_WAIT);
        drop(live);
        assert_eq!(other.load(Ordering::Relaxed), 0);
        // A live request of the pool's own model means its background step is in the way
        // (its engine serves the live one next): that step never sleeps, whatever else is
        // live.
        let live = LiveRequest::new(&other);
        let own = LiveRequest::new(&pools.own_live());
        assert!(chunk() < MAX_LIVE_WAIT / 2);
        drop((own, live));
        assert_eq!(pools.own_live().load(Ordering::Relaxed), 0);
    }
}
