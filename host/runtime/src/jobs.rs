//! Running background jobs: workers that take the jobs of the loaded job plugins from the
//! store and hand each to its plugin's `job-runner.step`, one step after another, saving the
//! progress each step returns with a lease renewal. The lease is also renewed while a step
//! runs, so a long step keeps its job; a process that dies stops renewing, and once the lease
//! runs out another process (a replica, or this one after its restart) takes the job up from
//! its last saved progress. A job taken too many times, or whose steps keep failing, is ended:
//! one last step with `ending` set lets the family record why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cinder_store::{Job, JobState, Renewal, Store};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Runtime;
use crate::bindings::job_world::exports::cinder::plugin::job_runner as x;
use crate::failure::{CallError, PluginError};
use crate::plugin::Plugin;

/// How this process runs background jobs (`[jobs]` in the config).
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Jobs of each kind this process runs at once (0: none; a replica that only serves).
    pub workers: usize,
    /// How long a taken job stays this process's without a renewal.
    pub lease: Duration,
    /// How often idle workers look for jobs queued by other processes.
    pub poll: Duration,
    /// Times a job may be taken (each crash or restart mid-job takes it once more) before
    /// it is ended as failed.
    pub max_attempts: u32,
    /// Failed steps in a row before the job is ended as failed.
    pub step_retries: u32,
    /// Requests job steps may have running at once through `dispatch`, across the process.
    pub dispatch_concurrency: usize,
    /// How the threads job steps run on are scheduled (niceness 0: like live requests).
    pub background: cinder_core::Background,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            workers: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            max_attempts: 3,
            step_retries: 3,
            dispatch_concurrency: 4,
            background: cinder_core::Background::default(),
        }
    }
}

/// What a call may do with jobs.
#[derive(Clone)]
pub(crate) struct JobLink {
    /// The kinds its plugin's manifest declares.
    pub(crate) kinds: Arc<[String]>,
    /// Wakes this process's idle workers when a job is queued.
    pub(crate) wake: Arc<Wakes>,
    /// Set in a job step.
    pub(crate) step: Option<StepLink>,
    /// The call was made by a job step: its generations yield to live traffic.
    pub(crate) background: bool,
}

/// What a job step reaches beyond a request.
#[derive(Clone)]
pub(crate) struct StepLink {
    /// The runtime its `dispatch` calls go through.
    pub(crate) runtime: std::sync::Weak<Runtime>,
    /// The job's id and this process's lease name: the blobs the step writes are pending on
    /// them until the step's progress is saved.
    pub(crate) job: String,
    pub(crate) holder: String,
}

impl JobLink {
    /// The (job, holder) the blobs this call writes are pending on: none outside a job step.
    pub(crate) fn pending(&self) -> Option<(&str, &str)> {
        self.step
            .as_ref()
            .map(|s| (s.job.as_str(), s.holder.as_str()))
    }
}

/// Why a step did not finish.
#[derive(Debug)]
enum StepFailure {
    Call(CallError),
    /// The lease was lost while the step ran (another process took the job, or it was
    /// finished by someone else): this process must stop without writing more.
    Lost,
}

fn seconds(d: Duration) -> i64 {
    d.as_secs().max(1) as i64
}

impl Runtime {
    /// Starts this process's job workers (and the sweep of blobs left by ended requests) on
    /// their own thread and tokio runtime, niced so
    /// that live requests' threads get the cores first: a step's plugin code, and the plugin
    /// work of the requests it dispatches (parsing, templating, tokenizing, writing results),
    /// run there. The engines' work for those requests is ordered by the engines themselves.
    pub fn start_jobs(self: &Arc<Self>, settings: JobSettings) -> Result<(), std::io::Error> {
        self.dispatch_slots
            .add_permits(settings.dispatch_concurrency.max(1));
        let background = settings.background;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("cinder-jobs-blocking")
            .on_thread_start(move || cinder_core::lower_priority(background))
            .build()?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("cinder-jobs".into())
            .spawn(move || {
                cinder_core::lower_priority(background);
                tokio.block_on(async move {
                    tokio::spawn(sweep(me.clone()).instrument(info_span!("sweep")));
                    // Ends once the runtime it serves is dropped.
                    supervise(me, settings).await;
                });
            })?;
        Ok(())
    }
}

/// How often a process looks for blobs whose request ended without recording an object.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Added to the request time limit before a request's pending blob is taken for an orphan:
/// a blob is finished before its request's last store write, within that limit.
const SWEEP_GRACE: Duration = Duration::from_secs(300);

