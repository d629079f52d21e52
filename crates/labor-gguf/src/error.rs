//! The one error type of GGUF reading, from the header to a llama import.

use crate::GgmlType;

/// Everything that can be wrong with a GGUF file, or with importing one.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {0:?})")]
    Magic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 or 3 expected)")]
    Version(u32),
    #[error("GGUF metadata value type {0} is unknown")]
    Type(u32),
    #[error("GGUF file is truncated: {what} (the file has {file_len} bytes)")]
    Truncated { what: String, file_len: u64 },
    #[error("reading GGUF {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GGUF metadata key {key}: {what}")]
    Key { key: String, what: String },
    #[error(
        "the file has a rope_freqs.weight tensor: Llama 3.1 style RoPE frequency factors, which \
         llama.cpp derives from the model's rope_scaling. GGUF does not record that rope_scaling, \
         so the model cannot be imported exactly; import it from its Hugging Face directory \
         instead, or pass --allow-rope-freqs and put the original rope_scaling into the written \
         config.json yourself"
    )]
    RopeFreqs,
    #[error("GGUF tensor info {index} ({name:?}): {what}")]
    BadTensorInfo {
        index: u64,
        name: String,
        what: String,
    },
    #[error(
        "{} cannot be dequantized (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, \
         Q6_K)",
        .ty.describe()
    )]
    UnsupportedType { ty: GgmlType },
    #[error("{ty} stores blocks of {block} elements; {n_elements} elements is not a whole number")]
    BlockMultiple {
        ty: GgmlType,
        n_elements: usize,
        block: usize,
    },
    #[error("{ty} data of {n_elements} elements must be {expected} bytes, found {found}")]
    ByteSize {
        ty: GgmlType,
        n_elements: usize,
        expected: usize,
        found: usize,
    },
    #[error("tensor {name:?}: {source}")]
    Tensor {
        name: String,
        #[source]
        source: Box<GgufError>,
    },
    #[error("general.architecture is {0:?}; only \"llama\" GGUF files can be imported")]
    Architecture(String),
    #[error("tensor(s) not part of a llama model with this metadata: {}", .0.join(", "))]
    UnknownTensors(Vec<String>),
    #[error("tensor {gguf:?} (for {hf}) is missing")]
    MissingTensor { gguf: String, hf: String },
    #[error("tensor {name:?} has shape {found:?}; the metadata implies {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("config from GGUF metadata: {0}")]
    Config(String),
}

impl GgufError {
    /// Whether the file's content is at fault (a malformed, truncated or unsupported file: the
    /// CLI's exit 2) rather than the machine (a read that failed for another reason).
    pub fn is_bad_input(&self) -> bool {
        match self {
            GgufError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ),
            _ => true,
        }
    }
}

/// Bytes of the header and metadata that could not be read (`?` on the readers' I/O errors).
impl From<std::io::Error> for GgufError {
    fn from(source: std::io::Error) -> Self {
        GgufError::Io {
            what: "the header and metadata".into(),
            source,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GgufError {
    let what = what.into();
    move |source| GgufError::Io { what, source }
}
