//! The `images` import, faked: an image model that makes a pattern from the seed (the same
//! request and seed make the same bytes), with the host's checks on size, steps, count,
//! partial images and an edit's source, and every request kept for assertions. An edit's
//! picture keeps the source's pixels where the mask is 0 when the source is the request's
//! size (the real host resizes; the fake does not).

use std::cell::RefCell;

use super::FakeHost;
use crate::Error;
use crate::host::{ImageGeneration, Images};
use crate::images::{
    Image, ImageEvent, ImageModelInfo, ImageRequest, ImageSize, ImageSource, ImageStep, MadeImage,
    PartialImage,
};

fn bad(message: String, field: &str) -> Error {
    crate::invalid_request(&message, Some(field))
}

/// A fake image model's description: `id`, making `sizes`, 4 steps by default.
pub fn image_model(id: &str, sizes: &[(u32, u32)]) -> ImageModelInfo {
    ImageModelInfo {
        id: id.into(),
        sizes: sizes
            .iter()
            .map(|&(width, height)| ImageSize { width, height })
            .collect(),
        default_steps: 4,
        max_steps: 50,
        guidance: 7.5,
        scheduler: "euler".into(),
        created: 0,
        fingerprint: "fp_fake_images".into(),
    }
}

/// The fake's picture for `seed`: each byte from the seed and its place.
pub fn fake_picture(width: u32, height: u32, seed: u64) -> Image {
    let rgb = (0..u64::from(width) * u64::from(height) * 3)
        .map(|i| {
            let x = (i ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7);
            (x >> 24) as u8
        })
        .collect();
    Image { width, height, rgb }
}

/// Every event of a fake generation, in order.
struct FakeImages(RefCell<std::collections::VecDeque<ImageEvent>>);

impl ImageGeneration for FakeImages {
    fn next(&self) -> Result<Option<ImageEvent>, Error> {
        Ok(self.0.borrow_mut().pop_front())
    }
}

impl FakeHost {
    /// This host with the image model `info` (see [`image_model`]).
    pub fn with_image_model(mut self, info: ImageModelInfo) -> Self {
        self.image_model = Some(info);
        self
    }

    /// Every `generate-images` and `edit-images` request, in order.
    pub fn image_requests(&self) -> Vec<ImageRequest> {
        self.image_requests.borrow().clone()
    }

    /// Every `edit-images` source, in order.
    pub fn image_sources(&self) -> Vec<ImageSource> {
        self.image_sources.borrow().clone()
    }

    fn image_info(&self, model: &str) -> Result<&ImageModelInfo, Error> {
        match &self.image_model {
            Some(info) if info.id == model => Ok(info),
            _ => Err(Error::NotFound(crate::types::ErrorDetail {
                message: format!("The model `{model}` does not exist"),
                param: Some("model".into()),
                code: Some("model_not_found".into()),
            })),
        }
    }
}

impl Images for FakeHost {
    fn describe_image_model(&self, model: &str) -> Result<ImageModelInfo, Error> {
        self.image_info(model).cloned()
    }

    fn generate_images(&self, r: &ImageRequest) -> Result<Box<dyn ImageGeneration>, Error> {
        self.fake_images(r, None)
    }

    fn edit_images(
        &self,
        r: &ImageRequest,
        source: &ImageSource,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        self.fake_images(r, Some(source))
    }
}

impl FakeHost {
    fn fake_images(
        &self,
        r: &ImageRequest,
        source: Option<&ImageSource>,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        let info = self.image_info(&r.model)?;
        if !info
            .sizes
            .iter()
            .any(|s| (s.width, s.height) == (r.size.width, r.size.height))
        {
            return Err(bad(
                format!(
                    "{}x{} is not a size this model makes",
                    r.size.width, r.size.height
                ),
                "size",
            ));
        }
        if r.steps == 0 || r.steps > info.max_steps {
            return Err(bad(format!("steps is 1 to {}", info.max_steps), "steps"));
        }
        if r.count == 0 || r.count > 10 {
            return Err(bad("1 to 10 images".into(), "count"));
        }
        if r.partial_images > 3 {
            return Err(bad("0 to 3 partial images".into(), "partial-images"));
        }
        let mut steps = r.steps;
        if let Some(s) = source {
            let p = &s.picture;
            let pixels = u64::from(p.width) * u64::from(p.height);
            if p.width == 0 || p.height == 0 || p.rgb.len() as u64 != pixels * 3 {
                return Err(bad("the image's bytes are not its size".into(), "image"));
            }
            if s.mask.as_ref().is_some_and(|m| m.len() as u64 != pixels) {
                return Err(bad("the mask must be the image's size".into(), "mask"));
            }
            if !(s.strength > 0.0 && s.strength <= 1.0) {
                return Err(bad("strength is above 0 and at most 1".into(), "strength"));
            }
            steps = ((r.steps as f32 * s.strength) as u32).clamp(1, r.steps);
            self.image_sources.borrow_mut().push(s.clone());
        }
        self.image_requests.borrow_mut().push(r.clone());
        // One token per word, plus the start and end tokens, as a stand-in for CLIP's count.
        let tokens = r.prompt.split_whitespace().count() as u32 + 2;
        let mut events = std::collections::VecDeque::from([ImageEvent::Started(tokens.min(77))]);
        for image in 0..r.count {
            let seed = r.seed.wrapping_add(u64::from(image));
            let partial_at: Vec<u32> = (1..=r.partial_images)
                .map(|k| (k * steps / (r.partial_images + 1)).max(1))
                .filter(|&s| s < steps)
                .collect();
            let mut shown = 0;
            for done in 1..=steps {
                events.push_back(ImageEvent::Step(ImageStep { image, done, steps }));
                if partial_at.contains(&done) {
                    events.push_back(ImageEvent::Partial(PartialImage {
                        image,
                        index: shown,
                        picture: fake_picture(r.size.width, r.size.height, seed ^ u64::from(done)),
                    }));
                    shown += 1;
                }
            }
            let mut picture = fake_picture(r.size.width, r.size.height, seed);
            if let Some(ImageSource {
                picture: p,
                mask: Some(mask),
                ..
            }) = source
                && (p.width, p.height) == (picture.width, picture.height)
            {
                for (i, &m) in mask.iter().enumerate() {
                    if m == 0 {
                        picture.rgb[i * 3..i * 3 + 3].copy_from_slice(&p.rgb[i * 3..i * 3 + 3]);
                    }
                }
            }
            events.push_back(ImageEvent::Done(MadeImage { image, picture }));
        }
        Ok(Box::new(FakeImages(RefCell::new(events))))
    }
}
