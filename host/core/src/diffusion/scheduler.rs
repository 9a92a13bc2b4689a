//! Noise schedulers as diffusers computes them (SD's `scaled_linear` betas, or `linear`):
//! which timesteps a generation of `n` steps visits, how the UNet's input is scaled, and one
//! step from the guided noise prediction to the next latents (with DDIM's and LCM's
//! `clip_sample`, DDIM's `set_alpha_to_one`; config keys that would need more are
//! refused). Euler, DDIM (η = 0) and DPM-Solver++ 2M are
//! deterministic; Euler ancestral and LCM draw fresh noise each step, which the caller gives
//! (so a test can give diffusers' own draws).
//!
//! Schedules are computed in f64 (as diffusers' numpy set-up is) and applied in f32.

use serde::Deserialize;

use crate::error::CoreError;

/// `scheduler/scheduler_config.json`'s fields these read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_start")]
    pub beta_start: f64,
    #[serde(default = "default_end")]
    pub beta_end: f64,
    #[serde(default = "default_schedule")]
    pub beta_schedule: String,
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    #[serde(default)]
    pub steps_offset: usize,
    /// `linspace`, `leading` or `trailing` (each scheduler's own default when absent).
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    /// DDIM and LCM: clamp each step's clean estimate to ±`clip_sample_range` (what keeps a
    /// pixel-space model's first steps, where ᾱ is tiny, from blowing its errors up). When
    /// absent, the class's default: on for DDIM, off for LCM.
    #[serde(default)]
    pub clip_sample: Option<bool>,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    /// DDIM: the last step goes to ᾱ = 1 (true) or to ᾱ₀ (false). When absent, the class's
    /// default: true. (LCM's last step returns its clean estimate, so the key changes
    /// nothing there.)
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// Keys that would change the schedule in ways not built: refused when set, so a config
    /// never runs silently differently from diffusers.
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    #[serde(default)]
    pub use_beta_sigmas: bool,
}

fn one() -> f64 {
    1.0
}

fn default_train() -> usize {
    1000
}
fn default_start() -> f64 {
    0.00085
}
fn default_end() -> f64 {
    0.012
}
fn default_schedule() -> String {
    "scaled_linear".into()
}
fn default_prediction() -> String {
    "epsilon".into()
}

/// Which scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Euler,
    EulerAncestral,
    Ddim,
    DpmSolverPp2M,
    Lcm,
}

impl Kind {
    /// diffusers' class name for it.
    pub fn from_class(class: &str) -> Option<Kind> {
        Some(match class {
            "EulerDiscreteScheduler" => Kind::Euler,
            "EulerAncestralDiscreteScheduler" => Kind::EulerAncestral,
            "DDIMScheduler" => Kind::Ddim,
            "DPMSolverMultistepScheduler" => Kind::DpmSolverPp2M,
            "LCMScheduler" => Kind::Lcm,
            _ => return None,
        })
    }

    /// Every kind built.
    pub const ALL: [Kind; 5] = [
        Kind::Euler,
        Kind::EulerAncestral,
        Kind::Ddim,
        Kind::DpmSolverPp2M,
        Kind::Lcm,
    ];

    /// The short name a config (and a request) uses: `euler`, `euler_a`, `ddim`,
    /// `dpmpp_2m`, `lcm`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Euler => "euler",
            Kind::EulerAncestral => "euler_a",
            Kind::Ddim => "ddim",
            Kind::DpmSolverPp2M => "dpmpp_2m",
            Kind::Lcm => "lcm",
        }
    }

    /// The kind a short name (see [`Kind::name`]) names.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A scheduler set up for one generation of `n` steps.
pub struct Scheduler {
    kind: Kind,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
    /// Euler's and DPM-Solver's noise levels per step, and 0 after the last.
    sigmas: Vec<f64>,
    /// DDIM's stride between timesteps.
    stride: usize,
    /// The `leading` spacing (Euler's initial noise is scaled differently then).
    leading: bool,
    /// DPM-Solver's previous data prediction.
    previous: Option<Vec<f32>>,
    /// DDIM's and LCM's clamp of the clean estimate, if on.
    clip: Option<f32>,
    /// ᾱ after DDIM's last step.
    final_alpha: f64,
}

