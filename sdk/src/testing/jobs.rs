//! Jobs and dispatch, faked: queued jobs kept in memory (shared by clones, like
//! [`super::FakeStore`]), run a step at a time by [`FakeJobs::run`] as the host would, and
//! dispatched requests answered by a function the test gives.

use std::cell::RefCell;
use std::rc::Rc;

use super::FakeHost;
use crate::Error;
use crate::dispatch::{Answer, Call};
use crate::export::{Job, Outcome, ServeAgent, ServeJobs};
use crate::host::{Dispatch, Jobs};
use crate::types::ErrorDetail;

/// A queued job as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeJob {
    /// The job as the next step would get it.
    pub job: Job,
    /// Over: a step returned [`Outcome::Done`].
    pub done: bool,
    /// Queued for later with [`Jobs::enqueue_job_at`]: the host would not hand it out
    /// before this time (the fake runs it only when a test asks, see [`FakeJobs::run`]).
    pub not_before: Option<i64>,
}

/// Answers a dispatched request.
type Answerer = dyn Fn(&Call) -> Result<Answer, Error>;

#[derive(Default)]
struct Inner {
    jobs: Vec<FakeJob>,
    answer: Option<Rc<Answerer>>,
    dispatched: Vec<Call>,
    worker: Option<Rc<dyn ServeAgent>>,
}

/// Jobs in memory, and what dispatched requests get; clones share them.
#[derive(Clone, Default)]
pub struct FakeJobs(Rc<RefCell<Inner>>);

impl FakeJobs {
    /// Dispatched requests are answered by `answer`.
    pub fn answering(self, answer: impl Fn(&Call) -> Result<Answer, Error> + 'static) -> Self {
        self.0.borrow_mut().answer = Some(Rc::new(answer));
        self
    }

    /// A job queued is run by `plugin` at once, to its end, before `enqueue_job` returns: a
    /// host whose worker is always free, for testing a request that waits on its job (a
    /// background response it streams).
    pub fn worked_by(self, plugin: impl ServeAgent + 'static) -> Self {
        self.0.borrow_mut().worker = Some(Rc::new(plugin));
        self
    }

    /// The jobs queued so far, oldest first.
    pub fn jobs(&self) -> Vec<FakeJob> {
        self.0.borrow().jobs.clone()
    }

    /// Every request dispatched so far, in order.
    pub fn dispatched(&self) -> Vec<Call> {
        self.0.borrow().dispatched.clone()
    }

    /// Runs the job `id` with `plugin` as the host would: step after step on `host`, each
    /// saving its progress, until one says done or `max_steps` have run. Returns the steps'
    /// outcomes.
    pub fn run(
        &self,
        id: &str,
        plugin: &dyn ServeJobs,
        host: &FakeHost,
        max_steps: usize,
    ) -> Result<Vec<Outcome>, Error> {
        self.run_with(id, max_steps, |job| plugin.step(job, host))
    }

    /// [`FakeJobs::run`] for an agent plugin's job.
    pub fn run_agent(
        &self,
        id: &str,
        plugin: &dyn ServeAgent,
        host: &FakeHost,
        max_steps: usize,
    ) -> Result<Vec<Outcome>, Error> {
        self.run_with(id, max_steps, |job| plugin.step(job, host))
    }

    fn run_with(
        &self,
        id: &str,
        max_steps: usize,
        mut step: impl FnMut(Job) -> Result<Outcome, Error>,
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = Vec::new();
        for _ in 0..max_steps {
            let Some(job) = self.job(id) else {
                return Err(Error::Internal(format!("no job `{id}`")));
            };
            if job.done {
                break;
            }
            let outcome = step(job.job)?;
            self.update(id, |j| match &outcome {
                Outcome::More(p) => j.job.progress = p.clone(),
                Outcome::Done => j.done = true,
            });
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The job `id`.
    pub fn job(&self, id: &str) -> Option<FakeJob> {
        self.0
            .borrow()
            .jobs
            .iter()
            .find(|j| j.job.id == id)
            .cloned()
    }

    /// Changes the job `id` as the host would between steps (a restart: `attempt`; the host
    /// ending it: `ending`).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut FakeJob)) {
        if let Some(j) = self.0.borrow_mut().jobs.iter_mut().find(|j| j.job.id == id) {
            change(j);
        }
    }
}

impl FakeHost {
    fn queue_job(
        &self,
        kind: &str,
        id: &str,
        progress: &str,
        not_before: Option<i64>,
    ) -> Result<(), Error> {
        let mut inner = self.jobs.0.borrow_mut();
        if inner.jobs.iter().any(|j| j.job.id == id) {
            return Err(Error::InvalidRequest(ErrorDetail {
                message: format!("a job `{id}` exists already"),
                param: Some("id".into()),
                code: None,
            }));
        }
        inner.jobs.push(FakeJob {
            job: Job {
                id: id.into(),
                kind: kind.into(),
                progress: progress.into(),
                attempt: 1,
                cancel_requested: false,
                ending: None,
            },
            done: false,
            not_before,
        });
        let worker = inner.worker.clone();
        drop(inner);
        if let (Some(plugin), None) = (worker, not_before) {
            self.jobs.run_agent(id, &*plugin, self, 1000)?;
        }
        Ok(())
    }
}

impl Jobs for FakeHost {
    fn enqueue_job(&self, kind: &str, id: &str, progress: &str) -> Result<(), Error> {
        self.queue_job(kind, id, progress, None)
    }

    fn enqueue_job_at(
        &self,
        kind: &str,
        id: &str,
        progress: &str,
        not_before: i64,
    ) -> Result<(), Error> {
        self.queue_job(kind, id, progress, Some(not_before))
    }

    fn cancel_job(&self, id: &str) -> Result<bool, Error> {
        let mut inner = self.jobs.0.borrow_mut();
        Ok(match inner.jobs.iter_mut().find(|j| j.job.id == id) {
            Some(j) if !j.done => {
                j.job.cancel_requested = true;
                true
            }
            _ => false,
        })
    }
}

impl Dispatch for FakeHost {
    fn dispatch(&self, calls: &[Call]) -> Vec<Result<Answer, Error>> {
        let answer = {
            let mut inner = self.jobs.0.borrow_mut();
            inner.dispatched.extend(calls.iter().cloned());
            inner.answer.clone()
        };
        calls
            .iter()
            .map(|c| match &answer {
                Some(answer) => answer(c),
                None => Err(Error::Internal("dispatch: the test set no answers".into())),
            })
            .collect()
    }
}
