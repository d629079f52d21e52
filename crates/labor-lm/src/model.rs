//! The Llama-family decoder (Llama 2/3, SmolLM2, Qwen2-style q/k/v biases) in tch.
//!
//! Variables live in a [`nn::VarStore`] under their Hugging Face names (`model.layers.0.self_attn.
//! q_proj.weight`, …), so loading and saving safetensors is a name-for-name copy. Attention uses
//! `scaled_dot_product_attention` with either a causal flag or an explicit boolean mask (`true` =
//! may attend), which is how the trie scorer attends to a shared context plus a node's ancestors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use crate::config::LlamaConfig;

/// A linear map `y = x Wᵀ (+ b)` with HF's `[out, in]` weight layout.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// A LoRA adapter: `y += scale · B A dropout(x)`.
    pub lora: Option<Lora>,
    /// A bf16 copy of `weight` (and `bias`) for bf16 compute without a cast per call; see
    /// [`Llama::cache_bf16_weights`].
    bf16_copy: Option<(Tensor, Option<Tensor>)>,
    mode: Arc<Mode>,
}

/// A low-rank adapter of one linear map (PEFT's LoRA): `a` is `[r, in]`, `b` is `[out, r]`.
#[derive(Debug)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
}

/// Switches shared by every layer of one model: training (LoRA dropout on) and bf16 compute
/// (mixed precision: f32 weights and residual stream, matrix products and attention in bf16, the
/// equivalent of CUDA autocast for this architecture).
#[derive(Debug, Default)]
pub struct Mode {
    training: AtomicBool,
    bf16: AtomicBool,
    /// Residual dropout probability while training (f64 bits); 0 by default.
    dropout: std::sync::atomic::AtomicU64,
}

/// LoRA settings (PEFT's `r`, `lora_alpha`, `lora_dropout`, `target_modules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Module names among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    pub targets: Vec<String>,
    /// The layers adapted (PEFT's `layers_to_transform`); `None`: every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
}

/// The linear maps LoRA can adapt.
pub const LORA_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl Linear {
    fn new(
        p: nn::Path,
        (d_in, d_out): (usize, usize),
        bias: bool,
        std: f64,
        trainable: bool,
        mode: &Arc<Mode>,
    ) -> Self {
        let weight = var(
            &p,
            "weight",
            &[d_out, d_in],
            nn::Init::Randn {
                mean: 0.,
                stdev: std,
            },
            trainable,
        );
        let bias = bias.then(|| var(&p, "bias", &[d_out], nn::Init::Const(0.), trainable));
        Self {
            weight,
            bias,
            lora: None,
            bf16_copy: None,
            mode: mode.clone(),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let bf16 = self.mode.bf16.load(Ordering::Relaxed) && self.weight.kind() != Kind::BFloat16;
        let cast = |t: &Tensor| {
            if bf16 {
                t.to_kind(Kind::BFloat16)
            } else {
                t.shallow_clone()
            }
        };
        let x = cast(x);
        let y = match (&self.bf16_copy, bf16) {
            (Some((w, b)), true) => x.linear(w, b.as_ref()),
            _ => x.linear(&cast(&self.weight), self.bias.as_ref().map(cast).as_ref()),
        };
        match &self.lora {
            None => y,
            Some(l) => {
                let train = self.mode.training.load(Ordering::Relaxed);
                let h = if l.dropout > 0.0 && train {
                    x.dropout(l.dropout, true)
                } else {
                    x.shallow_clone()
                };
                y + h
                    .linear::<Tensor>(&cast(&l.a), None)
                    .linear::<Tensor>(&cast(&l.b), None)
                    * l.scale
            }
        }
    }
}

fn var(p: &nn::Path, name: &str, dims: &[usize], init: nn::Init, trainable: bool) -> Tensor {
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    if trainable {
        p.var(name, &dims, init)
    } else {
        // Registered as a non-trainable variable: no optimizer built from the store sees it.
        let t = nn::f_init(init, &dims, p.device(), p.kind()).expect("initialise a variable");
        p.add(name, t, false)
    }
}

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: nn::Path, d: usize, eps: f64, trainable: bool) -> Self {
        Self {
            weight: var(&p, "weight", &[d], nn::Init::Const(1.), trainable),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x32 = x.to_kind(Kind::Float);
        let var = x32.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = (x32 * (var + self.eps).rsqrt()).to_kind(kind);
        &self.weight * normed
    }
}

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug)]
pub struct Layer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl Layer {
    /// The layer's linear maps with their module names, in [`LORA_MODULES`] order.
    fn linears(&self) -> [(&'static str, &Linear); 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("o_proj", &a.o_proj),
            ("gate_proj", &m.gate_proj),
            ("up_proj", &m.up_proj),
            ("down_proj", &m.down_proj),
        ]
    }
}

/// Keys and values of earlier positions, per layer: `[batch, kv_heads, positions, head_dim]`.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, |(k, _)| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same cache seen by `n` batch rows (a view, no copy; only valid for a batch-1 cache).
    pub fn expand(&self, n: i64) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    let mut s = k.size();
                    s[0] = n;
                    (k.expand(&s, false), v.expand(&s, false))
                })
                .collect(),
        }
    }

    /// The first `n` cached positions.
    pub fn truncate(&self, n: i64) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.narrow(2, 0, n), v.narrow(2, 0, n)))
                .collect(),
        }
    }
}

/// How the new positions may attend.
pub enum Mask<'a> {
    /// Causal among the new positions; every cached position visible.
    Causal,
    /// Explicit boolean mask `[batch or 1, 1, new, cached + new]`, `true` = may attend.
    Explicit(&'a Tensor),
    /// Tree attention for trie scoring: the new positions are the same N trie nodes for each of
    /// R rows, ordered by depth and grouped in `levels`. Row r's nodes see the first cached
    /// positions where `ctx_valid [R, Lc]` is true (the cache may have batch 1: it is broadcast,
    /// not copied), and a node at depth d sees itself and its d − 1 ancestors. Costs
    /// N·Lc + Σ depth scores per row and head instead of N·(Lc + N). The cache is not extended.
    Tree {
        ctx_valid: &'a Tensor,
        /// The number of true entries of each row of `ctx_valid` (a prefix), on the host.
        ctx_lens: &'a [i64],
        /// On CPU, attend to the context through fused flash attention (no score matrix).
        fused: bool,
        levels: &'a [TreeLevel],
    },
}

