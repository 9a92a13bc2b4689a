//! The host side of `images` (WIT 0.1.13; edits 0.1.14): image requests queued on the
//! core's thread for the model, their events read back one `next` at a time. Dropping the
//! handle (or the call ending) drops the receiver, which stops the work at the next step.

use cinder_core::{ImageEvent, ImageJob, ImageRequest, Picture, SourceImage};
use tokio::sync::mpsc;
use wasmtime::component::Resource;

use crate::bindings::agent_world::cinder::plugin::images::{
    self, Image, ImageModelInfo, ImageSize, ImageStep, MadeImage, PartialImage,
};
use crate::bindings::cinder::plugin::types;
use crate::imports::wit_error;
use crate::quota::MAX_OPEN_GENERATIONS;
use crate::state::HostState;

/// The host object behind a guest's `image-generation` handle.
pub struct ImageGenerationHandle {
    events: mpsc::Receiver<ImageEvent>,
    /// Images not made yet; `next` answers `none` once it is 0.
    left: u32,
}

fn image(p: Picture) -> Image {
    Image {
        width: p.width as u32,
        height: p.height as u32,
        rgb: p.rgb,
    }
}

impl images::HostImageGeneration for HostState {
    async fn next(
        &mut self,
        handle: Resource<ImageGenerationHandle>,
    ) -> wasmtime::Result<Result<Option<images::ImageEvent>, types::Error>> {
        let g = self.table.get_mut(&handle)?;
        if g.left == 0 {
            return Ok(Ok(None));
        }
        let event = g.events.recv().await;
        self.touch();
        let g = self.table.get_mut(&handle)?;
        Ok(match event {
            Some(ImageEvent::Started { prompt_tokens }) => Ok(Some(images::ImageEvent::Started(
                u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            ))),
            Some(ImageEvent::Step { image, done, of }) => {
                Ok(Some(images::ImageEvent::Step(ImageStep {
                    image: image as u32,
                    done: done as u32,
                    steps: of as u32,
                })))
            }
            Some(ImageEvent::Partial {
                image: i,
                index,
                picture,
            }) => Ok(Some(images::ImageEvent::Partial(PartialImage {
                image: i as u32,
                index: index as u32,
                picture: image(picture),
            }))),
            Some(ImageEvent::Done { image: i, picture }) => {
                g.left = g.left.saturating_sub(1);
                Ok(Some(images::ImageEvent::Done(MadeImage {
                    image: i as u32,
                    picture: image(picture),
                })))
            }
            Some(ImageEvent::Failed(e)) => {
                g.left = 0;
                Err(wit_error(e))
            }
            None => {
                g.left = 0;
                Err(types::Error::Unavailable(
                    "the image model's thread stopped".into(),
                ))
            }
        })
    }

    async fn drop(&mut self, handle: Resource<ImageGenerationHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.quota.open_generations = self.quota.open_generations.saturating_sub(1);
        Ok(())
    }
}

impl images::Host for HostState {
    async fn describe_image_model(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<ImageModelInfo, types::Error>> {
        Ok(self.models.image_model(&model).map_err(wit_error).map(|m| {
            let i = &m.info;
            ImageModelInfo {
                id: i.id.clone(),
                sizes: i
                    .sizes
                    .iter()
                    .map(|&(w, h)| ImageSize {
                        width: w as u32,
                        height: h as u32,
                    })
                    .collect(),
                default_steps: i.default_steps as u32,
                max_steps: i.max_steps as u32,
                guidance: i.guidance,
                scheduler: i.scheduler.name().to_owned(),
                created: i.created,
                fingerprint: i.fingerprint.clone(),
            }
        }))
    }

    async fn generate_images(
        &mut self,
        request: images::ImageRequest,
    ) -> wasmtime::Result<Result<Resource<ImageGenerationHandle>, types::Error>> {
        self.start_images(request, None)
    }

    async fn edit_images(
        &mut self,
        request: images::ImageRequest,
        source: images::ImageSource,
    ) -> wasmtime::Result<Result<Resource<ImageGenerationHandle>, types::Error>> {
        let source = SourceImage {
            width: source.picture.width as usize,
            height: source.picture.height as usize,
            rgb: source.picture.rgb,
            mask: source.mask,
            strength: source.strength,
        };
        self.start_images(request, Some(source))
    }
}

impl HostState {
    /// Checks and queues a job on the model's thread (the work is there: cheap enough here).
    fn start_images(
        &mut self,
        request: images::ImageRequest,
        source: Option<SourceImage>,
    ) -> wasmtime::Result<Result<Resource<ImageGenerationHandle>, types::Error>> {
        let model = match self.models.image_model(&request.model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(wit_error(e))),
        };
        if self.quota.open_generations >= MAX_OPEN_GENERATIONS {
            return Ok(Err(types::Error::RateLimited(format!(
                "a call may have at most {MAX_OPEN_GENERATIONS} generations open"
            ))));
        }
        let count = request.count;
        let job = ImageJob {
            request: ImageRequest {
                prompt: request.prompt,
                negative_prompt: request.negative_prompt,
                width: request.size.width as usize,
                height: request.size.height as usize,
                steps: request.steps as usize,
                guidance: model.info.guidance,
                seed: request.seed,
                scheduler: None,
                fast_decode: false,
                source,
            },
            count: count as usize,
            partial_images: request.partial_images as usize,
            // A job step's images (a video's frames) wait behind live requests.
            background: self.jobs.background,
        };
        match model.submit(job).map_err(wit_error) {
            Ok(events) => {
                self.quota.open_generations += 1;
                Ok(Ok(self.table.push(ImageGenerationHandle {
                    events,
                    left: count,
                })?))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}
