//! The language-model engine: the tensor runtime (device choice), the Llama-family decoder in
//! tch, its weights in Hugging Face safetensors and GGUF form, and exact scoring of the next
//! record's label (true continuation and full distributions through a token trie).

pub mod config;
pub mod gguf;
pub mod model;
pub mod peft;
pub mod predict;
pub mod runtime;
pub mod score;
pub mod train;
pub mod weights;

pub use config::LlamaConfig;
pub use model::{KvCache, Llama, LoraConfig, Mask};