/// The trie nodes of one depth: rows `start..start + len` of the new positions, and for each of
/// them (row-major, `[len · depth]`) the indices of itself and its ancestors among the new
/// positions.
#[derive(Debug)]
pub struct TreeLevel {
    pub start: i64,
    pub len: i64,
    pub depth: i64,
    pub anc: Tensor,
}

/// RoPE inverse frequencies (HF's `_compute_default_rope_parameters` and the Llama-3 variant),
/// in f32 as Hugging Face computes them.
pub fn inv_freq(cfg: &LlamaConfig) -> Vec<f32> {
    let hd = cfg.head_dim();
    let base = cfg.rope_theta as f32;
    let mut f: Vec<f32> = (0..hd)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / hd as f32))
        .collect();
    if let Some(s) = &cfg.rope_scaling
        && s.rope_type == "llama3"
    {
        let factor = s.factor as f32;
        let (lo, hi) = (s.low_freq_factor as f32, s.high_freq_factor as f32);
        let old = s.original_max_position_embeddings as f32;
        let low_wavelen = old / lo;
        let high_wavelen = old / hi;
        for x in &mut f {
            let wavelen = 2.0 * std::f32::consts::PI / *x;
            let scaled = if wavelen > low_wavelen {
                *x / factor
            } else {
                *x
            };
            let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
            *x = if medium {
                let smooth = (old / wavelen - lo) / (hi - lo);
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            };
        }
    }
    f
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let x1 = x.narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(&[-x2, x1], 3)
}

impl Attention {
    fn new(p: nn::Path, cfg: &LlamaConfig, std: f64, trainable: bool, mode: &Arc<Mode>) -> Self {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        Self {
            q_proj: Linear::new(
                &p / "q_proj",
                (d, h * hd),
                cfg.qkv_bias(),
                std,
                trainable,
                mode,
            ),
            k_proj: Linear::new(
                &p / "k_proj",
                (d, kv * hd),
                cfg.qkv_bias(),
                std,
                trainable,
                mode,
            ),
            v_proj: Linear::new(
                &p / "v_proj",
                (d, kv * hd),
                cfg.qkv_bias(),
                std,
                trainable,
                mode,
            ),
            o_proj: Linear::new(
                &p / "o_proj",
                (h * hd, d),
                cfg.o_bias(),
                std,
                trainable,
                mode,
            ),
            heads: h as i64,
            kv_heads: kv as i64,
            head_dim: hd as i64,
        }
    }

    /// `x`: `[B, T, D]`; `cos`/`sin`: `[B, 1, T, head_dim]`. Appends this step's keys and values
    /// to `past` when given (and returns them in any case).
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: &Mask,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (b, t) = (x.size()[0], x.size()[1]);
        let shape = |n: i64| [b, t, n, self.head_dim];
        let q = self
            .q_proj
            .forward(x)
            .view(shape(self.heads))
            .transpose(1, 2);
        let k = self
            .k_proj
            .forward(x)
            .view(shape(self.kv_heads))
            .transpose(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .view(shape(self.kv_heads))
            .transpose(1, 2);
        // RoPE in f32 (cos and sin are f32), as transformers does under autocast.
        let rotate = |t: &Tensor| {
            let t32 = t.to_kind(Kind::Float);
            (&t32 * cos + rotate_half(&t32) * sin).to_kind(t.kind())
        };
        let (q, k) = (rotate(&q), rotate(&k));
        if let Mask::Tree {
            ctx_valid,
            ctx_lens,
            fused,
            levels,
        } = mask
        {
            let (pk, pv) = past.expect("tree attention needs the context's cache");
            let y = if *fused && q.device() == Device::Cpu {
                self.tree_attention_fused(&q, &k, &v, pk, pv, ctx_lens, levels)
            } else {
                self.tree_attention(&q, &k, &v, pk, pv, ctx_valid, levels)
            };
            let y = y
                .transpose(1, 2)
                .reshape([b, t, self.heads * self.head_dim]);
            return (self.o_proj.forward(&y), (k, v));
        }
        let (k, v) = match past {
            Some((pk, pv)) if pk.size()[2] > 0 => {
                (Tensor::cat(&[pk, &k], 2), Tensor::cat(&[pv, &v], 2))
            }
            _ => (k, v),
        };
        let rep = self.heads / self.kv_heads;
        let (kk, vv) = if rep > 1 {
            (
                k.repeat_interleave_self_int(rep, 1, None),
                v.repeat_interleave_self_int(rep, 1, None),
            )
        } else {
            (k.shallow_clone(), v.shallow_clone())
        };
        let cached = kk.size()[2] - t;
        let y = match mask {
            Mask::Causal if cached == 0 => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &kk, &vv, None, 0.0, true, None, false,
            ),
            Mask::Causal => {
                let m = causal_with_past(t, cached, x.device());
                Tensor::scaled_dot_product_attention(
                    &q,
                    &kk,
                    &vv,
                    Some(&m),
                    0.0,
                    false,
                    None,
                    false,
                )
            }
            Mask::Explicit(m) => Tensor::scaled_dot_product_attention(
                &q,
                &kk,
                &vv,
                Some(*m),
                0.0,
                false,
                None,
                false,
            ),
            Mask::Tree { .. } => unreachable!("handled above"),
        };
        let y = y
            .transpose(1, 2)
            .reshape([b, t, self.heads * self.head_dim]);
        (self.o_proj.forward(&y), (k, v))
    }
}

