//! The CPU path's hand-written kernels: quantized matrix products ([`quant`], public for the
//! benchmarks) and the vector maths of attention and activations ([`vecmath`]), with x86-64
//! SIMD versions chosen at run time.

pub(crate) mod pools;
pub mod quant;
pub(crate) mod vecmath;
