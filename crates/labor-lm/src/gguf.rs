//! GGUF model files: the tensor index (names, shapes, ggml types, offsets), dequantization of
//! the common ggml block formats to `f32`, and import of a `llama` GGUF as Hugging Face-named
//! tensors with a [`LlamaConfig`].
//!
//! The header and key/value metadata are parsed by [`labor_text::gguf::read_metadata`]; this
//! module reads what follows them: one info record per tensor (name, dimensions, ggml type,
//! offset), then, at the next multiple of `general.alignment` (32 by default), the data
//! section. Like the rest of labor-lm it does no file-system I/O: callers pass a `Read + Seek`
//! stream (a plain `File` is fine; the index is read through an internal buffer and each
//! tensor's data with one read).
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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};

use labor_text::gguf::{GgufError, Metadata, Value, read_metadata};

use crate::config::LlamaConfig;

/// The tensor element types this module can dequantize, and any other ggml type id.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4_K,
    Q6_K,
    /// Any other ggml type id (known to ggml, like `Q5_K` = 13, or not).
    Unsupported(u32),
}

/// `(id, ggml name, elements per block, bytes per block)` of every ggml type in ggml/gguf-py
/// (ids 31–33 and 36–38 were removed from ggml).
const GGML_TYPES: &[(u32, &str, usize, usize)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type with ggml type id `id`.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            30 => Self::BF16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            8 => Self::Q8_0,
            12 => Self::Q4_K,
            14 => Self::Q6_K,
            other => Self::Unsupported(other),
        }
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::BF16 => 30,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q4_K => 12,
            Self::Q6_K => 14,
            Self::Unsupported(id) => id,
        }
    }

    fn entry(self) -> Option<&'static (u32, &'static str, usize, usize)> {
        let id = self.id();
        GGML_TYPES.iter().find(|t| t.0 == id)
    }

    /// ggml's name of the type (`"Q4_K"`), also for known types that cannot be dequantized.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|t| t.1)
    }

    /// `(elements per block, bytes per block)`, for every type ggml knows.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        self.entry().map(|t| (t.2, t.3))
    }

    /// `"Q5_K (ggml type 13)"`, `"ggml type 99 (unknown)"`.
    fn describe(self) -> String {
        match self.name() {
            Some(name) => format!("{name} (ggml type {})", self.id()),
            None => format!("ggml type {} (unknown)", self.id()),
        }
    }

    /// Whether [`dequantize`] can decode the type.
    pub fn is_supported(self) -> bool {
        !matches!(self, Self::Unsupported(_))
    }

    /// Bytes taken by `n_elements` elements; `None` for a type of unknown layout or a count
    /// that is not a whole number of blocks.
    pub fn byte_size(self, n_elements: usize) -> Option<usize> {
        let (block, bytes) = self.block_layout()?;
        n_elements
            .is_multiple_of(block)
            .then(|| n_elements / block * bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown ggml type {}", self.id()),
        }
    }
}

/// Where and how one tensor is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major (Hugging Face / PyTorch) order: ggml's `ne` reversed, so a `[rows, cols]`
    /// matrix has `ne = [cols, rows]`.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Byte offset of the data, relative to [`GgufIndex::data_start`].
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of the stored data (`None` for a type of unknown layout).
    pub fn byte_size(&self) -> Option<usize> {
        self.ty.byte_size(self.n_elements())
    }
}

/// Everything in a GGUF file but the tensor data.
#[derive(Debug, Clone)]
pub struct GgufIndex {
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    /// Absolute stream position of the data section (the end of the tensor infos rounded up to
    /// `general.alignment`, 32 by default).
    pub data_start: u64,
}

