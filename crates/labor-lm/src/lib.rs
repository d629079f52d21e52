//! The language-model engine: the Llama-family decoder in tch, its weights in Hugging Face
//! safetensors and GGUF form, causal-LM training, and exact scoring of the next record's label
//! (true continuation and full distributions through a token trie). Devices, the optimizer and
//! safetensors copies are `labor_torch`'s.

pub mod config;
pub mod gguf;
pub mod model;
pub mod peft;
pub mod predict;
pub mod score;
pub mod train;

pub use config::LlamaConfig;
pub use model::{KvCache, Llama, LoraConfig, Mask};