impl SchedulerConfig {
    /// ᾱ at every training timestep: the running product of 1 − β over the beta schedule
    /// (`linear`, or `scaled_linear`: linear in √β).
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>, CoreError> {
        let n = self.num_train_timesteps;
        if n < 2 {
            return Err(CoreError::Weights(format!(
                "num_train_timesteps {n}: at least 2"
            )));
        }
        let (s, e) = (self.beta_start, self.beta_end);
        let mut acc = 1.0;
        Ok((0..n)
            .map(|i| {
                let f = i as f64 / (n - 1) as f64;
                let beta = match self.beta_schedule.as_str() {
                    "linear" => s + f * (e - s),
                    _ => (s.sqrt() + f * (e.sqrt() - s.sqrt())).powi(2),
                };
                acc *= 1.0 - beta;
                acc
            })
            .collect())
    }
}

impl Scheduler {
    /// Sets up `kind` for `steps` steps.
    pub fn new(kind: Kind, config: &SchedulerConfig, steps: usize) -> Result<Self, CoreError> {
        let n = config.num_train_timesteps;
        if config.beta_schedule != "scaled_linear" && config.beta_schedule != "linear" {
            return Err(CoreError::Weights(format!(
                "beta_schedule {} is not supported (scaled_linear, linear)",
                config.beta_schedule
            )));
        }
        if config.prediction_type != "epsilon" {
            return Err(CoreError::Weights(format!(
                "prediction_type {} is not supported (epsilon)",
                config.prediction_type
            )));
        }
        let sigmas_kind = matches!(
            kind,
            Kind::Euler | Kind::EulerAncestral | Kind::DpmSolverPp2M
        );
        let thresholds = matches!(kind, Kind::Ddim | Kind::DpmSolverPp2M | Kind::Lcm);
        // Each key only where the scheduler of this kind reads it, as diffusers.
        for (set, key) in [
            (config.thresholding && thresholds, "thresholding"),
            (config.rescale_betas_zero_snr, "rescale_betas_zero_snr"),
            (config.use_karras_sigmas && sigmas_kind, "use_karras_sigmas"),
            (
                config.use_exponential_sigmas && sigmas_kind,
                "use_exponential_sigmas",
            ),
            (config.use_beta_sigmas && sigmas_kind, "use_beta_sigmas"),
        ] {
            if set {
                return Err(CoreError::Weights(format!(
                    "scheduler config: {key} is not supported"
                )));
            }
        }
        if !(config.clip_sample_range.is_finite() && config.clip_sample_range > 0.0) {
            return Err(CoreError::Weights(format!(
                "scheduler config: clip_sample_range {} is not a positive number",
                config.clip_sample_range
            )));
        }
        if steps == 0 || steps > n || n < 2 {
            return Err(CoreError::Backend(format!(
                "{steps} steps; 1 to {n} are possible"
            )));
        }
        let alphas_cumprod = config.alphas_cumprod()?;
        let train_sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect();
        let linspace = |count: usize| -> Vec<f64> {
            (0..count)
                .map(|i| (n - 1) as f64 * i as f64 / (count - 1).max(1) as f64)
                .collect()
        };
        let stride = n / steps;
        let spacing = config.timestep_spacing.as_deref().unwrap_or(match kind {
            Kind::Ddim => "leading",
            _ => "linspace",
        });
        // DPM-Solver spaces one point more and drops the last (diffusers' set_timesteps).
        let points = steps + usize::from(kind == Kind::DpmSolverPp2M);
        let timesteps: Vec<f64> = match (kind, spacing) {
            (Kind::Lcm, _) => {
                // LCM's original 50-step schedule, of which `steps` are taken evenly.
                let original = 50usize.min(n);
                let k = n / original;
                let lcm: Vec<usize> = (1..=original).map(|i| i * k - 1).rev().collect();
                (0..steps)
                    .map(|i| lcm[((i * lcm.len()) as f64 / steps as f64).floor() as usize] as f64)
                    .collect()
            }
            (_, "linspace") => {
                let t = linspace(points).into_iter().rev();
                match kind {
                    Kind::Euler | Kind::EulerAncestral => t.take(steps).collect(),
                    _ => t.map(f64::round).take(steps).collect(),
                }
            }
            (_, "leading") => {
                let ratio = n / points;
                (0..points)
                    .rev()
                    .map(|i| (i * ratio + config.steps_offset) as f64)
                    .take(steps)
                    .collect()
            }
            (_, "trailing") => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| (n as f64 - i as f64 * ratio).round() - 1.0)
                    .collect()
            }
            (_, other) => {
                return Err(CoreError::Weights(format!(
                    "timestep_spacing {other} is not supported (linspace, leading, trailing)"
                )));
            }
        };
        let sigmas = {
            let mut s: Vec<f64> = timesteps
                .iter()
                .map(|&t| interp(t, &train_sigmas))
                .collect();
            s.push(0.0);
            s
        };
        let clip = match kind {
            Kind::Ddim => config.clip_sample.unwrap_or(true),
            Kind::Lcm => config.clip_sample.unwrap_or(false),
            _ => false,
        }
        .then_some(config.clip_sample_range as f32);
        let final_alpha = match config.set_alpha_to_one.unwrap_or(true) {
            true => 1.0,
            false => alphas_cumprod[0],
        };
        Ok(Scheduler {
            kind,
            alphas_cumprod,
            timesteps,
            sigmas,
            stride,
            leading: spacing == "leading",
            previous: None,
            clip,
            final_alpha,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The timesteps the UNet is given, in order.
    pub fn timesteps(&self) -> Vec<f32> {
        self.timesteps.iter().map(|&t| t as f32).collect()
    }

    /// The noise levels of Euler and DPM-Solver (one more than the steps: 0 at the end).
    pub fn sigmas(&self) -> Vec<f32> {
        self.sigmas.iter().map(|&s| s as f32).collect()
    }

    /// What the initial Gaussian noise is multiplied by.
    pub fn init_noise_sigma(&self) -> f32 {
        match self.kind {
            Kind::Euler | Kind::EulerAncestral => {
                let max = self.sigmas.iter().copied().fold(0.0, f64::max);
                match self.leading {
                    true => (max * max + 1.0).sqrt() as f32,
                    false => max as f32,
                }
            }
            _ => 1.0,
        }
    }

    /// `clean` latents noised with `noise` to the level step `i` starts from (past the last
    /// step: `clean` itself), as diffusers' `add_noise`: where an edit or a variation
    /// starts, and what an edit's kept region is put back as after each step.
    pub fn add_noise(&self, clean: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        if i >= self.timesteps.len() {
            return clean.to_vec();
        }
        let (a, b) = match self.kind {
            Kind::Euler | Kind::EulerAncestral => (1.0, self.sigmas[i]),
            Kind::DpmSolverPp2M => {
                let s = self.sigmas[i];
                let a = 1.0 / (s * s + 1.0).sqrt();
                (a, s * a)
            }
            Kind::Ddim | Kind::Lcm => {
                let a = self.alpha(self.timesteps[i]);
                (a.sqrt(), (1.0 - a).sqrt())
            }
        };
        let (a, b) = (a as f32, b as f32);
        clean
            .iter()
            .zip(noise)
            .map(|(x, n)| a * x + b * n)
            .collect()
    }

    /// The UNet's input at step `i` for `sample`.
    pub fn scale_model_input(&self, sample: &mut [f32], i: usize) {
        if matches!(self.kind, Kind::Euler | Kind::EulerAncestral) {
            let sigma = self.sigmas[i];
            let scale = (1.0 / (sigma * sigma + 1.0).sqrt()) as f32;
            sample.iter_mut().for_each(|v| *v *= scale);
        }
    }

    fn alpha(&self, t: f64) -> f64 {
        self.alphas_cumprod[t as usize]
    }

    /// What the latents would be with all the predicted noise `eps` taken out at step `i`
    /// (the clean estimate a partial image shows: the noisy latents themselves decode to
    /// noise until the last steps).
    pub fn predicted_original(&self, eps: &[f32], i: usize, sample: &[f32]) -> Vec<f32> {
        match self.kind {
            Kind::Euler | Kind::EulerAncestral => {
                let sigma = self.sigmas[i] as f32;
                sample.iter().zip(eps).map(|(x, e)| x - sigma * e).collect()
            }
            _ => {
                let a_t = self.alpha(self.timesteps[i]);
                let (sa, sb) = (a_t.sqrt() as f32, (1.0 - a_t).sqrt() as f32);
                sample
                    .iter()
                    .zip(eps)
                    .map(|(x, e)| self.clipped((x - sb * e) / sa))
                    .collect()
            }
        }
    }

    /// A clean estimate clamped where the config asks it to be (`clip_sample`).
    fn clipped(&self, x0: f32) -> f32 {
        match self.clip {
            Some(r) => x0.clamp(-r, r),
            None => x0,
        }
    }

    /// The latents after step `i`, from `sample` and the guided noise prediction `eps`;
    /// `noise` is the fresh noise Euler ancestral and LCM add (ignored by the others).
    pub fn step(
        &mut self,
        eps: &[f32],
        i: usize,
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let t = self.timesteps[i];
        match self.kind {
            Kind::Euler => {
                let dt = (self.sigmas[i + 1] - self.sigmas[i]) as f32;
                sample.iter().zip(eps).map(|(x, e)| x + e * dt).collect()
            }
            Kind::EulerAncestral => {
                let (from, to) = (self.sigmas[i], self.sigmas[i + 1]);
                let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
                let down = (to * to - up * up).sqrt();
                let dt = (down - from) as f32;
                let up = up as f32;
                sample
                    .iter()
                    .zip(eps)
                    .enumerate()
                    .map(|(k, (x, e))| x + e * dt + noise.map_or(0.0, |n| n[k]) * up)
                    .collect()
            }
            Kind::Ddim => {
                let a_t = self.alpha(t);
                let prev = t - self.stride as f64;
                let a_prev = if prev >= 0.0 {
                    self.alpha(prev)
                } else {
                    self.final_alpha
                };
                let (sa, sb) = (a_t.sqrt() as f32, (1.0 - a_t).sqrt() as f32);
                let (pa, pb) = (a_prev.sqrt() as f32, (1.0 - a_prev).sqrt() as f32);
                // diffusers keeps the predicted noise as it is when it clamps the estimate.
                sample
                    .iter()
                    .zip(eps)
                    .map(|(x, e)| pa * self.clipped((x - sb * e) / sa) + pb * e)
                    .collect()
            }
            Kind::DpmSolverPp2M => self.dpm_step(eps, i, sample),
            Kind::Lcm => {
                let a_t = self.alpha(t);
                let prev = self.timesteps.get(i + 1).copied();
                let a_prev = prev.map_or(self.alphas_cumprod[0], |p| self.alpha(p));
                // Boundary conditions for the consistency model (timestep scaling 10).
                let scaled = t * 10.0;
                let c_skip = 0.25 / (scaled * scaled + 0.25);
                let c_out = scaled / (scaled * scaled + 0.25).sqrt();
                let (sa, sb) = (a_t.sqrt() as f32, (1.0 - a_t).sqrt() as f32);
                let (c_skip, c_out) = (c_skip as f32, c_out as f32);
                let denoised: Vec<f32> = sample
                    .iter()
                    .zip(eps)
                    .map(|(x, e)| c_out * self.clipped((x - sb * e) / sa) + c_skip * x)
                    .collect();
                match (prev, noise) {
                    (Some(_), Some(n)) => {
                        let (pa, pb) = (a_prev.sqrt() as f32, (1.0 - a_prev).sqrt() as f32);
                        denoised
                            .iter()
                            .zip(n)
                            .map(|(d, z)| pa * d + pb * z)
                            .collect()
                    }
                    _ => denoised,
                }
            }
        }
    }

    /// DPM-Solver++ (2M, midpoint): first order at the first and last steps, second order
    /// between (diffusers' `lower_order_final` for short schedules).
    fn dpm_step(&mut self, eps: &[f32], i: usize, sample: &[f32]) -> Vec<f32> {
        let alpha_sigma = |s: f64| {
            let a = 1.0 / (s * s + 1.0).sqrt();
            (a, s * a)
        };
        let lambda = |s: f64| {
            let (a, sg) = alpha_sigma(s);
            a.ln() - sg.ln()
        };
        let (a_s, s_s) = alpha_sigma(self.sigmas[i]);
        let x0: Vec<f32> = sample
            .iter()
            .zip(eps)
            .map(|(x, e)| (x - s_s as f32 * e) / a_s as f32)
            .collect();
        let (a_t, s_t) = alpha_sigma(self.sigmas[i + 1]);
        let h = lambda(self.sigmas[i + 1]) - lambda(self.sigmas[i]);
        let ratio = if s_t == 0.0 { 0.0 } else { (s_t / s_s) as f32 };
        let coef = (a_t * ((-h).exp() - 1.0)) as f32;
        let last = i + 1 == self.timesteps.len();
        let out = match (&self.previous, last) {
            (Some(m1), false) if i > 0 => {
                let h0 = lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1]);
                let r = (h0 / h) as f32;
                sample
                    .iter()
                    .zip(&x0)
                    .zip(m1)
                    .map(|((x, d0), m)| {
                        let d1 = (d0 - m) / r;
                        ratio * x - coef * d0 - 0.5 * coef * d1
                    })
                    .collect()
            }
            _ => sample
                .iter()
                .zip(&x0)
                .map(|(x, d0)| ratio * x - coef * d0)
                .collect(),
        };
        self.previous = Some(x0);
        out
    }
}

/// Linear interpolation of `table` (indexed 0, 1, ...) at `t`.
fn interp(t: f64, table: &[f64]) -> f64 {
    let lo = (t.floor() as usize).min(table.len() - 1);
    let hi = (lo + 1).min(table.len() - 1);
    let f = t - lo as f64;
    table[lo] * (1.0 - f) + table[hi] * f
}
