//! Torch-side building blocks that every neural model of the workspace shares, so that model
//! crates depend downward on this one and never sideways on each other:
//!
//! - [`runtime`]: device requests (`auto`, `cpu`, `cuda:N`) and a description of the runtime;
//! - [`optim`]: AdamW over named parameters and its learning-rate schedule;
//! - [`init`]: seeded initialisation that does not depend on torch's global generator;
//! - [`weights`]: name-for-name copies between a `VarStore` and safetensors buffers;
//! - [`order`]: the seeded order of examples per epoch, and length-grouped micro-batches;
//! - [`hooks`]: the one shape of a training loop's caller (progress and snapshots out).
//!
//! Random numbers come from `labor_data::rng`, the workspace's one generator module. No I/O:
//! callers read and write the files.

pub mod hooks;
pub mod init;
pub mod optim;
pub mod order;
pub mod runtime;
pub mod weights;
