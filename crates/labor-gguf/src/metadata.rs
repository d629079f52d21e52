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

fn value(r: &mut impl Read, t: u32) -> Result<Value, GgufError> {
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
            let it = u32le(r)?;
            let n = u64le(r)?;
            let mut v = Vec::with_capacity(n.min(1 << 20) as usize);
            for _ in 0..n {
                v.push(value(r, it)?);
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
        let v = value(&mut r, t)?;
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
