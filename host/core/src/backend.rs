//! Choosing where a model runs. The only place that knows which burn backends exist; the
//! choice is configuration (`auto | cpu | wgpu`), never a code edit.
//!
//! - `cpu`: burn's `flex` backend (pure Rust, SIMD gemm, rayon).
//! - `wgpu`: burn-wgpu on whatever adapter wgpu finds, a software one (Mesa lavapipe) included.
//!   Needs the `wgpu` cargo feature (on by default).
//! - `auto`: a real GPU through wgpu when one is present, else `cpu` (a software Vulkan device
//!   is slower than `flex`, so it is never picked automatically).

use burn::tensor::Device;

use crate::error::CoreError;

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    #[default]
    Auto,
    Cpu,
    Wgpu,
}

/// What a model actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Wgpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
        }
    }
}

/// The burn device for a preference.
pub fn select_device(pref: BackendPreference) -> Result<(Device, BackendKind), CoreError> {
    match pref {
        BackendPreference::Cpu => Ok((Device::flex(), BackendKind::Cpu)),
        BackendPreference::Wgpu => wgpu_device().map(|d| (d, BackendKind::Wgpu)),
        BackendPreference::Auto => Ok(match hardware_gpu() {
            Some(d) => (d, BackendKind::Wgpu),
            None => (Device::flex(), BackendKind::Cpu),
        }),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, CoreError> {
    use burn::tensor::DeviceKind;
    Device::wgpu_options().device_kind(DeviceKind::DefaultDevice).init().map_err(|e| {
        CoreError::Backend(format!("no wgpu adapter could be opened ({e}); install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers"))
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, CoreError> {
    Err(CoreError::Backend(
        "this build has no wgpu backend (enable the `wgpu` cargo feature)".into(),
    ))
}

#[cfg(feature = "wgpu")]
fn hardware_gpu() -> Option<Device> {
    use burn::tensor::DeviceKind;
    [DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)]
        .into_iter()
        .find_map(|kind| Device::wgpu_options().device_kind(kind).init().ok())
}

#[cfg(not(feature = "wgpu"))]
fn hardware_gpu() -> Option<Device> {
    None
}