impl Attention {
    /// See [`Mask::Tree`]. `q`: `[R, H, N, hd]`; `k`, `v`: `[R, Hkv, N, hd]`; `pk`, `pv`:
    /// `[R or 1, Hkv, Lc, hd]`. Returns `[R, H, N, hd]`.
    #[allow(clippy::too_many_arguments)]
    fn tree_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pk: &Tensor,
        pv: &Tensor,
        ctx_valid: &Tensor,
        levels: &[TreeLevel],
    ) -> Tensor {
        let (r, hd) = (q.size()[0], self.head_dim);
        let (kvh, rep) = (self.kv_heads, self.heads / self.kv_heads);
        let lc = pk.size()[2];
        let kind = q.kind();
        let q = q * (1.0 / (hd as f64).sqrt());
        let pkt = pk.transpose(-1, -2);
        // 0 where the row's context reaches, -inf beyond: [R, 1, 1, 1, Lc].
        let bias = Tensor::zeros([r, lc], (Kind::Float, q.device()))
            .masked_fill(&ctx_valid.logical_not(), f64::NEG_INFINITY)
            .view([r, 1, 1, 1, lc]);
        let mut out = Vec::with_capacity(levels.len());
        for lv in levels {
            let (len, d) = (lv.len, lv.depth);
            let ql = q.narrow(2, lv.start, len);
            // Against the context: [R, Hkv, rep, len, Lc].
            let sa = ql
                .reshape([r, kvh, rep * len, hd])
                .matmul(&pkt)
                .reshape([r, kvh, rep, len, lc])
                .to_kind(Kind::Float)
                + &bias;
            // Against the node itself and its d − 1 ancestors: [R, Hkv, rep, len, d].
            let ka = k.index_select(2, &lv.anc).reshape([r, kvh, len, d, hd]);
            let va = v.index_select(2, &lv.anc).reshape([r, kvh, len, d, hd]);
            let qn = ql.reshape([r, kvh, rep, len, hd]).permute([0, 1, 3, 2, 4]);
            let sb = qn
                .matmul(&ka.transpose(-1, -2))
                .to_kind(Kind::Float)
                .permute([0, 1, 3, 2, 4]);
            let p = Tensor::cat(&[sa, sb], -1)
                .softmax(-1, Kind::Float)
                .to_kind(kind);
            let pa = p.narrow(-1, 0, lc).reshape([r, kvh, rep * len, lc]);
            let pb = p.narrow(-1, lc, d).permute([0, 1, 3, 2, 4]); // [R, Hkv, len, rep, d]
            let ya = pa.matmul(pv).reshape([r, kvh, rep, len, hd]);
            let yb = pb.matmul(&va).permute([0, 1, 3, 2, 4]);
            out.push((ya + yb).reshape([r, kvh * rep, len, hd]));
        }
        Tensor::cat(&out, 2)
    }
}

impl Attention {
    /// [`Self::tree_attention`] without any score matrix over the context: each row's nodes
    /// attend to that row's context through one fused attention call (libtorch's CPU flash
    /// attention, which also returns the log-sum-exp of the scores), the few scores against each
    /// node's ancestors are computed explicitly, and the two partial softmaxes are merged through
    /// their log-sum-exps. The same numbers up to rounding, with memory traffic linear in the
    /// context instead of nodes × context per layer (which dominated CPU scoring time).
    #[allow(clippy::too_many_arguments)]
    fn tree_attention_fused(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pk: &Tensor,
        pv: &Tensor,
        ctx_lens: &[i64],
        levels: &[TreeLevel],
    ) -> Tensor {
        let (r, hd) = (q.size()[0], self.head_dim);
        let (h, kvh, rep) = (self.heads, self.kv_heads, self.heads / self.kv_heads);
        let kind = q.kind();
        let scale = 1.0 / (hd as f64).sqrt();
        debug_assert_eq!(ctx_lens.len() as i64, r);
        // 1. Against the context, row by row (a batch-1 cache is shared by every row).
        let (mut oa, mut la) = (
            Vec::with_capacity(r as usize),
            Vec::with_capacity(r as usize),
        );
        for (i, &c) in ctx_lens.iter().enumerate() {
            let row = if pk.size()[0] == 1 { 0 } else { i as i64 };
            let heads = |t: &Tensor| {
                let t = t.get(row).narrow(1, 0, c);
                if rep > 1 {
                    t.repeat_interleave_self_int(rep, 0, None)
                } else {
                    t
                }
                .unsqueeze(0)
            };
            let (o, lse) = Tensor::internal_scaled_dot_product_flash_attention_for_cpu(
                &q.get(i as i64).unsqueeze(0),
                &heads(pk),
                &heads(pv),
                0.0,
                false,
                None::<Tensor>,
                scale,
            );
            oa.push(o);
            la.push(lse);
        }
        let oa = Tensor::cat(&oa, 0).to_kind(Kind::Float); // [R, H, N, hd]
        let la = Tensor::cat(&la, 0); // [R, H, N], f32
        // 2. Against each node itself and its d − 1 ancestors, level by level.
        let qs = q * scale;
        let (mut ob, mut lb) = (Vec::with_capacity(levels.len()), Vec::new());
        for lv in levels {
            let (len, d) = (lv.len, lv.depth);
            let qn = qs
                .narrow(2, lv.start, len)
                .reshape([r, kvh, rep, len, hd])
                .permute([0, 1, 3, 2, 4]); // [R, Hkv, len, rep, hd]
            let ka = k.index_select(2, &lv.anc).reshape([r, kvh, len, d, hd]);
            let va = v.index_select(2, &lv.anc).reshape([r, kvh, len, d, hd]);
            let sb = qn.matmul(&ka.transpose(-1, -2)).to_kind(Kind::Float); // [R, Hkv, len, rep, d]
            let lse = sb.logsumexp([-1i64].as_slice(), true);
            let pb = (sb - &lse).exp().to_kind(kind);
            let yb = pb.matmul(&va).to_kind(Kind::Float); // [R, Hkv, len, rep, hd]
            ob.push(yb.permute([0, 1, 3, 2, 4]).reshape([r, h, len, hd]));
            lb.push(
                lse.squeeze_dim(-1)
                    .permute([0, 1, 3, 2])
                    .reshape([r, h, len]),
            );
        }
        let ob = Tensor::cat(&ob, 2);
        let lb = Tensor::cat(&lb, 2);
        // 3. Merge the two partial softmaxes.
        let lse = la.logaddexp(&lb);
        let wa = (la - &lse).exp().unsqueeze(-1);
        let wb = (lb - &lse).exp().unsqueeze(-1);
        (oa * wa + ob * wb).to_kind(kind)
    }
}

