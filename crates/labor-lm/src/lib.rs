//! The language-model engine. Today it holds the tensor runtime (device choice and a report of
//! what libtorch offers); the Llama-family model, weights and scoring build on it.

pub mod runtime;
