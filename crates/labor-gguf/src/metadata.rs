//! The header and key/value metadata of a GGUF (v2/v3) stream, read without touching the
//! tensor infos or data.

use std::collections::BTreeMap;
use std::io::Read;

use crate::GgufError;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            Value::I64(v) if *v >= 0 => Some(*v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::U64(v) => i64::try_from(*v).ok(),
            Value::I64(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub version: u32,
    pub tensor_count: u64,
    pub kv: BTreeMap<String, Value>,
}

fn read_n<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}
fn u32le(r: &mut impl Read) -> std::io::Result<u32> {
    Ok(u32::from_le_bytes(read_n(r)?))
}
fn u64le(r: &mut impl Read) -> std::io::Result<u64> {
    Ok(u64::from_le_bytes(read_n(r)?))
}
fn string(r: &mut impl Read) -> Result<String, GgufError> {
    let n = u64le(r)?;
    if n > 1 << 30 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("string of {n} bytes"),
        )
        .into());
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// How deep arrays of arrays may nest in a metadata value. GGUF writers (llama.cpp, gguf-py)
/// produce at most one level of nesting; the limit keeps a hostile file from exhausting the stack.
pub const MAX_NESTING: usize = 64;

/// Reads one metadata value of type `t` for `key`, at array nesting `depth` (0: the value itself).
fn value(r: &mut impl Read, t: u32, key: &str, depth: usize) -> Result<Value, GgufError> {
    Ok(match t {
        0 => Value::U64(read_n::<1>(r)?[0] as u64),
        1 => Value::I64(read_n::<1>(r)?[0] as i8 as i64),
        2 => Value::U64(u16::from_le_bytes(read_n(r)?) as u64),
        3 => Value::I64(i16::from_le_bytes(read_n(r)?) as i64),
        4 => Value::U64(u32le(r)? as u64),
        5 => Value::I64(i32::from_le_bytes(read_n(r)?) as i64),
        6 => Value::F64(f32::from_le_bytes(read_n(r)?) as f64),
        7 => Value::Bool(read_n::<1>(r)?[0] != 0),
        8 => Value::Str(string(r)?),
        9 => {
            if depth >= MAX_NESTING {
                return Err(GgufError::Key {
                    key: key.into(),
                    what: format!(
                        "arrays nested more than {MAX_NESTING} deep (an array at depth {})",
                        depth + 1
                    ),
                });
            }
            let it = u32le(r)?;
            let n = u64le(r)?;
            // Every element takes at least one byte of the stream, so a declared count beyond
            // the file ends at its end; only the first allocation trusts the count, and little.
            let mut v = Vec::with_capacity(n.min(1 << 12) as usize);
            for _ in 0..n {
                v.push(value(r, it, key, depth + 1)?);
            }
            Value::Array(v)
        }
        10 => Value::U64(u64le(r)?),
        11 => Value::I64(i64::from_le_bytes(read_n(r)?)),
        12 => Value::F64(f64::from_le_bytes(read_n(r)?)),
        other => return Err(GgufError::Type(other)),
    })
}

/// Reads the header and metadata of a GGUF stream (stops before the tensor infos).
pub fn read_metadata(mut r: impl Read) -> Result<Metadata, GgufError> {
    let magic: [u8; 4] = read_n(&mut r)?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic(magic));
    }
    let version = u32le(&mut r)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let tensor_count = u64le(&mut r)?;
    let n = u64le(&mut r)?;
    let mut kv = BTreeMap::new();
    for _ in 0..n {
        let k = string(&mut r)?;
        let t = u32le(&mut r)?;
        let v = value(&mut r, t, &k, 0)?;
        kv.insert(k, v);
    }
    Ok(Metadata {
        version,
        tensor_count,
        kv,
    })
}

impl Metadata {
    /// The value of `key`; a missing key is an error naming it.
    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.kv.get(key).ok_or_else(|| GgufError::Key {
            key: key.into(),
            what: "missing".into(),
        })
    }
    /// The array of strings at `key`.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let bad = || GgufError::Key {
            key: key.into(),
            what: "expected an array of strings".into(),
        };
        self.get(key)?
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|v| v.as_str().ok_or_else(bad))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header whose one metadata value (key `deep`) is an array of arrays nested `depth`
    /// deep, the innermost an empty array of u32.
    fn deep_gguf(depth: usize) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata pairs
        b.extend(4u64.to_le_bytes());
        b.extend(b"deep");
        b.extend(9u32.to_le_bytes()); // the value: an array
        for _ in 1..depth {
            b.extend(9u32.to_le_bytes()); // of arrays
            b.extend(1u64.to_le_bytes()); // of one element
        }
        b.extend(4u32.to_le_bytes()); // the innermost: u32 elements
        b.extend(0u64.to_le_bytes()); // none
        b
    }

    fn depth_of(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.first().map_or(0, depth_of),
            _ => 0,
        }
    }

    #[test]
    fn nesting_up_to_the_limit_reads_and_beyond_it_is_refused_naming_key_and_depth() {
        let m = read_metadata(&deep_gguf(MAX_NESTING)[..]).unwrap();
        assert_eq!(depth_of(m.get("deep").unwrap()), MAX_NESTING);
        for depth in [MAX_NESTING + 1, 200_000] {
            let e = read_metadata(&deep_gguf(depth)[..]).unwrap_err();
            let msg = e.to_string();
            assert!(e.is_bad_input());
            assert!(msg.contains("key deep"), "{msg}");
            assert!(
                msg.contains(&format!("nested more than {MAX_NESTING} deep")),
                "{msg}"
            );
            assert!(msg.contains(&format!("depth {}", MAX_NESTING + 1)), "{msg}");
        }
    }

    #[test]
    fn a_declared_count_beyond_the_file_ends_at_its_end() {
        let mut b = deep_gguf(1);
        let n = b.len() - 8;
        b[n..].copy_from_slice(&u64::MAX.to_le_bytes()); // u32 elements: u64::MAX of them
        let e = read_metadata(&b[..]).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }
}
