//! Choosing where a model runs. The only place that knows which backends exist; the choice is
//! configuration (`auto | cpu | flex | wgpu`), never a code edit.
//!
//! - `cpu`: the CPU's fast path (`cpu_llama.rs`): weights kept quantized, SIMD kernels.
//! - `flex`: burn's own CPU backend with every weight dequantized to f32 (the slow fallback,
//!   kept as a cross-check of the fast path).
//! - `wgpu`: burn-wgpu on whatever adapter wgpu finds, a software one (Mesa lavapipe) included.
//!   Needs the `wgpu` cargo feature (on by default).
//! - `auto`: a real GPU through wgpu when one is present, else `cpu` (a software Vulkan device
//!   is slower than the CPU path, so it is never picked automatically).

use burn::tensor::Device;

use crate::error::CoreError;

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    #[default]
    Auto,
    Cpu,
    Flex,
    Wgpu,
}

/// What a model actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Flex,
    Wgpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
        }
    }
}

/// Where a model will run.
pub(crate) enum Target {
    /// The CPU fast path (no burn device).
    Cpu,
    /// A burn device.
    Burn(Device, BackendKind),
}

/// The target for a preference.
pub(crate) fn select(pref: BackendPreference) -> Result<Target, CoreError> {
    match pref {
        BackendPreference::Cpu => Ok(Target::Cpu),
        BackendPreference::Flex => Ok(Target::Burn(Device::flex(), BackendKind::Flex)),
        BackendPreference::Wgpu => wgpu_device().map(|d| Target::Burn(d, BackendKind::Wgpu)),
        BackendPreference::Auto => Ok(match hardware_gpu() {
            Some(d) => Target::Burn(d, BackendKind::Wgpu),
            None => Target::Cpu,
        }),
    }
}

/// wgpu's runtime can be started once per process: a second `init` fails with "service already
/// initialized", and two at once race. So every model on wgpu (a chat model and an embedder,
/// or the tests' several) shares the device opened first.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, CoreError> {
    use burn::tensor::DeviceKind;
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .device_kind(DeviceKind::DefaultDevice)
                .init()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| {
            CoreError::Backend(format!("no wgpu adapter could be opened ({e}); install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers"))
        })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, CoreError> {
    Err(CoreError::Backend(
        "this build has no wgpu backend (enable the `wgpu` cargo feature)".into(),
    ))
}

/// A discrete or integrated GPU, looked for once per process (see [`wgpu_device`]).
#[cfg(feature = "wgpu")]
fn hardware_gpu() -> Option<Device> {
    use burn::tensor::DeviceKind;
    static GPU: std::sync::OnceLock<Option<Device>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        [DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)]
            .into_iter()
            .find_map(|kind| Device::wgpu_options().device_kind(kind).init().ok())
    })
    .clone()
}

#[cfg(not(feature = "wgpu"))]
fn hardware_gpu() -> Option<Device> {
    None
}
