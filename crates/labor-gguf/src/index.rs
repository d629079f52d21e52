//! The tensor index of a GGUF stream (one info record per tensor: name, dimensions, ggml type,
//! offset; then, at the next multiple of `general.alignment`, 32 by default, the data section),
//! the ggml element types, and reading one tensor as `f32`.

use std::fmt;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};

use std::collections::HashSet;

use crate::error::io_err;
use crate::{GgufError, Metadata, dequantize, read_metadata};

/// The tensor element types this crate can dequantize, and any other ggml type id.
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
    pub fn describe(self) -> String {
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
) -> Result<(String, Vec<u64>, u32, u64), GgufError> {
    let bad = |name: &str, what: String| GgufError::BadTensorInfo {
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

fn eof_to_truncated(e: GgufError, what: &str, file_len: u64) -> GgufError {
    match e {
        GgufError::Io { source, .. } if source.kind() == ErrorKind::UnexpectedEof => {
            GgufError::Truncated {
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
pub fn read_index<R: Read + Seek>(r: &mut R) -> Result<GgufIndex, GgufError> {
    let file_len = r
        .seek(SeekFrom::End(0))
        .map_err(io_err("the stream length"))?;
    r.seek(SeekFrom::Start(0)).map_err(io_err("the header"))?;
    let mut br = BufReader::with_capacity(1 << 16, &mut *r);
    let metadata = read_metadata(&mut br).map_err(|e| match e {
        GgufError::Io { source, .. } if source.kind() == ErrorKind::UnexpectedEof => {
            GgufError::Truncated {
                what: "the header and metadata run past the end".into(),
                file_len,
            }
        }
        e => e,
    })?;
    let alignment = match metadata.kv.get("general.alignment") {
        None => 32,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| GgufError::Key {
                key: "general.alignment".into(),
                what: format!("{v:?} is not a power of two"),
            })?,
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
        let bad = |what: String| GgufError::BadTensorInfo {
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
            return Err(GgufError::Truncated {
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
) -> Result<Vec<f32>, GgufError> {
    let in_tensor = |e| GgufError::Tensor {
        name: info.name.clone(),
        source: Box::new(e),
    };
    let n = info.n_elements();
    if !info.ty.is_supported() {
        return Err(in_tensor(GgufError::UnsupportedType { ty: info.ty }));
    }
    let Some(size) = info.byte_size() else {
        let block = info.ty.block_layout().map_or(1, |l| l.0);
        return Err(in_tensor(GgufError::BlockMultiple {
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
            return Err(GgufError::Truncated {
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
