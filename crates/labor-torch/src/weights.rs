//! Weights in Hugging Face safetensors form: name-for-name copies between a [`VarStore`] and
//! safetensors buffers (single file or shards). The caller reads and writes the files.

use std::collections::{BTreeMap, HashMap};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use tch::{Kind, Tensor, nn::VarStore};

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: not a safetensors file: {what}")]
    Format { file: String, what: String },
    #[error("{file}: tensor `{name}` has dtype {dtype:?}, expected F32, F16, BF16 or F64")]
    Dtype {
        file: String,
        name: String,
        dtype: Dtype,
    },
    #[error("{file}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        file: String,
        name: String,
        found: Vec<usize>,
        expected: Vec<i64>,
    },
    #[error("the weights lack {} tensor(s) the model needs: {}", .0.len(), .0.join(", "))]
    Missing(Vec<String>),
    #[error("the weights hold {} tensor(s) this model does not have: {}", .0.len(), .0.join(", "))]
    Unexpected(Vec<String>),
    #[error("{0}")]
    Other(String),
}

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(k: Kind) -> Result<Dtype, WeightError> {
    Ok(match k {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        k => {
            return Err(WeightError::Other(format!(
                "cannot save tensors of kind {k:?}"
            )));
        }
    })
}

/// Tensors that HF checkpoints may carry but that are derived, not learned.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// Copies every variable of `vs` from the named safetensors buffers (`(file name, bytes)`; one
/// entry per shard). Every variable must be found exactly once with its shape; tensors the model
/// does not have are an error, except derived ones (`rotary_emb.inv_freq`) and a `lm_head.weight`
/// when the model ties it to the embeddings. Values are converted to the variables' kind.
pub fn load_into(vs: &VarStore, files: &[(&str, &[u8])]) -> Result<(), WeightError> {
    let vars = vs.variables();
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut unexpected = Vec::new();
    for (file, bytes) in files {
        let st = SafeTensors::deserialize(bytes).map_err(|e| WeightError::Format {
            file: file.to_string(),
            what: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            let Some(var) = vars.get(&name) else {
                let tied_head = name == "lm_head.weight" && !vars.contains_key("lm_head.weight");
                if !ignorable(&name) && !tied_head {
                    unexpected.push(format!("{name} (in {file})"));
                }
                continue;
            };
            let expected = var.size();
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != expected {
                return Err(WeightError::Shape {
                    file: file.to_string(),
                    name,
                    found: view.shape().to_vec(),
                    expected,
                });
            }
            let kind = kind_of(view.dtype()).ok_or_else(|| WeightError::Dtype {
                file: file.to_string(),
                name: name.clone(),
                dtype: view.dtype(),
            })?;
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)
                .map_err(|e| WeightError::Other(format!("{file}: `{name}`: {e}")))?;
            tch::no_grad(|| {
                let mut v = var.shallow_clone();
                v.copy_(&t.to_kind(var.kind()).to_device(var.device()));
            });
            seen.insert(name, ());
        }
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(WeightError::Unexpected(unexpected));
    }
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(WeightError::Missing(missing));
    }
    Ok(())
}

/// Reads the `weight_map` of a `model.safetensors.index.json`: the distinct shard file names, in
/// order of first appearance.
pub fn shard_names(index_json: &str) -> Result<Vec<String>, WeightError> {
    let v: serde_json::Value = serde_json::from_str(index_json)
        .map_err(|e| WeightError::Other(format!("model.safetensors.index.json: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            WeightError::Other("model.safetensors.index.json: no `weight_map` object".to_string())
        })?;
    let mut out: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f.as_str().ok_or_else(|| {
            WeightError::Other(
                "model.safetensors.index.json: a weight_map value is not a string".into(),
            )
        })?;
        if !out.iter().any(|x| x == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// A file to write: name and contents.
pub type OutFile = (String, Vec<u8>);

fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    let n = t.numel();
    let mut buf = vec![0u8; n * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut buf, n);
    buf
}

/// Serializes named tensors as HF safetensors, converted to `kind`. Up to `max_shard_bytes` per
/// file: one `model.safetensors`, or `model-0000i-of-0000n.safetensors` shards plus
/// `model.safetensors.index.json`. `metadata` goes into every file's header (HF writes
/// `{"format": "pt"}`).
pub fn save(
    tensors: &BTreeMap<String, Tensor>,
    kind: Kind,
    max_shard_bytes: usize,
    metadata: &HashMap<String, String>,
) -> Result<Vec<OutFile>, WeightError> {
    let dtype = dtype_of(kind)?;
    type Entry = (String, Vec<usize>, Vec<u8>);
    let mut shards: Vec<Vec<Entry>> = vec![Vec::new()];
    let mut size = 0usize;
    let mut total = 0usize;
    for (name, t) in tensors {
        let bytes = tensor_bytes(&t.to_kind(kind));
        if size > 0 && size + bytes.len() > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes.len();
        total += bytes.len();
        let shape = t.size().iter().map(|&d| d as usize).collect();
        shards
            .last_mut()
            .expect("one shard")
            .push((name.clone(), shape, bytes));
    }
    let n = shards.len();
    let mut out = Vec::new();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        let views: Vec<(String, TensorView)> = shard
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| WeightError::Other(format!("`{name}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        for (name, _) in &views {
            weight_map.insert(name.clone(), file.clone());
        }
        let bytes = safetensors::serialize(views, Some(metadata.clone()))
            .map_err(|e| WeightError::Other(e.to_string()))?;
        out.push((file, bytes));
    }
    if n > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        out.push((
            "model.safetensors.index.json".to_string(),
            serde_json::to_vec_pretty(&index).expect("serializable"),
        ));
    }
    Ok(out)
}

/// The variables of a store by name (what [`save`] takes for a whole model).
pub fn named(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// Every tensor of a safetensors buffer, by name, as CPU tensors of their stored kind.
pub fn read_named(file: &str, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, WeightError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| WeightError::Format {
        file: file.to_string(),
        what: e.to_string(),
    })?;
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let kind = kind_of(v.dtype()).ok_or_else(|| WeightError::Dtype {
                file: file.to_string(),
                name: name.clone(),
                dtype: v.dtype(),
            })?;
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(v.data(), &shape, kind)
                .map_err(|e| WeightError::Other(format!("{file}: `{name}`: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

/// The `__metadata__` string map of a safetensors buffer (empty when it has none).
pub fn read_metadata(
    file: &str,
    bytes: &[u8],
) -> Result<std::collections::HashMap<String, String>, WeightError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| WeightError::Format {
        file: file.to_string(),
        what: e.to_string(),
    })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}
