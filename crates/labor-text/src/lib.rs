//! From panels to text and tokens: the resume-like template (SPEC §4), rendering with spans,
//! parsing back, and tokenizers.

pub mod gguf;
pub mod render;
pub mod template;
pub mod tokenize;

pub use render::{Parsed, RecordSpan, Rendered, Renderer, numeric_code};
pub use template::{Switches, Template};