/// Removes, at start and every [`SWEEP_EVERY`], the blobs left pending by requests that are
/// over (a crash between a blob and its object, a plugin that failed after writing one), and
/// expired links with their blobs. Any replica may: it goes by age alone.
async fn sweep(me: std::sync::Weak<Runtime>) {
    loop {
        let Some(runtime) = me.upgrade() else { return };
        if let Some(store) = runtime.store.load_full() {
            let grace = runtime.limits.load().timeout + SWEEP_GRACE;
            let before = cinder_store::now() - seconds(grace);
            if let Err(e) = store.sweep_request_blobs(before).await {
                warn!(error = %e, "cannot sweep blobs left by ended requests");
            }
            if let Err(e) = store.sweep_links(cinder_store::now()).await {
                warn!(error = %e, "cannot sweep expired links");
            }
        }
        drop(runtime);
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// Gives each job kind of the loaded plugins its own workers (`settings.workers` of them), as
/// plugins come and go: a long job of one family (a batch of thousands of requests) never
/// holds up another's (a background response someone is waiting on).
async fn supervise(me: std::sync::Weak<Runtime>, settings: JobSettings) {
    let mut running: HashMap<String, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
    loop {
        let Some(runtime) = me.upgrade() else { return };
        let kinds = runtime.registry.load().job_kinds();
        drop(runtime);
        // A kind whose plugin was unloaded has lost its workers; it gets new ones if it is
        // loaded again.
        running.retain(|_, workers| workers.iter().any(|w| !w.is_finished()));
        for kind in kinds {
            if running.contains_key(&kind) {
                continue;
            }
            let workers = (0..settings.workers)
                .map(|n| {
                    let span = info_span!("jobs", kind = %kind, worker = n);
                    tokio::spawn(work(me.clone(), kind.clone(), settings.clone()).instrument(span))
                })
                .collect();
            running.insert(kind, workers);
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// Wakes the idle workers of a job kind when a job of it is queued.
#[derive(Default)]
pub(crate) struct Wakes(std::sync::Mutex<HashMap<String, Arc<Notify>>>);

impl Wakes {
    /// The bell of `kind` (`<plugin>/<kind>`).
    pub(crate) fn of(&self, kind: &str) -> Arc<Notify> {
        let mut bells = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bells.entry(kind.to_owned()).or_default().clone()
    }
}

/// One worker of `kind`: take a job, run it to its end (or until its lease is lost), look
/// again; gone once no loaded plugin declares the kind.
async fn work(me: std::sync::Weak<Runtime>, kind: String, settings: JobSettings) {
    loop {
        let Some(runtime) = me.upgrade() else { return };
        if !runtime.registry.load().job_kinds().contains(&kind) {
            return;
        }
        let wake = runtime.jobs_wake.of(&kind);
        let taken = match runtime.store.load_full() {
            Some(store) => store
                .take_job(
                    &[kind.as_str()],
                    &runtime.holder,
                    cinder_store::now(),
                    seconds(settings.lease),
                )
                .await
                .map(|job| job.map(|job| (store.clone(), job))),
            None => Ok(None),
        };
        match taken {
            Ok(Some((store, job))) => {
                let span =
                    info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
                runtime
                    .run_job(&store, job, &settings)
                    .instrument(span)
                    .await;
                continue;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot look for jobs"),
        }
        drop(runtime);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
}

impl Runtime {
    async fn run_job(self: &Arc<Self>, store: &Store, job: Job, settings: &JobSettings) {
        // Taken by a kind of a loaded plugin's: always `<plugin>/<kind>`.
        let Some((plugin_id, kind)) = job.kind.split_once('/') else {
            return;
        };
        info!("job taken");
        // Blobs of a step whose progress was never saved (the process died in it): nothing
        // will reference them.
        self.discard_pending(store, &job.id).await;
        let mut progress = job.progress.clone();
        let mut cancel = job.cancel_requested;
        let mut failures = 0u32;
        let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        let mut ending = (attempts > settings.max_attempts).then(|| {
            format!(
                "The job was interrupted {} times (the server stopped or crashed while it ran)",
                attempts - 1
            )
        });
        loop {
            let Some(plugin) = self.registry.load().plugin(plugin_id) else {
                // Unloaded while the job ran: another process (or this one, once it is back)
                // takes it up when the lease runs out.
                warn!(plugin = plugin_id, "the job's plugin is no longer loaded");
                return;
            };
            let step = x::Job {
                id: job.id.clone(),
                kind: kind.to_owned(),
                progress: progress.clone(),
                attempt: attempts,
                cancel_requested: cancel,
                ending: ending.clone(),
            };
            let outcome = self
                .step_keeping_lease(store, &plugin, &job.owner, step, &progress, settings)
                .await;
            let now = cinder_store::now();
            match outcome {
                Ok(x::Outcome::More(next)) if ending.is_none() => {
                    failures = 0;
                    match store
                        .commit_step(&job.id, &self.holder, &next, now, seconds(settings.lease))
                        .await
                    {
                        Ok(Renewal::Held { cancel_requested }) => {
                            progress = next;
                            cancel = cancel_requested;
                        }
                        Ok(Renewal::Lost) => {
                            info!("lease lost; another process has the job");
                            return;
                        }
                        // The step is redone from the last saved progress; what it wrote goes.
                        Err(e) => {
                            warn!(error = %e, "cannot save the job's progress; retrying the step");
                            self.discard_pending(store, &job.id).await;
                            tokio::time::sleep(settings.poll).await;
                        }
                    }
                }
                Ok(outcome) => {
                    let state = if ending.is_some() {
                        JobState::Failed
                    } else if cancel {
                        JobState::Cancelled
                    } else {
                        JobState::Succeeded
                    };
                    if matches!(outcome, x::Outcome::More(_)) {
                        warn!("the job's last step asked for more; ended anyway");
                    }
                    match store
                        .finish_job(&job.id, &self.holder, state, ending.as_deref(), now)
                        .await
                    {
                        Ok(true) => info!(state = ?state, "job over"),
                        Ok(false) => info!("lease lost before the job could be ended"),
                        Err(e) => warn!(error = %e, "cannot end the job; it will be taken again"),
                    }
                    return;
                }
                Err(StepFailure::Lost) => {
                    info!("lease lost during a step; another process has the job");
                    return;
                }
                Err(StepFailure::Call(e)) => {
                    failures += 1;
                    warn!(error = %e, failures, "a step failed");
                    self.discard_pending(store, &job.id).await;
                    if ending.is_some() {
                        // The step meant to record the end failed too: end the job anyway.
                        let _ = store
                            .finish_job(
                                &job.id,
                                &self.holder,
                                JobState::Failed,
                                ending.as_deref(),
                                now,
                            )
                            .await;
                        return;
                    }
                    if failures > settings.step_retries {
                        ending = Some(format!("A step of the job failed {failures} times: {e}"));
                    } else {
                        tokio::time::sleep(settings.poll * failures).await;
                    }
                }
            }
        }
    }

    async fn discard_pending(&self, store: &Store, job: &str) {
        match store.discard_pending_blobs(job).await {
            Ok(0) => {}
            Ok(n) => info!(blobs = n, "removed the blobs of an unsaved step"),
            Err(e) => warn!(error = %e, "cannot remove the blobs of an unsaved step"),
        }
    }

    /// One step, with the lease renewed (and the last saved progress kept) while it runs.
    async fn step_keeping_lease(
        self: &Arc<Self>,
        store: &Store,
        plugin: &Arc<Plugin>,
        owner: &str,
        job: x::Job,
        saved: &str,
        settings: &JobSettings,
    ) -> Result<x::Outcome, StepFailure> {
        let id = job.id.clone();
        let step = self.step(plugin, owner, job);
        tokio::pin!(step);
        let every = settings.lease / 3;
        loop {
            tokio::select! {
                r = &mut step => return r.map_err(StepFailure::Call),
                _ = tokio::time::sleep(every) => {
                    let renewed = store
                        .renew_job(&id, &self.holder, saved, cinder_store::now(), seconds(settings.lease))
                        .await;
                    match renewed {
                        Ok(Renewal::Lost) => return Err(StepFailure::Lost),
                        Ok(Renewal::Held { .. }) => {}
                        Err(e) => debug!(error = %e, "cannot renew the lease; trying again"),
                    }
                }
            }
        }
    }

    /// Calls `job-runner.step` in a fresh sandbox with a request's limits; the wall-clock
    /// limit bounds the whole step (its dispatched requests wait on their own limits).
    async fn step(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
        owner: &str,
        job: x::Job,
    ) -> Result<x::Outcome, CallError> {
        let Some((pre, _)) = &plugin.jobs else {
            return Err(CallError::Plugin(PluginError::Internal(format!(
                "the plugin `{}` runs no jobs",
                plugin.info.id
            ))));
        };
        // No request slot: the requests the step dispatches take those, and a step holding
        // one while they wait could leave none (the pool keeps room for steps instead).
        let limits = self.limits.load_full();
        let (tx, _rx) = mpsc::channel(1);
        let mut store = self.store(
            plugin,
            &limits,
            tx,
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
            owner,
        );
        store.data_mut().request_id = format!("job-{}", job.id).into();
        // What a step generates itself (a background response) yields to live traffic, like
        // the requests it dispatches.
        store.data_mut().jobs.background = true;
        store.data_mut().jobs.step = Some(StepLink {
            runtime: self.me.clone(),
            job: job.id.clone(),
            holder: self.holder.clone(),
        });
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .cinder_plugin_job_runner()
                .call_step(&mut store, &job)
                .await
        };
        let result = tokio::time::timeout(limits.timeout, run).await;
        let out_of_cpu = store.data().cpu_ticks_left == 0;
        match result {
            Err(_) => Err(CallError::Timeout(limits.timeout)),
            Ok(Ok(Ok(outcome))) => Ok(outcome),
            Ok(Ok(Err(e))) => Err(CallError::Plugin(PluginError::from(e))),
            Ok(Err(trap)) => Err(CallError::from_trap(
                plugin.info.id.clone(),
                &trap,
                out_of_cpu,
            )),
        }
    }
}
