//! GGUF model files, in one place: the header and key/value metadata ([`metadata`]), the tensor
//! index and reading a tensor ([`index`]), dequantization of the common ggml block formats to
//! `f32` ([`dequant`]), with one error type, [`GgufError`]. What builds on it: the tokenizer from
//! the metadata (`labor_text::gguf`) and the llama import, which maps GGUF tensor names to
//! Hugging Face ones and the metadata to a `LlamaConfig` (`labor_lm::gguf`).
//!
//! No file-system I/O: callers pass a `Read` stream for the metadata, a `Read + Seek` one for
//! the index and tensors (a plain `File` is fine; the index is read through an internal buffer
//! and each tensor's data with one read). Every length and count is bounded before allocating
//! (a fuzz target in `labor-fuzz`).
//!
//! Block formats (ggml's `ggml-common.h`; little-endian, `f16` is IEEE half precision). A block
//! of `Q4_0`, `Q4_1`, `Q5_0` or `Q8_0` holds 32 consecutive elements; element `j` and `j + 16`
//! of a 4/5-bit block share byte `j` of the quants (low nibble, high nibble):
//!
//! | type | bytes | layout | element |
//! |------|-------|--------|---------|
//! | `Q4_0` | 18 | `f16 d, u8 qs[16]` | `d * (q - 8)` |
//! | `Q4_1` | 20 | `f16 d, f16 m, u8 qs[16]` | `d * q + m` |
//! | `Q5_0` | 22 | `f16 d, u32 qh, u8 qs[16]` | `d * (q - 16)`, bit 4 of element `j` is bit `j` of `qh` |
//! | `Q8_0` | 34 | `f16 d, i8 qs[32]` | `d * q` |
//! | `Q4_K` | 144 | `f16 d, f16 dmin, u8 scales[12], u8 qs[128]` | `d * sc[j / 32] * q - dmin * m[j / 32]` |
//! | `Q6_K` | 210 | `u8 ql[128], u8 qh[64], i8 scales[16], f16 d` | `d * scales[j / 16] * (q - 32)` |
//!
//! `Q4_K` and `Q6_K` blocks hold 256 elements. `Q4_K` packs eight 6-bit scales `sc` and mins
//! `m` into 12 bytes, and each 64-element chunk `c` into 32 bytes of `qs` (low nibbles: elements
//! `64c..64c+32`, high nibbles: the next 32). `Q6_K` keeps the low 4 bits of each quant in `ql`
//! and the high 2 bits in `qh`; see [`dequantize`]'s helpers for the exact bit positions.

pub mod dequant;
mod error;
pub mod index;
pub mod metadata;

pub use dequant::dequantize;
pub use error::GgufError;
pub use index::{GgmlType, GgufIndex, TensorInfo, read_index, read_tensor};
pub use metadata::{MAX_NESTING, Metadata, Value, read_metadata};
