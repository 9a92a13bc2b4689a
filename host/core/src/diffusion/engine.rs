//! The thread that owns an image model: it makes one job's images at a time, in the order
//! jobs came, while a bounded number wait. A job's events (taken off the queue, each step,
//! partial images, each finished image) go back on a channel; dropping its receiver stops the
//! job at the next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::pipeline::{ImageRequest, Picture, Pipeline, Step};
use crate::error::{CoreError, contain};
use crate::kernels::pools::Pools;

/// The most images one job makes (OpenAI's `n` is 1 to 10).
pub const MAX_IMAGES_PER_JOB: usize = 10;
/// The most partial images one image shows (OpenAI's `partial_images` is 0 to 3).
pub const MAX_PARTIAL_IMAGES: usize = 3;

/// Images to make from one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageJob {
    /// The first image's settings; image `i` takes seed `request.seed + i`.
    pub request: ImageRequest,
    /// How many images (1 to [`MAX_IMAGES_PER_JOB`]).
    pub count: usize,
    /// Partial images per image, at evenly spaced steps (0 to [`MAX_PARTIAL_IMAGES`]).
    pub partial_images: usize,
    /// Work only a background job waits on (a video's frames): it runs on niced threads and
    /// pauses between the UNet's blocks while a live request is in the process.
    pub background: bool,
}

/// What a job's caller hears, in order.
#[derive(Debug)]
pub enum ImageEvent {
    /// The model took the job off the queue; the prompt is this many tokens.
    Started { prompt_tokens: usize },
    /// Image `image` finished step `done` of `of`.
    Step {
        image: usize,
        done: usize,
        of: usize,
    },
    /// The `index`-th partial image of image `image` (from the step's clean estimate).
    Partial {
        image: usize,
        index: usize,
        picture: Picture,
    },
    /// Image `image` is made.
    Done { image: usize, picture: Picture },
    /// The job ended early; no event follows.
    Failed(CoreError),
}

struct Work {
    job: ImageJob,
    events: mpsc::Sender<ImageEvent>,
}

/// The handle requests use to queue jobs for one image model.
pub struct ImageHandle {
    pipeline: Arc<Pipeline>,
    queue: std::sync::mpsc::Sender<Work>,
    /// Jobs queued or running.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl ImageHandle {
    /// Starts the thread that owns `pipeline`; at most `max_waiting` jobs wait behind the
    /// running one.
    pub fn spawn(id: &str, pipeline: Pipeline, max_waiting: usize) -> Result<Self, CoreError> {
        let pipeline = Arc::new(pipeline);
        let owned = pipeline.clone();
        let (queue, jobs) = std::sync::mpsc::channel::<Work>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let counter = waiting.clone();
        let model = id.to_owned();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // burn's CPU ops run on the pool they are called from: a background job's on niced,
        // idle-class threads.
        let pools = Pools::new("images", threads)?;
        std::thread::Builder::new()
            .name(format!("images-{id}"))
            .spawn(move || {
                while let Ok(work) = jobs.recv() {
                    run(&model, &owned, &pools, work);
                    counter.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| CoreError::Backend(format!("cannot start the image thread: {e}")))?;
        Ok(ImageHandle {
            pipeline,
            queue,
            waiting,
            max_waiting,
        })
    }

    /// Queues `job` after checking it (an image the model cannot make is refused here, not
    /// after the wait); a full queue is [`CoreError::Busy`]. Events arrive on the receiver;
    /// dropping it cancels the job.
    pub fn submit(&self, job: ImageJob) -> Result<mpsc::Receiver<ImageEvent>, CoreError> {
        check_job(&job)?;
        self.pipeline.check(&job.request)?;
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        // One runs; `max_waiting` more may wait behind it.
        if ahead > self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(CoreError::Busy(format!(
                "{} image generations are waiting for this model; retry later",
                ahead - 1
            )));
        }
        // Room for a job's step events without holding the model back on a slow reader.
        let (events, rx) = mpsc::channel(16);
        if self.queue.send(Work { job, events }).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(CoreError::EngineStopped);
        }
        Ok(rx)
    }
}

fn check_job(job: &ImageJob) -> Result<(), CoreError> {
    let setting = |param, message| Err(CoreError::ImageSetting { param, message });
    if job.count == 0 || job.count > MAX_IMAGES_PER_JOB {
        return setting(
            "count",
            format!("1 to {MAX_IMAGES_PER_JOB} images; got {}", job.count),
        );
    }
    if job.partial_images > MAX_PARTIAL_IMAGES {
        return setting(
            "partial-images",
            format!(
                "0 to {MAX_PARTIAL_IMAGES} partial images; got {}",
                job.partial_images
            ),
        );
    }
    Ok(())
}

/// The steps after which an image of `steps` steps shows its `partials` partial images:
/// evenly spaced, never the last step (that is the image itself).
pub fn partial_steps(steps: usize, partials: usize) -> Vec<usize> {
    let mut at: Vec<usize> = (1..=partials)
        .map(|k| (k * steps / (partials + 1)).max(1))
        .filter(|&s| s < steps)
        .collect();
    at.dedup();
    at
}

fn run(model: &str, pipeline: &Pipeline, pools: &Pools, work: Work) {
    let Work { job, events } = work;
    let prompt_tokens = match pipeline.prompt_tokens(&job.request.prompt) {
        Ok(n) => n,
        Err(e) => {
            let _ = events.blocking_send(ImageEvent::Failed(e));
            return;
        }
    };
    if events
        .blocking_send(ImageEvent::Started { prompt_tokens })
        .is_err()
    {
        return;
    }
    let started = std::time::Instant::now();
    for image in 0..job.count {
        let mut request = job.request.clone();
        request.seed = request.seed.wrapping_add(image as u64);
        let partials = partial_steps(pipeline.steps_run(&request), job.partial_images);
        let mut shown = 0;
        let mut on_step = |step: &Step| {
            let mut ok = events
                .blocking_send(ImageEvent::Step {
                    image,
                    done: step.done,
                    of: step.of,
                })
                .is_ok();
            if ok && partials.contains(&step.done) {
                // A preview is worth little detail: the fast decoder when there is one.
                match pipeline.preview(&request, step, true) {
                    Ok(picture) => {
                        ok = events
                            .blocking_send(ImageEvent::Partial {
                                image,
                                index: shown,
                                picture,
                            })
                            .is_ok();
                        shown += 1;
                    }
                    Err(e) => warn!(model, error = %e, "a partial image did not decode"),
                }
            }
            ok
        };
        let made = pools.install_for(job.background, || {
            contain("image generation", || {
                pipeline.generate(&request, &mut on_step)
            })
        });
        let sent = match made {
            Ok(picture) => events.blocking_send(ImageEvent::Done { image, picture }),
            Err(CoreError::Cancelled) => {
                info!(model, "image generation cancelled by its caller");
                return;
            }
            Err(e) => {
                let _ = events.blocking_send(ImageEvent::Failed(e));
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
    info!(
        model,
        images = job.count,
        steps = job.request.steps,
        width = job.request.width,
        height = job.request.height,
        seconds = started.elapsed().as_secs_f32(),
        "images made"
    );
}

#[cfg(test)]
mod tests {
    use super::partial_steps;

    #[test]
    fn partial_images_are_spread_over_the_steps() {
        assert_eq!(partial_steps(20, 3), [5, 10, 15]);
        assert_eq!(partial_steps(20, 1), [10]);
        assert_eq!(partial_steps(20, 0), Vec::<usize>::new());
        assert_eq!(partial_steps(2, 3), [1]);
        assert_eq!(partial_steps(1, 2), Vec::<usize>::new());
    }
}