/// `[1, 1, t, cached + t]` boolean: every cached position, causal among the new ones.
pub fn causal_with_past(t: i64, cached: i64, device: Device) -> Tensor {
    let new = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    let old = Tensor::ones([t, cached], (Kind::Bool, device));
    Tensor::cat(&[old, new], 1).view([1, 1, t, cached + t])
}

impl Mlp {
    fn new(p: nn::Path, cfg: &LlamaConfig, std: f64, trainable: bool, mode: &Arc<Mode>) -> Self {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            gate_proj: Linear::new(&p / "gate_proj", (d, f), false, std, trainable, mode),
            up_proj: Linear::new(&p / "up_proj", (d, f), false, std, trainable, mode),
            down_proj: Linear::new(&p / "down_proj", (f, d), false, std, trainable, mode),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj
            .forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}

/// The decoder with its language-model head.
#[derive(Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed_tokens: Tensor,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    pub lm_head: Option<Tensor>,
    /// bf16 copy of the head's weight, see [`Llama::cache_bf16_weights`].
    head_bf16: Option<Tensor>,
    /// Trainable rows of added label tokens beside frozen (or separately trained) base weights.
    pub label_rows: Option<LabelRows>,
    /// Bottom layers that nothing trains, run without autograd while training (see
    /// [`Llama::set_frozen_prefix`]); 0: none.
    frozen_prefix: usize,
    inv_freq: Tensor,
    mode: Arc<Mode>,
}

/// How the output rows of added label tokens start (see [`Llama::label_rows_init`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelInit {
    /// The row of the title's first token.
    #[default]
    FirstToken,
    /// The mean of the rows of all the title's tokens.
    TitleMean,
}

/// One added token per label, ids `first..first + K`: its input embedding and its own output
/// row (untied, whatever the base does), kept apart from the base matrices while training so
/// that only they (and LoRA adapters) are trainable; [`Llama::fold_label_rows`] writes them into
/// the matrices for inference.
#[derive(Debug)]
pub struct LabelRows {
    pub first: i64,
    /// `[K, D]`
    pub embed: Tensor,
    /// `[K, D]`
    pub head: Tensor,
}

/// The safetensors names of [`LabelRows`] (beside a LoRA adapter, in `label_tokens.safetensors`).
pub const LABEL_ROWS_EMBED: &str = "label_tokens.embed";
pub const LABEL_ROWS_HEAD: &str = "label_tokens.head";

/// A saved model's tensors with the label rows (named [`LABEL_ROWS_EMBED`], [`LABEL_ROWS_HEAD`],
/// ids from `first`) written into the embedding and an untied `lm_head.weight`, and the config
/// to match; unchanged without `first`.
pub fn fold_label_rows_named(
    mut named: std::collections::BTreeMap<String, Tensor>,
    cfg: &LlamaConfig,
    first: Option<i64>,
) -> Result<(std::collections::BTreeMap<String, Tensor>, LlamaConfig), String> {
    let mut cfg = cfg.clone();
    let Some(first) = first else {
        return Ok((named, cfg));
    };
    let mut take = |n: &str| named.remove(n).ok_or_else(|| format!("no tensor {n}"));
    let (embed, head) = (take(LABEL_ROWS_EMBED)?, take(LABEL_ROWS_HEAD)?);
    let base = take("model.embed_tokens.weight")?;
    let base_head = named
        .remove("lm_head.weight")
        .unwrap_or_else(|| base.shallow_clone());
    let (e, h) = tch::no_grad(|| {
        (
            with_rows(&base, first, &embed).detach(),
            with_rows(&base_head, first, &head).detach(),
        )
    });
    cfg.vocab_size = e.size()[0] as usize;
    cfg.tie_word_embeddings = false;
    named.insert("model.embed_tokens.weight".into(), e);
    named.insert("lm_head.weight".into(), h);
    Ok((named, cfg))
}

/// `base` `[V, D]` with rows `first..first + K` replaced by `rows` `[K, D]`, extended (rows of
/// zeros never happen: the block ends the matrix when it goes past `V`) to `max(V, first + K)`
/// rows. Differentiable in `rows`.
fn with_rows(base: &Tensor, first: i64, rows: &Tensor) -> Tensor {
    let v = base.size()[0];
    let k = rows.size()[0];
    let rows = rows.to_kind(base.kind());
    let mut parts = vec![base.narrow(0, 0, first.min(v)), rows];
    if first + k < v {
        parts.push(base.narrow(0, first + k, v - first - k));
    }
    Tensor::cat(&parts, 0)
}