impl GgufIndex {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GgufImportError {
    #[error("GGUF header: {0}")]
    Metadata(#[source] GgufError),
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
        source: Box<GgufImportError>,
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

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GgufImportError {
    let what = what.into();
    move |source| GgufImportError::Io { what, source }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// ggml's limit on tensor dimensions (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

/// One tensor info record: name, dimension count, `ne`, type id, offset.
fn read_tensor_info(
    r: &mut impl Read,
    index: u64,
) -> Result<(String, Vec<u64>, u32, u64), GgufImportError> {
    let bad = |name: &str, what: String| GgufImportError::BadTensorInfo {
        index,
        name: name.into(),
        what,
    };
    let len = read_u64(r).map_err(io_err("a tensor name"))?;
    if len > 1 << 16 {
        return Err(bad("", format!("name of {len} bytes")));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b).map_err(io_err("a tensor name"))?;
    let name = String::from_utf8(b).map_err(|e| bad("", format!("name is not UTF-8: {e}")))?;
    let n_dims = read_u32(r).map_err(io_err("tensor dimensions"))?;
    if n_dims > MAX_DIMS {
        return Err(bad(
            &name,
            format!("{n_dims} dimensions (ggml allows {MAX_DIMS})"),
        ));
    }
    let ne = (0..n_dims)
        .map(|_| read_u64(r))
        .collect::<std::io::Result<Vec<u64>>>()
        .map_err(io_err("tensor dimensions"))?;
    let ty = read_u32(r).map_err(io_err("a tensor type"))?;
    let offset = read_u64(r).map_err(io_err("a tensor offset"))?;
    Ok((name, ne, ty, offset))
}

fn eof_to_truncated(e: GgufImportError, what: &str, file_len: u64) -> GgufImportError {
    match e {
        GgufImportError::Io { source, .. } if source.kind() == ErrorKind::UnexpectedEof => {
            GgufImportError::Truncated {
                what: format!("{what} run past the end"),
                file_len,
            }
        }
        e => e,
    }
}

/// Reads the header, metadata and tensor infos of a GGUF stream (from its start), and checks
/// every tensor: at most 4 dimensions, rows a whole number of blocks, offsets aligned, unique
/// names, and data inside the stream. Tensors of types [`dequantize`] cannot decode are listed
/// (reading them fails).
pub fn read_index<R: Read + Seek>(r: &mut R) -> Result<GgufIndex, GgufImportError> {
    let file_len = r
        .seek(SeekFrom::End(0))
        .map_err(io_err("the stream length"))?;
    r.seek(SeekFrom::Start(0)).map_err(io_err("the header"))?;
    let mut br = BufReader::with_capacity(1 << 16, &mut *r);
    let metadata = read_metadata(&mut br).map_err(|e| match e {
        GgufError::Io(e) if e.kind() == ErrorKind::UnexpectedEof => GgufImportError::Truncated {
            what: "the header and metadata run past the end".into(),
            file_len,
        },
        e => GgufImportError::Metadata(e),
    })?;
    let alignment = match metadata.kv.get("general.alignment") {
        None => 32,
        Some(v) => {
            v.as_u64()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| GgufImportError::Key {
                    key: "general.alignment".into(),
                    what: format!("{v:?} is not a power of two"),
                })?
        }
    };
    let count = metadata.tensor_count;
    // Each record takes at least 24 bytes, which bounds a corrupt count before allocating.
    let mut tensors = Vec::with_capacity(count.min(file_len / 24) as usize);
    let mut names = HashSet::new();
    for i in 0..count {
        let (name, ne, id, offset) = read_tensor_info(&mut br, i).map_err(|e| {
            eof_to_truncated(
                e,
                &format!("the tensor infos (at record {i} of {count})"),
                file_len,
            )
        })?;
        let bad = |what: String| GgufImportError::BadTensorInfo {
            index: i,
            name: name.clone(),
            what,
        };
        let ty = GgmlType::from_id(id);
        let mut shape = Vec::with_capacity(ne.len());
        for &d in ne.iter().rev() {
            shape.push(
                usize::try_from(d)
                    .ok()
                    .filter(|&d| d <= i64::MAX as usize)
                    .ok_or_else(|| bad(format!("dimension {d} is too large")))?,
            );
        }
        if shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .is_none()
        {
            return Err(bad(format!("{ne:?} elements overflow")));
        }
        if let (Some((block, _)), Some(&ne0)) = (ty.block_layout(), ne.first())
            && !ne0.is_multiple_of(block as u64)
        {
            return Err(bad(format!(
                "rows of {ne0} elements are not a whole number of {ty} blocks of {block}"
            )));
        }
        if !offset.is_multiple_of(alignment) {
            return Err(bad(format!(
                "offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(bad("the name occurs twice".into()));
        }
        tensors.push(TensorInfo {
            name,
            shape,
            ty,
            offset,
        });
    }
    let end_of_infos = br.stream_position().map_err(io_err("the tensor infos"))?;
    let data_start = end_of_infos.next_multiple_of(alignment);
    for t in &tensors {
        let Some(size) = t.byte_size() else { continue };
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(size as u64));
        if end.is_none_or(|end| end > file_len) {
            return Err(GgufImportError::Truncated {
                what: format!(
                    "tensor {:?} ({} bytes at data offset {}, data section from byte {data_start}) \
                     runs past the end",
                    t.name, size, t.offset
                ),
                file_len,
            });
        }
    }
    Ok(GgufIndex {
        metadata,
        tensors,
        data_start,
    })
}

/// Reads one tensor's data and dequantizes it to `f32` (row-major, [`TensorInfo::shape`]).
pub fn read_tensor<R: Read + Seek>(
    r: &mut R,
    index: &GgufIndex,
    info: &TensorInfo,
) -> Result<Vec<f32>, GgufImportError> {
    let in_tensor = |e| GgufImportError::Tensor {
        name: info.name.clone(),
        source: Box::new(e),
    };
    let n = info.n_elements();
    if !info.ty.is_supported() {
        return Err(in_tensor(GgufImportError::UnsupportedType { ty: info.ty }));
    }
    let Some(size) = info.byte_size() else {
        let block = info.ty.block_layout().map_or(1, |l| l.0);
        return Err(in_tensor(GgufImportError::BlockMultiple {
            ty: info.ty,
            n_elements: n,
            block,
        }));
    };
    let start = index.data_start + info.offset;
    let what = || format!("tensor {:?}", info.name);
    r.seek(SeekFrom::Start(start)).map_err(io_err(what()))?;
    let mut bytes = vec![0u8; size];
    if let Err(e) = r.read_exact(&mut bytes) {
        if e.kind() == ErrorKind::UnexpectedEof {
            let file_len = r.seek(SeekFrom::End(0)).unwrap_or(0);
            return Err(GgufImportError::Truncated {
                what: format!(
                    "tensor {:?} needs bytes {start}..{}",
                    info.name,
                    start + size as u64
                ),
                file_len,
            });
        }
        return Err(io_err(what())(e));
    }
    dequantize(info.ty, &bytes, n).map_err(in_tensor)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `n_elements` elements of type `ty` from exactly the bytes they take.
pub fn dequantize(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, GgufImportError> {
    let (block, block_bytes) = match (ty, ty.block_layout()) {
        (GgmlType::Unsupported(_), _) | (_, None) => {
            return Err(GgufImportError::UnsupportedType { ty });
        }
        (_, Some(layout)) => layout,
    };
    if !n_elements.is_multiple_of(block) {
        return Err(GgufImportError::BlockMultiple {
            ty,
            n_elements,
            block,
        });
    }
    let expected = n_elements / block * block_bytes;
    if bytes.len() != expected {
        return Err(GgufImportError::ByteSize {
            ty,
            n_elements,
            expected,
            found: bytes.len(),
        });
    }
    let mut out = vec![0f32; n_elements];
    let blocks = bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => {
            blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, o)| {
            o[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(b, o)| q6_k(b, o)),
        GgmlType::Unsupported(_) => unreachable!("rejected above"),
    }
    Ok(out)
}

fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = (i32::from(qs[j] & 0xF) - 8) as f32 * d;
        o[j + 16] = (i32::from(qs[j] >> 4) - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = f32::from(qs[j] & 0xF) * d + m;
        o[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        o[j] = ((u32::from(qs[j] & 0xF) | h0) as i32 - 16) as f32 * d;
        o[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in o.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Scale and min of sub-block `j` (0..8) from `Q4_K`'s 12 packed bytes: for `j < 4` the low 6
/// bits of bytes `j` and `j + 4`; for `j >= 4` the nibbles of byte `j + 4` below the top 2 bits
/// of bytes `j - 4` and `j`.
fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (sc0, m0) = q4_k_scale_min(2 * c, scales);
        let (sc1, m1) = q4_k_scale_min(2 * c + 1, scales);
        let (d0, min0) = (d * f32::from(sc0), dmin * f32::from(m0));
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let q = &qs[32 * c..32 * c + 32];
        let (lo, hi) = o[64 * c..64 * c + 64].split_at_mut(32);
        for l in 0..32 {
            lo[l] = d0 * f32::from(q[l] & 0xF) - min0;
            hi[l] = d1 * f32::from(q[l] >> 4) - min1;
        }
    }
}

/// `Q6_K`: per 128-element half `n`, bytes `64n..64n+64` of `ql` and `32n..32n+32` of `qh`;
/// element `128n + 32k + l` (k = 0..4, l = 0..32) has its low nibble in `ql[64n + 32(k % 2) + l]`
/// (high nibble for k >= 2) and its high 2 bits at bits `2k..2k+2` of `qh[32n + l]`.
fn q6_k(b: &[u8], o: &mut [f32]) {
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let d = f16_at(rest, 16);
    let mut scale = [0f32; 16];
    for (s, &x) in scale.iter_mut().zip(&rest[..16]) {
        *s = d * f32::from(x as i8);
    }
    for n in 0..2 {
        let ql = &ql[64 * n..64 * n + 64];
        let qh = &qh[32 * n..32 * n + 32];
        let o = &mut o[128 * n..128 * n + 128];
        let scale = &scale[8 * n..8 * n + 8];
        for l in 0..32 {
            let h = qh[l];
            let q0 = i32::from((ql[l] & 0xF) | ((h & 3) << 4)) - 32;
            let q1 = i32::from((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
            let q2 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            let s = l / 16;
            o[l] = scale[s] * q0 as f32;
            o[l + 32] = scale[s + 2] * q1 as f32;
            o[l + 64] = scale[s + 4] * q2 as f32;
            o[l + 96] = scale[s + 6] * q3 as f32;
        }
    }
}

/// Undo llama.cpp's convert-time row permutation of q/k weights (and biases if any) for `n_head`
/// heads. `convert_hf_to_gguf.py` interleaves the two halves of each head's rows (for its
/// "GPT-J" style RoPE on adjacent pairs): GGUF row `h * hd + 2 * i + t` holds Hugging Face row
/// `h * hd + t * hd / 2 + i` (head dim `hd = rows / n_head`, `t` in 0..2). `k` uses the number
/// of key/value heads. A bias is a matrix with `cols = 1`.
///
/// # Panics
/// If `w.len() != rows * cols` or `rows` is not a multiple of `2 * n_head`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    assert_eq!(
        w.len(),
        rows * cols,
        "unpermute_rows: {rows}x{cols} needs {} values",
        rows * cols
    );
    assert!(
        n_head > 0 && rows.is_multiple_of(2 * n_head),
        "unpermute_rows: {rows} rows do not split into {n_head} heads of even size"
    );
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for i in 0..half {
            for t in 0..2 {
                let src = h * hd + 2 * i + t;
                let dst = h * hd + t * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn key_missing(key: &str) -> GgufImportError {
    GgufImportError::Key {
        key: key.into(),
        what: "missing".into(),
    }
}

fn opt_usize(m: &Metadata, key: &str) -> Result<Option<usize>, GgufImportError> {
    m.kv.get(key)
        .map(|v| {
            v.as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| GgufImportError::Key {
                    key: key.into(),
                    what: format!("expected a non-negative integer, found {v:?}"),
                })
        })
        .transpose()
}

fn req_usize(m: &Metadata, key: &str) -> Result<usize, GgufImportError> {
    opt_usize(m, key)?.ok_or_else(|| key_missing(key))
}

/// A float metadata value. GGUF stores llama's floats as `f32`, read as the nearest `f64`
/// (1e-5 becomes 9.999999747378752e-6); an `f64` that is exactly an `f32` is given as the
/// shortest decimal that round-trips through `f32`, which is what config.json had.
fn opt_f64(m: &Metadata, key: &str) -> Result<Option<f64>, GgufImportError> {
    let Some(v) = m.kv.get(key) else {
        return Ok(None);
    };
    let x = match v {
        Value::F64(x) => {
            let f = *x as f32;
            if f.is_finite() && f64::from(f) == *x {
                f.to_string().parse().unwrap_or(*x)
            } else {
                *x
            }
        }
        Value::U64(x) => *x as f64,
        Value::I64(x) => *x as f64,
        other => {
            return Err(GgufImportError::Key {
                key: key.into(),
                what: format!("expected a number, found {other:?}"),
            });
        }
    };
    Ok(Some(x))
}

/// LlamaConfig from `llama.*` metadata (context_length, embedding_length, block_count,
/// feed_forward_length, attention.head_count, attention.head_count_kv, rope.freq_base,
/// attention.layer_norm_rms_epsilon, rope.dimension_count if present; vocab size = number of
/// tokenizer.ggml.tokens; bos/eos ids from tokenizer.ggml.*_token_id; tie_word_embeddings = no
/// `output.weight` tensor). Error for general.architecture other than "llama" naming it.
///
/// Also: `attention_bias` is set when the file has `blk.*.attn_{q,k,v,output}.bias` tensors;
/// `head_dim` is set only where `attention.key_length` / `rope.dimension_count` differ from
/// `embedding_length / head_count`; a rotary dimension smaller than the head dimension and a
/// `rope.scaling.type` other than `none` are errors (Llama has neither). The result passes
/// [`LlamaConfig::validate`].
pub fn llama_config(index: &GgufIndex) -> Result<LlamaConfig, GgufImportError> {
    let m = &index.metadata;
    let arch_key = "general.architecture";
    let arch = m.kv.get(arch_key).ok_or_else(|| key_missing(arch_key))?;
    let arch = arch.as_str().ok_or_else(|| GgufImportError::Key {
        key: arch_key.into(),
        what: format!("expected a string, found {arch:?}"),
    })?;
    if arch != "llama" {
        return Err(GgufImportError::Architecture(arch.into()));
    }
    let hidden = req_usize(m, "llama.embedding_length")?;
    let layers = req_usize(m, "llama.block_count")?;
    let ff = req_usize(m, "llama.feed_forward_length")?;
    let heads = req_usize(m, "llama.attention.head_count")?;
    if heads == 0 {
        return Err(GgufImportError::Key {
            key: "llama.attention.head_count".into(),
            what: "must be positive".into(),
        });
    }
    let kv_heads = opt_usize(m, "llama.attention.head_count_kv")?.unwrap_or(heads);
    let context = req_usize(m, "llama.context_length")?;
    let eps_key = "llama.attention.layer_norm_rms_epsilon";
    let eps = opt_f64(m, eps_key)?.ok_or_else(|| key_missing(eps_key))?;
    let theta = opt_f64(m, "llama.rope.freq_base")?.unwrap_or(10_000.0);

    let key_len = opt_usize(m, "llama.attention.key_length")?;
    if let (Some(k), Some(v)) = (key_len, opt_usize(m, "llama.attention.value_length")?)
        && k != v
    {
        return Err(GgufImportError::Key {
            key: "llama.attention.value_length".into(),
            what: format!("{v} differs from attention.key_length {k}; Llama needs them equal"),
        });
    }
    let rope_dim = opt_usize(m, "llama.rope.dimension_count")?;
    let explicit_head_dim = key_len.or(rope_dim);
    let head_dim = explicit_head_dim.unwrap_or(hidden / heads);
    if let Some(r) = rope_dim
        && r != head_dim
    {
        return Err(GgufImportError::Key {
            key: "llama.rope.dimension_count".into(),
            what: format!(
                "{r} differs from the head dimension {head_dim} (partial RoPE is not Llama)"
            ),
        });
    }
    if let Some(v) = m.kv.get("llama.rope.scaling.type")
        && v.as_str() != Some("none")
    {
        return Err(GgufImportError::Key {
            key: "llama.rope.scaling.type".into(),
            what: format!("{v:?} is not supported"),
        });
    }

    let tokens_key = "tokenizer.ggml.tokens";
    let vocab = match m.kv.get(tokens_key) {
        Some(v) => v
            .as_array()
            .ok_or_else(|| GgufImportError::Key {
                key: tokens_key.into(),
                what: "expected an array".into(),
            })?
            .len(),
        None => opt_usize(m, "llama.vocab_size")?.ok_or_else(|| key_missing(tokens_key))?,
    };
    let token_id = |key: &str| -> Result<Option<serde_json::Value>, GgufImportError> {
        Ok(opt_usize(m, key)?.map(serde_json::Value::from))
    };
    let tie = index.tensor("output.weight").is_none();
    let attention_bias = index.tensors.iter().any(|t| {
        t.name.starts_with("blk.")
            && [
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
                "attn_output.bias",
            ]
            .iter()
            .any(|s| t.name.ends_with(&format!(".{s}")))
    });

    let mut c = LlamaConfig::small(vocab, hidden, ff, layers, heads, kv_heads, context, tie);
    c.head_dim = explicit_head_dim.filter(|&hd| hd * heads != hidden);
    c.rms_norm_eps = eps;
    c.rope_theta = theta;
    c.attention_bias = attention_bias;
    c.bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
    c.eos_token_id = token_id("tokenizer.ggml.eos_token_id")?;
    c.validate().map_err(GgufImportError::Config)?;
    Ok(c)
}

/// How a tensor's rows were permuted at conversion.
#[derive(Debug, Clone, Copy)]
enum Permute {
    None,
    Heads,
    KvHeads,
}

/// `(GGUF name, Hugging Face name, shape, permutation)` of every tensor a llama GGUF with
/// config `c` holds, in Hugging Face module order.
fn llama_tensors(c: &LlamaConfig) -> Vec<(String, String, Vec<usize>, Permute)> {
    let (d, f, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let hd = c.head_dim();
    let (q, kv) = (c.num_attention_heads * hd, c.kv_heads() * hd);
    let mut out = vec![(
        "token_embd.weight".to_string(),
        "model.embed_tokens.weight".to_string(),
        vec![v, d],
        Permute::None,
    )];
    for l in 0..c.num_hidden_layers {
        let mut per_layer = vec![
            (
                "attn_q.weight",
                "self_attn.q_proj.weight",
                vec![q, d],
                Permute::Heads,
            ),
            (
                "attn_k.weight",
                "self_attn.k_proj.weight",
                vec![kv, d],
                Permute::KvHeads,
            ),
            (
                "attn_v.weight",
                "self_attn.v_proj.weight",
                vec![kv, d],
                Permute::None,
            ),
            (
                "attn_output.weight",
                "self_attn.o_proj.weight",
                vec![d, q],
                Permute::None,
            ),
        ];
        if c.attention_bias {
            per_layer.extend([
                (
                    "attn_q.bias",
                    "self_attn.q_proj.bias",
                    vec![q],
                    Permute::Heads,
                ),
                (
                    "attn_k.bias",
                    "self_attn.k_proj.bias",
                    vec![kv],
                    Permute::KvHeads,
                ),
                (
                    "attn_v.bias",
                    "self_attn.v_proj.bias",
                    vec![kv],
                    Permute::None,
                ),
                (
                    "attn_output.bias",
                    "self_attn.o_proj.bias",
                    vec![d],
                    Permute::None,
                ),
            ]);
        }
        per_layer.extend([
            (
                "ffn_gate.weight",
                "mlp.gate_proj.weight",
                vec![f, d],
                Permute::None,
            ),
            (
                "ffn_up.weight",
                "mlp.up_proj.weight",
                vec![f, d],
                Permute::None,
            ),
            (
                "ffn_down.weight",
                "mlp.down_proj.weight",
                vec![d, f],
                Permute::None,
            ),
            (
                "attn_norm.weight",
                "input_layernorm.weight",
                vec![d],
                Permute::None,
            ),
            (
                "ffn_norm.weight",
                "post_attention_layernorm.weight",
                vec![d],
                Permute::None,
            ),
        ]);
        out.extend(per_layer.into_iter().map(|(g, h, s, p)| {
            (
                format!("blk.{l}.{g}"),
                format!("model.layers.{l}.{h}"),
                s,
                p,
            )
        }));
    }
    out.push((
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        vec![d],
        Permute::None,
    ));
    if !c.tie_word_embeddings {
        out.push((
            "output.weight".into(),
            "lm_head.weight".into(),
            vec![v, d],
            Permute::None,
        ));
    }
    out
}

/// llama.cpp's per-dimension RoPE frequency factors (refused unless allowed, see
/// [`import_llama_with`]).
const ROPE_FREQS: &str = "rope_freqs.weight";

/// Every tensor of a llama GGUF, dequantized to f32, with its Hugging Face name
/// (model.embed_tokens.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
/// model.layers.N.mlp.{gate,up,down}_proj.weight,
/// model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight;
/// `self_attn.*_proj.bias` too when the file has attention biases) and shape, q/k unpermuted,
/// in Hugging Face module order. Calls `progress(done, total)` after each tensor read
/// (`done` = 1..=`total`, `total` = the number returned).
///
/// Every tensor's shape is checked against the metadata first, and any tensor name that is
/// not one of the above is an error naming it. `rope_freqs.weight` is an error too
/// ([`GgufImportError::RopeFreqs`]): it holds the per-frequency RoPE factors that llama.cpp
/// derives from the Hugging Face `rope_scaling` (Llama 3.1 style models), which GGUF does not
/// record, so the imported model would compute a different RoPE. See [`import_llama_with`].
#[allow(clippy::type_complexity)]
pub fn import_llama<R: Read + Seek>(
    r: &mut R,
    progress: impl FnMut(usize, usize),
) -> Result<(LlamaConfig, Vec<(String, Vec<usize>, Vec<f32>)>), GgufImportError> {
    import_llama_with(r, false, progress)
}

/// [`import_llama`], with `allow_rope_freqs`: skip a `rope_freqs.weight` tensor instead of
/// refusing the file. The returned config then has `rope_scaling: None` and the caller must take
/// `rope_scaling` from the original config.json (what the user knowingly accepts with
/// `labor lm import-gguf --allow-rope-freqs`).
#[allow(clippy::type_complexity)]
pub fn import_llama_with<R: Read + Seek>(
    r: &mut R,
    allow_rope_freqs: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<(LlamaConfig, Vec<(String, Vec<usize>, Vec<f32>)>), GgufImportError> {
    let index = read_index(r)?;
    let config = llama_config(&index)?;
    let expected = llama_tensors(&config);
    let slot: HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| (e.0.as_str(), i))
        .collect();
    let mut found: Vec<Option<&TensorInfo>> = vec![None; expected.len()];
    let mut unknown = Vec::new();
    for t in &index.tensors {
        match slot.get(t.name.as_str()) {
            Some(&i) => found[i] = Some(t),
            None if t.name == ROPE_FREQS && allow_rope_freqs => {}
            None if t.name == ROPE_FREQS => return Err(GgufImportError::RopeFreqs),
            None => unknown.push(t.name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(GgufImportError::UnknownTensors(unknown));
    }
    for ((gguf, hf, shape, _), t) in expected.iter().zip(&found) {
        let t = t.ok_or_else(|| GgufImportError::MissingTensor {
            gguf: gguf.clone(),
            hf: hf.clone(),
        })?;
        if &t.shape != shape {
            return Err(GgufImportError::Shape {
                name: gguf.clone(),
                expected: shape.clone(),
                found: t.shape.clone(),
            });
        }
        if !t.ty.is_supported() {
            return Err(GgufImportError::Tensor {
                name: gguf.clone(),
                source: Box::new(GgufImportError::UnsupportedType { ty: t.ty }),
            });
        }
    }
    // Read in file order (sequential access), return in module order.
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by_key(|&i| found[i].map(|t| t.offset));
    let total = expected.len();
    let mut data: Vec<Option<Vec<f32>>> = vec![None; total];
    for (done, &i) in order.iter().enumerate() {
        let info = found[i].expect("checked above");
        let (_, _, shape, permute) = &expected[i];
        let w = read_tensor(r, &index, info)?;
        let cols = shape.get(1).copied().unwrap_or(1);
        data[i] = Some(match permute {
            Permute::None => w,
            Permute::Heads => unpermute_rows(&w, shape[0], cols, config.num_attention_heads),
            Permute::KvHeads => unpermute_rows(&w, shape[0], cols, config.kv_heads()),
        });
        progress(done + 1, total);
    }
    let tensors = expected
        .into_iter()
        .zip(data)
        .map(|((_, hf, shape, _), w)| (hf, shape, w.expect("every tensor was read")))
        .collect();
    Ok((config, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    // IEEE half-precision bit patterns, worked out by hand: sign | 5-bit exponent (bias 15) |
    // 10-bit mantissa.
    const H_0_125: u16 = 0x3000; // 2^-3
    const H_0_0625: u16 = 0x2C00; // 2^-4
    const H_0_03125: u16 = 0x2800; // 2^-5
    const H_0_25: u16 = 0x3400; // 2^-2
    const H_0_75: u16 = 0x3A00; // 1.5 * 2^-1
    const H_1_25: u16 = 0x3D00; // 1.25 * 2^0
    const H_NEG_0_375: u16 = 0xB600; // -1.5 * 2^-2
    const H_NEG_0_5: u16 = 0xB800; // -2^-1
    const H_NEG_2: u16 = 0xC000; // -2^1

    fn h(bits: u16) -> [u8; 2] {
        bits.to_le_bytes()
    }

    fn assert_same(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "element {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn f32_f16_bf16_elements() {
        let f32s = [1.5f32, -0.0, f32::MIN_POSITIVE, -123456.78];
        let bytes: Vec<u8> = f32s.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_same(&dequantize(GgmlType::F32, &bytes, 4).unwrap(), &f32s);

        // (half bits, value): 1, -2, 0x3555 = 2^-2 * (1 + 341/1024), the largest finite half,
        // the smallest subnormal 2^-24, the smallest normal 2^-14, -0 and +inf.
        let f16s: [(u16, f32); 8] = [
            (0x3C00, 1.0),
            (0xC000, -2.0),
            (0x3555, 0.25 * (1.0 + 341.0 / 1024.0)),
            (0x7BFF, 65504.0),
            (0x0001, 1.0 / 16_777_216.0),
            (0x0400, 1.0 / 16384.0),
            (0x8000, -0.0),
            (0x7C00, f32::INFINITY),
        ];
        let bytes: Vec<u8> = f16s.iter().flat_map(|(b, _)| h(*b)).collect();
        let want: Vec<f32> = f16s.iter().map(|(_, v)| *v).collect();
        assert_same(&dequantize(GgmlType::F16, &bytes, 8).unwrap(), &want);

        // bfloat16 is the top half of an f32: 0x3F80 = 1.0, 0xC040 = -3.0, 0x4049 = 3.140625,
        // 0x3E20 = 1.25 * 2^-3, 0xFF80 = -inf.
        let bf16s: [(u16, f32); 5] = [
            (0x3F80, 1.0),
            (0xC040, -3.0),
            (0x4049, 3.140625),
            (0x3E20, 0.15625),
            (0xFF80, f32::NEG_INFINITY),
        ];
        let bytes: Vec<u8> = bf16s.iter().flat_map(|(b, _)| b.to_le_bytes()).collect();
        let want: Vec<f32> = bf16s.iter().map(|(_, v)| *v).collect();
        assert_same(&dequantize(GgmlType::BF16, &bytes, 5).unwrap(), &want);
    }

    #[test]
    fn q8_0_block() {
        // d = -0.375; 32 signed quants including both extremes.
        let q: Vec<i8> = (0..32)
            .map(|i| match i {
                0 => -128,
                1 => 127,
                _ => ((i * 37) % 255 - 127) as i8,
            })
            .collect();
        let mut b = h(H_NEG_0_375).to_vec();
        b.extend(q.iter().map(|&x| x as u8));
        let want: Vec<f32> = q.iter().map(|&x| -0.375 * x as f32).collect();
        assert_same(&dequantize(GgmlType::Q8_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_0_block() {
        // value = d * (q - 8); byte j holds q[j] (low nibble) and q[j + 16] (high nibble).
        let q: Vec<u8> = (0..32).map(|i| ((i * 5 + 3) % 16) as u8).collect();
        let mut b = h(H_0_75).to_vec();
        b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        let want: Vec<f32> = q.iter().map(|&x| 0.75 * (x as f32 - 8.0)).collect();
        assert_same(&dequantize(GgmlType::Q4_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_1_block() {
        // value = d * q + m with a negative d.
        let q: Vec<u8> = (0..32).map(|i| ((i * 7 + 1) % 16) as u8).collect();
        let mut b = h(H_NEG_0_5).to_vec();
        b.extend(h(H_1_25));
        b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        let want: Vec<f32> = q.iter().map(|&x| -0.5 * x as f32 + 1.25).collect();
        assert_same(&dequantize(GgmlType::Q4_1, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q5_0_block() {
        // 5-bit q: low 4 bits as in Q4_0, bit 4 of element i is bit i of the u32 qh.
        let q: Vec<u32> = (0..32).map(|i| (i * 11 + 5) % 32).collect();
        let qh: u32 = (0..32).map(|i| ((q[i] >> 4) & 1) << i).sum();
        assert!(
            qh & 0xFFFF != 0 && qh >> 16 != 0 && qh >> 31 == 1,
            "high bits in both halves"
        );
        let mut b = h(H_NEG_2).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16).map(|j| (q[j] & 15) as u8 | (((q[j + 16] & 15) as u8) << 4)));
        let want: Vec<f32> = q.iter().map(|&x| -2.0 * (x as f32 - 16.0)).collect();
        assert_same(&dequantize(GgmlType::Q5_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_k_super_block() {
        // Eight sub-blocks of 32: value = d * scale[s] * q - dmin * min[s], 6-bit scale and min.
        let scale: [u8; 8] = [1, 17, 63, 32, 5, 48, 33, 62];
        let min: [u8; 8] = [0, 63, 2, 40, 19, 7, 60, 35];
        // Packing: bytes 0..4 = scale[0..4] (6 bits) with bits 4..5 of scale[4..8] on top;
        // bytes 4..8 = min[0..4] with bits 4..5 of min[4..8] on top; bytes 8..12 = low 4 bits
        // of scale[4..8] (low nibble) and of min[4..8] (high nibble).
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = scale[j] | ((scale[j + 4] >> 4) << 6);
            packed[j + 4] = min[j] | ((min[j + 4] >> 4) << 6);
            packed[j + 8] = (scale[j + 4] & 15) | ((min[j + 4] & 15) << 4);
        }
        assert!(
            packed[..8].iter().any(|&x| x >> 6 != 0),
            "high bits of scales 4..8 used"
        );
        let q: Vec<u8> = (0..256).map(|i| ((i * 13 + i / 7) % 16) as u8).collect();
        let mut b = h(H_0_125).to_vec();
        b.extend(h(H_0_0625));
        b.extend(packed);
        // Each 64-element chunk: byte l = element l (low nibble) and element 32 + l (high).
        for c in 0..4 {
            b.extend((0..32).map(|l| q[64 * c + l] | (q[64 * c + 32 + l] << 4)));
        }
        assert_eq!(b.len(), 144);
        let want: Vec<f32> = (0..256)
            .map(|i| 0.125 * scale[i / 32] as f32 * q[i] as f32 - 0.0625 * min[i / 32] as f32)
            .collect();
        assert_same(&dequantize(GgmlType::Q4_K, &b, 256).unwrap(), &want);
    }

    #[test]
    fn q6_k_super_block() {
        // value = d * scale[i / 16] * (q - 32), signed 8-bit scales, 6-bit q.
        let scale: [i8; 16] = [
            -128, -37, -1, 0, 1, 5, 127, -64, 12, -12, 100, -100, 3, -3, 77, -77,
        ];
        let q: Vec<u8> = (0..256).map(|i| ((i * 29 + i / 5) % 64) as u8).collect();
        // Per half n (128 elements) and l in 0..32: ql[64n + l] = low nibbles of elements
        // 128n + l (low) and 128n + 64 + l (high); ql[64n + 32 + l] likewise for elements
        // 128n + 32 + l and 128n + 96 + l; qh[32n + l] = top 2 bits of elements 128n + l,
        // + 32 + l, + 64 + l, + 96 + l at bits 0, 2, 4, 6.
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for n in 0..2 {
            let e = |k: usize, l: usize| q[128 * n + 32 * k + l];
            for l in 0..32 {
                ql[64 * n + l] = (e(0, l) & 15) | ((e(2, l) & 15) << 4);
                ql[64 * n + 32 + l] = (e(1, l) & 15) | ((e(3, l) & 15) << 4);
                qh[32 * n + l] = (e(0, l) >> 4)
                    | ((e(1, l) >> 4) << 2)
                    | ((e(2, l) >> 4) << 4)
                    | ((e(3, l) >> 4) << 6);
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(scale.iter().map(|&s| s as u8));
        b.extend(h(H_0_03125));
        assert_eq!(b.len(), 210);
        let want: Vec<f32> = (0..256)
            .map(|i| 0.03125 * scale[i / 16] as f32 * (q[i] as f32 - 32.0))
            .collect();
        assert_same(&dequantize(GgmlType::Q6_K, &b, 256).unwrap(), &want);
    }

    #[test]
    fn dequantize_checks_sizes_and_types() {
        let e = dequantize(GgmlType::Q4_0, &[0; 17], 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("18 bytes") && e.contains("found 17"), "{e}");
        let e = dequantize(GgmlType::Q8_0, &[0; 34], 33)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocks of 32") && e.contains("33"), "{e}");
        let e = dequantize(GgmlType::from_id(16), &[0; 66], 256)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IQ2_XXS (ggml type 16)"), "{e}");
        let e = dequantize(GgmlType::from_id(99), &[], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ggml type 99 (unknown)"), "{e}");
        for id in [0, 1, 2, 3, 6, 8, 12, 14, 30] {
            let ty = GgmlType::from_id(id);
            assert!(ty.is_supported() && ty.id() == id && ty.name().is_some());
        }
        assert_eq!(GgmlType::Q4_K.byte_size(512), Some(288));
    }

    /// The permutation convert_hf_to_gguf.py applies: view the rows as
    /// `(n_head, 2, rows / n_head / 2)`, swap the last two axes, flatten.
    fn permute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for hd in 0..n_head {
            for i in 0..half {
                for t in 0..2 {
                    let src = (hd * 2 + t) * half + i;
                    out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_conversion_permutation() {
        // One head of 4 rows: HF rows [a, b, c, d] are stored as [a, c, b, d].
        assert_eq!(permute_rows(&[0., 1., 2., 3.], 4, 1, 1), [0., 2., 1., 3.]);
        assert_eq!(unpermute_rows(&[0., 2., 1., 3.], 4, 1, 1), [0., 1., 2., 3.]);
        for (rows, cols, heads) in [(12, 2, 3), (24, 5, 2), (64, 3, 1), (16, 1, 4)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let p = permute_rows(&w, rows, cols, heads);
            assert_ne!(p, w);
            assert_eq!(unpermute_rows(&p, rows, cols, heads), w);
        }
    }

    /// A GGUF v3 file assembled byte by byte.
    #[derive(Default)]
    struct Builder {
        kv: Vec<u8>,
        n_kv: u64,
        tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    fn gguf_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    impl Builder {
        fn key(&mut self, k: &str, ty: u32) -> &mut Vec<u8> {
            self.n_kv += 1;
            gguf_str(&mut self.kv, k);
            self.kv.extend(ty.to_le_bytes());
            &mut self.kv
        }
        fn str(&mut self, k: &str, v: &str) {
            gguf_str(self.key(k, 8), v);
        }
        fn u32(&mut self, k: &str, v: u32) {
            self.key(k, 4).extend(v.to_le_bytes());
        }
        fn f32(&mut self, k: &str, v: f32) {
            self.key(k, 6).extend(v.to_le_bytes());
        }
        fn strs(&mut self, k: &str, v: &[&str]) {
            let b = self.key(k, 9);
            b.extend(8u32.to_le_bytes());
            b.extend((v.len() as u64).to_le_bytes());
            for s in v {
                gguf_str(b, s);
            }
        }
        fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, data: Vec<u8>) {
            self.tensors.push((name.into(), ne.to_vec(), ty, data));
        }
        /// The file and the position of its data section.
        fn build(&self, alignment: u64) -> (Vec<u8>, u64) {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend((self.tensors.len() as u64).to_le_bytes());
            b.extend(self.n_kv.to_le_bytes());
            b.extend(&self.kv);
            let mut offset = 0u64;
            let mut offsets = Vec::new();
            for (name, ne, ty, data) in &self.tensors {
                offset = offset.div_ceil(alignment) * alignment;
                offsets.push(offset);
                gguf_str(&mut b, name);
                b.extend((ne.len() as u32).to_le_bytes());
                ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
                b.extend(ty.to_le_bytes());
                b.extend(offset.to_le_bytes());
                offset += data.len() as u64;
            }
            let data_start = (b.len() as u64).div_ceil(alignment) * alignment;
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                b.resize((data_start + off) as usize, 0);
                b.extend(data);
            }
            (b, data_start)
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Multiples of 1/16 in [-1.875, 1.875]: exact in f16 and in Q8_0 with d = 1/16.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * seed + 7) % 61) as f32 / 16.0 - 1.875)
            .collect()
    }

    const D: usize = 32;
    const F: usize = 64;
    const V: usize = 10;
    const HEADS: usize = 2;
    const KV_HEADS: usize = 1;
    const HD: usize = D / HEADS;

    struct Tiny {
        builder: Builder,
        q: Vec<f32>,
        k: Vec<f32>,
        down: Vec<f32>,
        embed: Vec<f32>,
    }

    /// One-layer llama: d = 32, 2 heads and 1 kv head of 16, ffn 64, 10 tokens, tied
    /// embeddings; q in Q8_0, k in Q4_0, ffn_down in F16, the rest F32.
    fn tiny(alignment: Option<u32>) -> Tiny {
        let mut g = Builder::default();
        g.str("general.architecture", "llama");
        if let Some(a) = alignment {
            g.u32("general.alignment", a);
        }
        g.u32("llama.block_count", 1);
        g.u32("llama.context_length", 128);
        g.u32("llama.embedding_length", D as u32);
        g.u32("llama.feed_forward_length", F as u32);
        g.u32("llama.attention.head_count", HEADS as u32);
        g.u32("llama.attention.head_count_kv", KV_HEADS as u32);
        g.f32("llama.rope.freq_base", 10000.0);
        g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
        g.u32("llama.rope.dimension_count", HD as u32);
        let tokens: Vec<String> = (0..V).map(|i| format!("t{i}")).collect();
        g.strs(
            "tokenizer.ggml.tokens",
            &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        g.u32("tokenizer.ggml.bos_token_id", 1);
        g.u32("tokenizer.ggml.eos_token_id", 2);

        let embed = values(V * D, 3);
        let q = values(D * D, 5);
        // Q4_0 with d = 1/4 holds (q - 8) / 4 for q in 0..16.
        let k: Vec<f32> = (0..KV_HEADS * HD * D)
            .map(|i| ((i * 7) % 16) as f32 / 4.0 - 2.0)
            .collect();
        let down = values(D * F, 11);

        let q_stored = permute_rows(&q, D, D, HEADS);
        let mut q8 = Vec::new();
        for block in q_stored.chunks(32) {
            q8.extend(h(H_0_0625));
            q8.extend(block.iter().map(|&x| (x * 16.0) as i8 as u8));
        }
        let k_stored = permute_rows(&k, KV_HEADS * HD, D, KV_HEADS);
        let mut q4 = Vec::new();
        for block in k_stored.chunks(32) {
            let qv: Vec<u8> = block.iter().map(|&x| (x * 4.0 + 8.0) as u8).collect();
            q4.extend(h(H_0_25));
            q4.extend((0..16).map(|j| qv[j] | (qv[j + 16] << 4)));
        }
        let f16: Vec<u8> = down
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let (d, f) = (D as u64, F as u64);
        g.tensor("token_embd.weight", &[d, V as u64], 0, f32_bytes(&embed));
        g.tensor("blk.0.attn_norm.weight", &[d], 0, f32_bytes(&values(D, 1)));
        g.tensor("blk.0.attn_q.weight", &[d, d], 8, q8);
        g.tensor(
            "blk.0.attn_k.weight",
            &[d, KV_HEADS as u64 * HD as u64],
            2,
            q4,
        );
        g.tensor(
            "blk.0.attn_v.weight",
            &[d, 16],
            0,
            f32_bytes(&values(16 * D, 13)),
        );
        g.tensor(
            "blk.0.attn_output.weight",
            &[d, d],
            0,
            f32_bytes(&values(D * D, 17)),
        );
        g.tensor(
            "blk.0.ffn_gate.weight",
            &[d, f],
            0,
            f32_bytes(&values(F * D, 19)),
        );
        g.tensor(
            "blk.0.ffn_up.weight",
            &[d, f],
            0,
            f32_bytes(&values(F * D, 23)),
        );
        g.tensor("blk.0.ffn_down.weight", &[f, d], 1, f16);
        g.tensor("blk.0.ffn_norm.weight", &[d], 0, f32_bytes(&values(D, 29)));
        g.tensor("output_norm.weight", &[d], 0, f32_bytes(&values(D, 31)));
        Tiny {
            builder: g,
            q,
            k,
            down,
            embed,
        }
    }

    #[test]
    fn reads_the_index_of_a_hand_built_gguf() {
        for alignment in [None, Some(64), Some(128)] {
            let t = tiny(alignment);
            let (bytes, data_start) = t.builder.build(alignment.map_or(32, u64::from));
            let index = read_index(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(index.data_start, data_start);
            assert_eq!(index.data_start % u64::from(alignment.unwrap_or(32)), 0);
            assert_eq!(index.tensors.len(), 11);
            let q = index.tensor("blk.0.attn_q.weight").unwrap();
            assert_eq!((q.shape.as_slice(), q.ty), (&[D, D][..], GgmlType::Q8_0));
            let k = index.tensor("blk.0.attn_k.weight").unwrap();
            assert_eq!((k.shape.as_slice(), k.ty), (&[HD, D][..], GgmlType::Q4_0));
            let down = index.tensor("blk.0.ffn_down.weight").unwrap();
            assert_eq!(
                (down.shape.as_slice(), down.ty),
                (&[D, F][..], GgmlType::F16)
            );
            assert_eq!(index.tensor("token_embd.weight").unwrap().shape, [V, D]);
            assert_eq!(index.tensor("token_embd.weight").unwrap().offset, 0);
            let mut r = Cursor::new(&bytes);
            let embed = read_tensor(&mut r, &index, index.tensor("token_embd.weight").unwrap());
            assert_eq!(embed.unwrap(), t.embed);
            let down = read_tensor(&mut r, &index, down).unwrap();
            assert_eq!(down, t.down);
        }
    }

    #[test]
    fn config_from_hand_built_metadata() {
        let (bytes, _) = tiny(None).builder.build(32);
        let c = llama_config(&read_index(&mut Cursor::new(&bytes)).unwrap()).unwrap();
        assert_eq!(
            (
                c.vocab_size,
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers
            ),
            (V, D, F, 1)
        );
        assert_eq!(
            (c.num_attention_heads, c.kv_heads(), c.head_dim),
            (HEADS, KV_HEADS, None)
        );
        assert_eq!(c.max_position_embeddings, 128);
        // f32 metadata comes back as the decimal that was written.
        assert_eq!(c.rms_norm_eps, 1e-5);
        assert_eq!(c.rope_theta, 10000.0);
        assert!(c.tie_word_embeddings && !c.attention_bias);
        assert_eq!(c.bos_token_id, Some(serde_json::json!(1)));
        assert_eq!(c.eos_token_id, Some(serde_json::json!(2)));
    }

    #[test]
    fn imports_a_hand_built_gguf() {
        let t = tiny(Some(64));
        let (bytes, _) = t.builder.build(64);
        let mut calls = Vec::new();
        let (c, tensors) =
            import_llama(&mut Cursor::new(&bytes), |i, n| calls.push((i, n))).unwrap();
        assert!(c.tie_word_embeddings);
        let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.v_proj.weight",
                "model.layers.0.self_attn.o_proj.weight",
                "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.down_proj.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.post_attention_layernorm.weight",
                "model.norm.weight",
            ]
        );
        assert_eq!(calls, (1..=11).map(|i| (i, 11)).collect::<Vec<_>>());
        let get = |n: &str| tensors.iter().find(|t| t.0 == n).unwrap();
        let q = get("model.layers.0.self_attn.q_proj.weight");
        assert_eq!((q.1.as_slice(), &q.2), (&[D, D][..], &t.q));
        let k = get("model.layers.0.self_attn.k_proj.weight");
        assert_eq!((k.1.as_slice(), &k.2), (&[HD, D][..], &t.k));
        let down = get("model.layers.0.mlp.down_proj.weight");
        assert_eq!((down.1.as_slice(), &down.2), (&[D, F][..], &t.down));
        assert_eq!(get("model.embed_tokens.weight").2, t.embed);
        for (name, shape, w) in &tensors {
            assert_eq!(shape.iter().product::<usize>(), w.len(), "{name}");
        }
    }

    #[test]
    fn import_errors_name_what_is_wrong() {
        let mut t = tiny(None);
        t.builder
            .tensor("blk.0.attn_mystery.weight", &[4], 0, f32_bytes(&[0.0; 4]));
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("blk.0.attn_mystery.weight"), "{e}");

        // Llama 3.1 RoPE factors: refused (the rope_scaling they come from is not in the file)
        // unless the caller knowingly allows them.
        let mut t = tiny(None);
        t.builder
            .tensor("rope_freqs.weight", &[4], 0, f32_bytes(&[1.0; 4]));
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(matches!(e, GgufImportError::RopeFreqs), "{e}");
        assert!(e.to_string().contains("--allow-rope-freqs"), "{e}");
        let (c, tensors) = import_llama_with(&mut Cursor::new(&bytes), true, |_, _| {}).unwrap();
        assert!(c.rope_scaling.is_none());
        assert!(tensors.iter().all(|t| t.0 != "rope_freqs.weight"));

        let mut t = tiny(None);
        t.builder.tensors.retain(|t| t.0 != "blk.0.ffn_up.weight");
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("blk.0.ffn_up.weight"), "{e}");

        let mut t = tiny(None);
        t.builder.kv.clear();
        t.builder.n_kv = 0;
        t.builder.str("general.architecture", "gpt2");
        let (bytes, _) = t.builder.build(32);
        let index = read_index(&mut Cursor::new(&bytes)).unwrap();
        let e = llama_config(&index).unwrap_err().to_string();
        assert!(e.contains("\"gpt2\""), "{e}");

        // Cut into the last tensor's data.
        let (mut bytes, _) = tiny(None).builder.build(32);
        let n = bytes.len();
        bytes.truncate(n - 10);
        let e = read_index(&mut Cursor::new(&bytes))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("truncated") && e.contains("output_norm.weight"),
            "{e}"
        );
        // Cut into the tensor infos.
        bytes.truncate(bytes.len() / 2);
        let e = read_index(&mut Cursor::new(&bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");

        // A shape that disagrees with the metadata (11 embedding rows for 10 tokens).
        let mut t = tiny(None);
        t.builder.tensors[0] = (
            "token_embd.weight".into(),
            vec![D as u64, V as u64 + 1],
            0,
            f32_bytes(&values((V + 1) * D, 3)),
        );
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token_embd.weight") && e.contains("[11, 32]"),
            "{e}"
        );

        // A type id ggml does not know: listed in the index, reading it names tensor and id.
        let mut t = tiny(None);
        t.builder.tensors[2].2 = 99;
        let (bytes, _) = t.builder.build(32);
        let index = read_index(&mut Cursor::new(&bytes)).unwrap();
        let q = index.tensor("blk.0.attn_q.weight").unwrap();
        let e = read_tensor(&mut Cursor::new(&bytes), &index, q)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("blk.0.attn_q.weight") && e.contains("ggml type 99"),
            "{e}"
        );
    }

    /// Imports SmolLM2-135M-Instruct (Q4_1 GGUF) from the path in LABOR_SMOLLM2_GGUF.
    #[test]
    #[ignore = "needs the SmolLM2-135M GGUF file; set LABOR_SMOLLM2_GGUF"]
    fn imports_smollm2_gguf() {
        let Ok(path) = std::env::var("LABOR_SMOLLM2_GGUF") else {
            eprintln!("skipping: LABOR_SMOLLM2_GGUF is not set");
            return;
        };
        let mut f = std::fs::File::open(&path).expect("open LABOR_SMOLLM2_GGUF");
        let start = std::time::Instant::now();
        let (c, tensors) = import_llama(&mut f, |_, _| {}).unwrap();
        eprintln!(
            "imported {} tensors in {:.2?}",
            tensors.len(),
            start.elapsed()
        );
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.intermediate_size),
            (49152, 576, 1536)
        );
        assert_eq!(
            (c.num_hidden_layers, c.num_attention_heads, c.kv_heads()),
            (30, 9, 3)
        );
        assert_eq!((c.rope_theta, c.rms_norm_eps), (100_000.0, 1e-5));
        assert_eq!(c.max_position_embeddings, 8192);
        assert!(c.tie_word_embeddings);
        assert_eq!(tensors.len(), 30 * 9 + 2);
        let n: usize = tensors.iter().map(|t| t.2.len()).sum();
        assert_eq!(n, c.n_params());
        assert_eq!(n, 134_515_008);
        let shape = |name: &str| &tensors.iter().find(|t| t.0 == name).unwrap().1;
        assert_eq!(shape("model.embed_tokens.weight"), &[49152, 576]);
        assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), &[576, 576]);
        assert_eq!(
            shape("model.layers.29.self_attn.k_proj.weight"),
            &[192, 576]
        );
        assert_eq!(shape("model.layers.7.mlp.down_proj.weight"), &[576, 1536]);
        for (name, shape, w) in &tensors {
            assert_eq!(shape.iter().product::<usize>(), w.len(), "{name}");
            assert!(
                w.iter().all(|x| x.is_finite()),
                "{name} has non-finite values"
            );
        }
    }
}