impl Llama {
    /// Creates the variables under `root` (HF names), initialised as HF does for from-scratch
    /// models: normal(0, 0.02) matrices, unit norms, zero biases. With `trainable = false` no
    /// variable requires a gradient (base weights under LoRA).
    pub fn new(root: &nn::Path, cfg: &LlamaConfig, trainable: bool) -> Self {
        let std = 0.02;
        let mode = Arc::new(Mode::default());
        let m = root / "model";
        let embed_tokens = var(
            &(&m / "embed_tokens"),
            "weight",
            &[cfg.vocab_size, cfg.hidden_size],
            nn::Init::Randn {
                mean: 0.,
                stdev: std,
            },
            trainable,
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = &m / "layers" / i;
                Layer {
                    self_attn: Attention::new(&p / "self_attn", cfg, std, trainable, &mode),
                    mlp: Mlp::new(&p / "mlp", cfg, std, trainable, &mode),
                    input_layernorm: RmsNorm::new(
                        &p / "input_layernorm",
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                        trainable,
                    ),
                    post_attention_layernorm: RmsNorm::new(
                        &p / "post_attention_layernorm",
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                        trainable,
                    ),
                }
            })
            .collect();
        let norm = RmsNorm::new(&m / "norm", cfg.hidden_size, cfg.rms_norm_eps, trainable);
        let lm_head = (!cfg.tie_word_embeddings).then(|| {
            var(
                &(root / "lm_head"),
                "weight",
                &[cfg.vocab_size, cfg.hidden_size],
                nn::Init::Randn {
                    mean: 0.,
                    stdev: std,
                },
                trainable,
            )
        });
        let inv = inv_freq(cfg);
        let inv_freq = Tensor::from_slice(&inv).to_device(root.device());
        Self {
            config: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            head_bf16: None,
            label_rows: None,
            frozen_prefix: 0,
            inv_freq,
            mode,
        }
    }

    /// Mixed-precision inference: switches bf16 compute on and keeps a bf16 copy of every
    /// linear map's weight (and of the head), so that no weight is cast per call, while the
    /// embeddings, norms, residual stream, RoPE and softmax statistics stay f32. For models whose
    /// weights no longer change (scoring); a later change of the f32 weights is not seen.
    pub fn cache_bf16_weights(&mut self) {
        tch::no_grad(|| {
            for (_, _, lin) in self.linears_mut() {
                let w = lin.weight.to_kind(Kind::BFloat16);
                let b = lin.bias.as_ref().map(|b| b.to_kind(Kind::BFloat16));
                lin.bf16_copy = Some((w, b));
            }
            let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
            self.head_bf16 = Some(head.to_kind(Kind::BFloat16));
        });
        self.set_bf16_compute(true);
    }

    /// For bf16 training: keeps a bf16 copy of every weight that does not train (the base
    /// under LoRA, the frozen layers of [`Llama::freeze_bottom`], a frozen head), so that it is
    /// not cast again at every call; weights that train are still cast per call from their f32
    /// values. The same numbers as casting each time, less work.
    pub fn cache_bf16_frozen(&mut self) {
        tch::no_grad(|| {
            for (_, _, lin) in self.linears_mut() {
                let frozen = !lin.weight.requires_grad()
                    && !lin.bias.as_ref().is_some_and(|b| b.requires_grad());
                lin.bf16_copy = frozen.then(|| {
                    (
                        lin.weight.to_kind(Kind::BFloat16),
                        lin.bias.as_ref().map(|b| b.to_kind(Kind::BFloat16)),
                    )
                });
            }
            let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
            self.head_bf16 = (!head.requires_grad()).then(|| head.to_kind(Kind::BFloat16));
        });
    }

    /// Training mode switches LoRA dropout on, and the residual dropout of
    /// [`Llama::set_dropout`] (the base model has none unless asked).
    pub fn set_training(&self, on: bool) {
        self.mode.training.store(on, Ordering::Relaxed);
    }

    /// Residual dropout while training: on the token embeddings and on the output of every
    /// attention and MLP block before it joins the residual stream (as in GPT-2). A training
    /// regularizer only: evaluation and scoring never drop anything, so the model computes
    /// exactly what Hugging Face's Llama computes.
    pub fn set_dropout(&self, p: f64) {
        self.mode
            .dropout
            .store(p.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    fn drop(&self, x: Tensor) -> Tensor {
        let p = f64::from_bits(self.mode.dropout.load(Ordering::Relaxed));
        if p > 0.0 && self.mode.training.load(Ordering::Relaxed) {
            x.dropout(p, true)
        } else {
            x
        }
    }

    /// Mixed precision: f32 weights (and optimizer) with matrix products and attention in bf16.
    pub fn set_bf16_compute(&self, on: bool) {
        self.mode.bf16.store(on, Ordering::Relaxed);
    }

    /// The kind matrix products run in.
    pub fn compute_kind(&self) -> Kind {
        if self.mode.bf16.load(Ordering::Relaxed) {
            Kind::BFloat16
        } else {
            self.embed_tokens.kind()
        }
    }

    /// Every linear map with its PEFT module path (`model.layers.N.self_attn.q_proj`) and name.
    pub fn linears_mut(&mut self) -> Vec<(String, &'static str, &mut Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            let m = &mut l.mlp;
            for (kind, name, lin) in [
                ("self_attn", "q_proj", &mut a.q_proj),
                ("self_attn", "k_proj", &mut a.k_proj),
                ("self_attn", "v_proj", &mut a.v_proj),
                ("self_attn", "o_proj", &mut a.o_proj),
                ("mlp", "gate_proj", &mut m.gate_proj),
                ("mlp", "up_proj", &mut m.up_proj),
                ("mlp", "down_proj", &mut m.down_proj),
            ] {
                out.push((format!("model.layers.{i}.{kind}.{name}"), name, lin));
            }
        }
        out
    }

    /// Adds LoRA adapters to the target modules, as trainable variables of `root`'s store under
    /// PEFT's names (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`). A is
    /// initialised like PEFT (Kaiming-uniform, bound 1/√in), B with zeros, so the adapted model
    /// starts equal to the base.
    pub fn add_lora(&mut self, root: &nn::Path, c: &LoraConfig) -> Result<(), String> {
        if c.rank == 0 {
            return Err("LoRA rank must be positive".into());
        }
        if c.targets.is_empty() {
            return Err("LoRA needs at least one target module".into());
        }
        for t in &c.targets {
            if !LORA_MODULES.contains(&t.as_str()) {
                return Err(format!(
                    "LoRA target {t:?} is not a module of this model (expected some of {LORA_MODULES:?})"
                ));
            }
        }
        let n_layers = self.layers.len();
        if let Some(ls) = &c.layers {
            if ls.is_empty() {
                return Err("LoRA layers: the list of adapted layers is empty".into());
            }
            if let Some(bad) = ls.iter().find(|&&l| l >= n_layers) {
                return Err(format!(
                    "LoRA layer {bad} does not exist: the model has layers 0..{n_layers}"
                ));
            }
        }
        for (i, (path, name, lin)) in self.linears_mut().into_iter().enumerate() {
            let layer = i / LORA_MODULES.len();
            if !c.targets.iter().any(|t| t == name)
                || c.layers.as_ref().is_some_and(|ls| !ls.contains(&layer))
            {
                continue;
            }
            let (out, inp) = (lin.weight.size()[0], lin.weight.size()[1]);
            let mut p = root / "base_model" / "model";
            for part in path.split('.') {
                p = &p / part;
            }
            let bound = 1.0 / (inp as f64).sqrt();
            let a = (&p / "lora_A").var(
                "weight",
                &[c.rank as i64, inp],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            );
            let b = (&p / "lora_B").var("weight", &[out, c.rank as i64], nn::Init::Const(0.));
            lin.lora = Some(Lora {
                a,
                b,
                scale: c.alpha / c.rank as f64,
                dropout: c.dropout,
            });
        }
        Ok(())
    }

    /// Folds every adapter into its base weight (`W += scale · B A`) and removes the adapters.
    pub fn merge_lora(&mut self) {
        tch::no_grad(|| {
            for (_, _, lin) in self.linears_mut() {
                if let Some(l) = lin.lora.take() {
                    let delta = l.b.matmul(&l.a) * l.scale;
                    let _ = lin.weight.g_add_(&delta.to_kind(lin.weight.kind()));
                }
            }
        });
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.device()
    }

    /// Initial rows for K added label tokens: each input embedding is the mean of the input
    /// embeddings of the label's title tokens (`title_ids[k]`, as the base tokenizer writes the
    /// title after a record's colon). Each output row is, by `init`, the output row of the
    /// title's first token ([`LabelInit::FirstToken`]: the label token starts with the
    /// probability the base gives that token, and labels whose titles start alike start tied) or
    /// the mean of the output rows of all its tokens ([`LabelInit::TitleMean`]: one distinct row
    /// per label; for a tied-embedding base the same vector as the input row). Returns
    /// `([K, D], [K, D])` detached copies.
    pub fn label_rows_init(
        &self,
        title_ids: &[Vec<i64>],
        init: LabelInit,
    ) -> Result<(Tensor, Tensor), String> {
        let v = self.embed_tokens.size()[0];
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let mut embed = Vec::with_capacity(title_ids.len());
        let mut out = Vec::with_capacity(title_ids.len());
        for (k, ids) in title_ids.iter().enumerate() {
            if ids.is_empty() || ids.iter().any(|&i| i < 0 || i >= v) {
                return Err(format!(
                    "label {k}: its title's token ids {ids:?} are not ids of this model's {v}-token vocabulary"
                ));
            }
            let idx = Tensor::from_slice(ids).to_device(self.device());
            embed.push(
                self.embed_tokens
                    .index_select(0, &idx)
                    .mean_dim(0, false, Kind::Float),
            );
            out.push(match init {
                LabelInit::FirstToken => head.get(ids[0]).to_kind(Kind::Float),
                LabelInit::TitleMean => head.index_select(0, &idx).mean_dim(0, false, Kind::Float),
            });
        }
        Ok(tch::no_grad(|| {
            (
                Tensor::stack(&embed, 0).detach(),
                Tensor::stack(&out, 0).detach(),
            )
        }))
    }

    /// Adds label-token rows (ids `first..first + K`) as variables of `root`'s store, named
    /// [`LABEL_ROWS_EMBED`] and [`LABEL_ROWS_HEAD`], set to `embed` and `head` `[K, D]`. The
    /// output rows are trainable; the input rows too when `train_embed` (else they stay at
    /// `embed`, in the store but never seen by an optimizer: what a frozen prefix needs).
    pub fn add_label_rows(
        &mut self,
        root: &nn::Path,
        first: i64,
        embed: &Tensor,
        head: &Tensor,
        train_embed: bool,
    ) -> Result<(), String> {
        let d = self.config.hidden_size as i64;
        let k = embed.size()[0];
        if embed.size() != [k, d] || head.size() != [k, d] || k == 0 {
            return Err(format!(
                "label rows must be [K, {d}] with K > 0, got {:?} and {:?}",
                embed.size(),
                head.size()
            ));
        }
        if first < 0 || first > self.embed_tokens.size()[0] {
            return Err(format!(
                "label tokens from id {first}: beyond the model's {} rows",
                self.embed_tokens.size()[0]
            ));
        }
        let p = root / "label_tokens";
        let mut e = var(
            &p,
            "embed",
            &[k as usize, d as usize],
            nn::Init::Const(0.),
            train_embed,
        );
        let mut h = p.var("head", &[k, d], nn::Init::Const(0.));
        tch::no_grad(|| {
            e.copy_(embed);
            h.copy_(head);
        });
        self.label_rows = Some(LabelRows {
            first,
            embed: e,
            head: h,
        });
        Ok(())
    }

    /// Writes the label rows into the embedding and a (now untied) head, grows `vocab_size` to
    /// cover them, and drops them: the plain model a saved directory describes.
    pub fn fold_label_rows(&mut self) {
        let Some(r) = self.label_rows.take() else {
            return;
        };
        tch::no_grad(|| {
            let head = self
                .lm_head
                .as_ref()
                .unwrap_or(&self.embed_tokens)
                .shallow_clone();
            let e = with_rows(&self.embed_tokens, r.first, &r.embed).detach();
            let h = with_rows(&head, r.first, &r.head).detach();
            self.config.vocab_size = e.size()[0] as usize;
            self.config.tie_word_embeddings = false;
            self.embed_tokens = e;
            self.lm_head = Some(h);
            self.head_bf16 = None;
        });
    }

    /// Input embeddings of `ids`: the label rows for label-token ids, the base matrix for the
    /// rest. Two lookups and a select, so that the gradient reaches the `[K, D]` rows alone (not
    /// a dense `[V, D]` gradient of a spliced matrix).
    fn embed(&self, ids: &Tensor) -> Tensor {
        let Some(r) = &self.label_rows else {
            return Tensor::embedding(&self.embed_tokens, ids, -1, false, false);
        };
        let v = self.embed_tokens.size()[0];
        let k = r.embed.size()[0];
        let is_label = ids.ge(r.first).logical_and(&ids.lt(r.first + k));
        let base = Tensor::embedding(&self.embed_tokens, &ids.clamp(0, v - 1), -1, false, false);
        let rows = Tensor::embedding(
            &r.embed.to_kind(base.kind()),
            &(ids - r.first).clamp(0, k - 1),
            -1,
            false,
            false,
        );
        rows.where_self(&is_label.unsqueeze(-1), &base)
    }

    /// `cos`, `sin` of shape `[B, 1, T, head_dim]` for integer positions `[B, T]`.
    fn rope(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let pos = positions.to_kind(Kind::Float).unsqueeze(-1);
        let freqs = pos * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// Hidden states after the final norm, `[B, T, D]`, for token ids `[B, T]` at `positions`
    /// `[B, T]`. With a cache, keys and values of the new positions are appended to it.
    pub fn hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Mask,
    ) -> Tensor {
        let mut x = self.drop(self.embed(ids));
        let (cos, sin) = self.rope(positions, Kind::Float);
        let keep = !matches!(mask, Mask::Tree { .. });
        let past = cache.as_ref().map(|c| c.layers.as_slice());
        let all = 0..self.layers.len();
        let fresh = self.run_layers(&mut x, all, &cos, &sin, past, &mask, true);
        if let Some(c) = cache
            && keep
        {
            c.layers = fresh;
        }
        self.norm.forward(&x)
    }

    /// Runs layers `range` on the residual stream `x` (entering the range's first layer, left
    /// as it leaves the last), returning each layer's new keys and values. `dropout`: the
    /// residual dropout of training applies (never in the frozen prefix).
    #[allow(clippy::too_many_arguments)]
    fn run_layers(
        &self,
        x: &mut Tensor,
        range: std::ops::Range<usize>,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&[(Tensor, Tensor)]>,
        mask: &Mask,
        dropout: bool,
    ) -> Vec<(Tensor, Tensor)> {
        let drop = |t: Tensor| if dropout { self.drop(t) } else { t };
        let mut fresh = Vec::with_capacity(range.len());
        for i in range {
            let layer = &self.layers[i];
            let p = past.and_then(|l| l.get(i));
            let (a, kv) =
                layer
                    .self_attn
                    .forward(&layer.input_layernorm.forward(x), cos, sin, p, mask);
            // Not `+=`: the old `x` is saved for the backward pass.
            *x = &*x + drop(a);
            *x = &*x
                + drop(
                    layer
                        .mlp
                        .forward(&layer.post_attention_layernorm.forward(x)),
                );
            fresh.push(kv);
        }
        fresh
    }

    /// Marks the bottom `n` layers as frozen: nothing in them or below them trains (no LoRA
    /// adapter, frozen base weights, frozen input embeddings, label rows' included). Training
    /// then runs them without autograd, one unpadded sequence at a time ([`Llama::prefix`]),
    /// and only the layers above build a graph. Errors when something below layer `n` requires
    /// a gradient, since its training would silently stop.
    pub fn set_frozen_prefix(&mut self, n: usize) -> Result<(), String> {
        if n > self.layers.len() {
            return Err(format!(
                "{n} frozen layers: the model has {}",
                self.layers.len()
            ));
        }
        if n > 0 {
            let mut below: Vec<(String, bool)> = vec![(
                "model.embed_tokens.weight".into(),
                self.embed_tokens.requires_grad(),
            )];
            if let Some(r) = &self.label_rows {
                below.push((LABEL_ROWS_EMBED.into(), r.embed.requires_grad()));
            }
            for (i, l) in self.layers.iter().take(n).enumerate() {
                for (name, lin) in l.linears() {
                    let trains = lin.weight.requires_grad()
                        || lin.bias.as_ref().is_some_and(|b| b.requires_grad())
                        || lin.lora.is_some();
                    below.push((format!("model.layers.{i}.{name}"), trains));
                }
                for (name, norm) in [
                    ("input_layernorm", &l.input_layernorm),
                    ("post_attention_layernorm", &l.post_attention_layernorm),
                ] {
                    below.push((
                        format!("model.layers.{i}.{name}"),
                        norm.weight.requires_grad(),
                    ));
                }
            }
            if let Some((name, _)) = below.iter().find(|(_, t)| *t) {
                return Err(format!(
                    "cannot freeze the bottom {n} layers: {name} is trained"
                ));
            }
        }
        self.frozen_prefix = n;
        Ok(())
    }

    /// Stops the input embeddings (and a head tied to them) and the bottom `n` layers from
    /// requiring gradients, so that an optimizer built from the trainable variables leaves them
    /// out: full fine-tuning of the layers above only.
    pub fn freeze_bottom(&mut self, n: usize) {
        let off = |t: &Tensor| {
            let _ = t.set_requires_grad(false);
        };
        off(&self.embed_tokens);
        for l in self.layers.iter().take(n) {
            for (_, lin) in l.linears() {
                off(&lin.weight);
                if let Some(b) = &lin.bias {
                    off(b);
                }
            }
            off(&l.input_layernorm.weight);
            off(&l.post_attention_layernorm.weight);
        }
    }

    /// The number of frozen bottom layers (see [`Llama::set_frozen_prefix`]).
    pub fn frozen_prefix(&self) -> usize {
        self.frozen_prefix
    }

    /// The residual stream `[T, D]` entering layer `n` for one unpadded causal sequence from
    /// position 0, without gradients and without dropout. For frozen bottom layers this is a
    /// function of the token ids alone, so it can be kept between epochs: computing it again
    /// gives the same bits (the same operations on the same shapes).
    pub fn prefix(&self, ids: &[i64], n: usize) -> Tensor {
        let n = n.min(self.layers.len());
        tch::no_grad(|| {
            let dev = self.device();
            let t = ids.len() as i64;
            let ids = Tensor::from_slice(ids).view([1, t]).to_device(dev);
            let positions = Tensor::arange(t, (Kind::Int64, dev)).unsqueeze(0);
            let (cos, sin) = self.rope(&positions, Kind::Float);
            let mut x = self.embed(&ids);
            self.run_layers(&mut x, 0..n, &cos, &sin, None, &Mask::Causal, false);
            x.squeeze_dim(0)
        })
    }

    /// Hidden states after the final norm, `[B, T, D]`, from the residual stream `x` `[B, T, D]`
    /// entering layer `start` of causal sequences from position 0 (right padding is harmless:
    /// no real position attends to a later one).
    pub fn hidden_from(&self, x: &Tensor, start: usize) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let positions = Tensor::arange(t, (Kind::Int64, x.device()))
            .unsqueeze(0)
            .expand([b, t], false);
        let (cos, sin) = self.rope(&positions, Kind::Float);
        let mut x = x.shallow_clone();
        let above = start.min(self.layers.len())..self.layers.len();
        self.run_layers(&mut x, above, &cos, &sin, None, &Mask::Causal, true);
        self.norm.forward(&x)
    }

    /// The base head's weight `[V, D]` in compute kind `k` (the cached bf16 copy when there is one).
    fn head_weight(&self, k: Kind) -> Tensor {
        match (&self.head_bf16, k) {
            (Some(w), Kind::BFloat16) => w.shallow_clone(),
            _ => self
                .lm_head
                .as_ref()
                .unwrap_or(&self.embed_tokens)
                .to_kind(k),
        }
    }

    /// Logits `[…, V]` (f32) from hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let k = self.compute_kind();
        let w = self.head_weight(k);
        let h = hidden.to_kind(k);
        let base = h.linear::<Tensor>(&w, None).to_kind(Kind::Float);
        let Some(r) = &self.label_rows else {
            return base;
        };
        // The label columns from their own rows, spliced into the base logits: the gradient
        // reaches the `[K, D]` rows, and no `[V, D]` gradient of the base head is formed when
        // it is frozen.
        let labels = h
            .linear::<Tensor>(&r.head.to_kind(k), None)
            .to_kind(Kind::Float);
        let v = base.size()[base.dim() - 1];
        let n = labels.size()[labels.dim() - 1];
        let mut parts = vec![base.narrow(-1, 0, r.first.min(v)), labels];
        if r.first + n < v {
            parts.push(base.narrow(-1, r.first + n, v - r.first - n));
        }
        Tensor::cat(&parts, -1)
    }

    /// Logits of the vocabulary ids `ids` only, `[…, K]` (f32) from hidden states `[…, D]`: the
    /// same numbers as `logits(hidden)` at those columns, without forming the other `V − K`.
    /// Added label rows are used where the ids are theirs.
    pub fn logits_at(&self, hidden: &Tensor, ids: &[i64]) -> Tensor {
        let k = self.compute_kind();
        let dev = hidden.device();
        let h = hidden.to_kind(k);
        let base_w = || self.head_weight(k);
        let rows = match &self.label_rows {
            Some(r) => {
                let n = r.head.size()[0];
                let inside = |&i: &i64| i >= r.first && i < r.first + n;
                if ids.iter().all(inside) {
                    let local: Vec<i64> = ids.iter().map(|i| i - r.first).collect();
                    r.head
                        .to_kind(k)
                        .index_select(0, &Tensor::from_slice(&local).to_device(dev))
                } else if !ids.iter().any(inside) {
                    base_w().index_select(0, &Tensor::from_slice(ids).to_device(dev))
                } else {
                    // Mixed: the full logits, then their columns.
                    return self
                        .logits(hidden)
                        .index_select(-1, &Tensor::from_slice(ids).to_device(dev));
                }
            }
            None => base_w().index_select(0, &Tensor::from_slice(ids).to_device(dev)),
        };
        h.linear::<Tensor>(&rows, None).to_kind(Kind::Float)
    }

    /// Logits for a causal batch starting at position 0, `[B, T, V]`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let positions = Tensor::arange(t, (Kind::Int64, ids.device()))
            .unsqueeze(0)
            .expand([b, t], false);
        self.logits(&self.hidden(ids, &positions, None, Mask::Causal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused CPU tree attention (flash attention over the context, explicit ancestors, merged
    /// through log-sum-exps) equals the explicit one that materializes every score.
    #[test]
    fn fused_tree_attention_equals_the_explicit_one() {
        tch::manual_seed(7);
        let cfg = LlamaConfig::small(50, 24, 32, 1, 6, 2, 64, false);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Llama::new(&vs.root(), &cfg, false);
        let attn = &m.layers[0].self_attn;
        let (r, h, kvh, hd, lc) = (3i64, 6i64, 2i64, 4i64, 9i64);
        // A trie: 2 roots, 3 nodes at depth 2, 1 at depth 3 (parents listed per node).
        let parents: [Option<usize>; 6] = [None, None, Some(0), Some(0), Some(1), Some(3)];
        let depth = |mut i: usize| {
            let mut d = 1;
            while let Some(p) = parents[i] {
                d += 1;
                i = p;
            }
            d
        };
        let mut levels = Vec::new();
        let mut start = 0usize;
        while start < parents.len() {
            let d = depth(start);
            let len = (start..parents.len())
                .take_while(|&i| depth(i) == d)
                .count();
            let mut anc = Vec::new();
            for i in start..start + len {
                let mut j = Some(i);
                while let Some(a) = j {
                    anc.push(a as i64);
                    j = parents[a];
                }
            }
            levels.push(TreeLevel {
                start: start as i64,
                len: len as i64,
                depth: d as i64,
                anc: Tensor::from_slice(&anc),
            });
            start += len;
        }
        let n = parents.len() as i64;
        let q = Tensor::randn([r, h, n, hd], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([r, kvh, n, hd], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([r, kvh, n, hd], (Kind::Float, Device::Cpu));
        let ctx_lens = [9i64, 4, 6];
        let ctx_valid = Tensor::arange(lc, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&Tensor::from_slice(&ctx_lens).unsqueeze(1));
        for batch in [1, r] {
            let pk = Tensor::randn([batch, kvh, lc, hd], (Kind::Float, Device::Cpu));
            let pv = Tensor::randn([batch, kvh, lc, hd], (Kind::Float, Device::Cpu));
            let want = attn.tree_attention(&q, &k, &v, &pk, &pv, &ctx_valid, &levels);
            let got = attn.tree_attention_fused(&q, &k, &v, &pk, &pv, &ctx_lens, &levels);
            assert_eq!(got.size(), want.size());
            let d = (&got - &want).abs().max().double_value(&[]);
            assert!(d < 1e-5, "cache batch {batch}: max |Δ| = {d}");
            // In bf16, within bf16 rounding of the same computation.
            let b = |t: &Tensor| t.to_kind(Kind::BFloat16);
            let got = attn.tree_attention_fused(
                &b(&q),
                &b(&k),
                &b(&v),
                &b(&pk),
                &b(&pv),
                &ctx_lens,
                &levels,
            );
            let d = (got.to_kind(Kind::Float) - &want)
                .abs()
                .max()
                .double_value(&[]);
            assert!(d < 0.05, "bf16, cache batch {batch}: max |Δ| = {d}");
        }
    }
}
