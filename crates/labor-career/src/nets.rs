//! The two networks. Both map a [`Batch`] to `[B, T, K]` normalized log-probabilities of the K
//! labels at every position (pads included; callers ignore them).
//!
//! Parameters are initialized from the model's own seeded generator, not torch's global one, so
//! building a model is deterministic even while other threads draw random numbers.

// `x = x + y` on tensors builds a new node; `x += y` would modify x in place, which autograd may
// still need.
#![allow(clippy::assign_op_pattern)]

use labor_torch::init::SeededInit;
use serde::{Deserialize, Serialize};
use tch::nn::{Path, VarStore};
use tch::{Device, Kind, Tensor};

use crate::encode::{Batch, Vocab, n_births, n_educations, n_years};

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetKind {
    BagOfJobs,
    Career,
}

impl NetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NetKind::BagOfJobs => "bag-of-jobs",
            NetKind::Career => "career",
        }
    }
}

/// The shape of a network. Bag-of-jobs uses `width` (the embedding size) only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    pub kind: NetKind,
    pub width: usize,
    #[serde(default)]
    pub layers: usize,
    #[serde(default)]
    pub heads: usize,
    #[serde(default)]
    pub ffn: usize,
    #[serde(default)]
    pub dropout: f64,
    /// Seed of the parameter initialization.
    #[serde(default)]
    pub init_seed: u64,
    /// Bag-of-jobs: use CAREER's two-stage stay/move head instead of a plain softmax over the K
    /// labels (CAREER always uses it). Without it, the rank-`width` projection of the previous
    /// label cannot express "stay in the same label" for hundreds of labels.
    #[serde(default = "yes")]
    pub two_stage: bool,
}

fn yes() -> bool {
    true
}

impl Arch {
    /// The CAREER paper's transformer: 12 layers, width 192, 3 heads, FFN 768, dropout 0.1.
    pub fn career_paper() -> Self {
        Self {
            kind: NetKind::Career,
            width: 192,
            layers: 12,
            heads: 3,
            ffn: 768,
            dropout: 0.1,
            init_seed: 0,
            two_stage: true,
        }
    }
    /// The CLI's CAREER default, sized for a CPU (see docs/baselines.md).
    pub fn career_small() -> Self {
        Self {
            kind: NetKind::Career,
            width: 64,
            layers: 2,
            heads: 2,
            ffn: 256,
            dropout: 0.1,
            init_seed: 0,
            two_stage: true,
        }
    }
    pub fn bag_of_jobs() -> Self {
        Self {
            kind: NetKind::BagOfJobs,
            width: 64,
            layers: 0,
            heads: 0,
            ffn: 0,
            dropout: 0.0,
            init_seed: 0,
            two_stage: true,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.width == 0 {
            return Err("width must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.kind == NetKind::Career {
            if self.layers == 0 || self.heads == 0 || self.ffn == 0 {
                return Err("layers, heads and ffn must be positive".into());
            }
            if !self.width.is_multiple_of(self.heads) {
                return Err(format!(
                    "width {} is not a multiple of heads {}",
                    self.width, self.heads
                ));
            }
        }
        Ok(())
    }
}

/// The parameters' initial values: [`SeededInit`] plus embedding tables whose row 0 (the unseen
/// value) starts at zero.
struct Init(SeededInit);

impl Init {
    fn normal(&mut self, p: &Path, name: &str, shape: &[i64], std: f64) -> Tensor {
        self.0.normal(p, name, shape, std)
    }
    /// An embedding table whose row 0 (the unseen value) starts at zero.
    fn table_zero0(&mut self, p: &Path, name: &str, shape: &[i64], std: f64) -> Tensor {
        let t = self.normal(p, name, shape, std);
        tch::no_grad(|| {
            let _ = t.get(0).zero_();
        });
        t
    }
}

fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    x.linear(w, b)
}

/// Embedding lookup: `table[idx]`.
fn lookup(table: &Tensor, idx: &Tensor) -> Tensor {
    Tensor::embedding(table, idx, -1, false, false)
}

/// The static and per-record covariate embeddings of a batch, summed: `[B, T, d]`.
struct Covariates {
    year: Tensor,
    edu: Tensor,
    gender: Tensor,
    race: Tensor,
    region: Tensor,
    birth: Tensor,
}

impl Covariates {
    fn new(p: &Path, init: &mut Init, vocab: &Vocab, d: i64, std: f64) -> Self {
        let [g, r, s] = vocab.sizes();
        Self {
            year: init.normal(p, "year", &[n_years(), d], std),
            edu: init.normal(p, "education", &[n_educations(), d], std),
            gender: init.table_zero0(p, "gender", &[g, d], std),
            race: init.table_zero0(p, "race", &[r, d], std),
            region: init.table_zero0(p, "region", &[s, d], std),
            birth: init.table_zero0(p, "birth", &[n_births(), d], std),
        }
    }
    /// Per-record embeddings `[B, T, d]` and static ones `[B, 1, d]`, each separately.
    fn parts(&self, b: &Batch) -> Vec<Tensor> {
        vec![
            lookup(&self.year, &b.year),
            lookup(&self.edu, &b.edu) * b.edu_known.to_kind(self.edu.kind()),
            lookup(&self.gender, &b.gender).unsqueeze(1),
            lookup(&self.race, &b.race).unsqueeze(1),
            lookup(&self.region, &b.region).unsqueeze(1),
            lookup(&self.birth, &b.birth).unsqueeze(1),
        ]
    }
}

/// Bag-of-jobs: logits = W_cur·emb(previous label) + W_mean·mean(emb of the labels before it) +
/// Σ_c W_c·emb_c(covariate c) + bias; softmax over the K labels, or (`two_stage`, the default)
/// one more row of each projection gives a stay logit and the K logits go through
/// [`two_stage_logp`]. At t = 1 the previous label is the start token and the mean is zero (also
/// at t = 2: nothing before the previous label).
pub struct BagOfJobs {
    labels: Tensor,
    cov: Covariates,
    /// One projection to K logits per part: current, mean, year, education, gender, race,
    /// region, birth.
    proj: Vec<Tensor>,
    bias: Tensor,
    two_stage: bool,
}

impl BagOfJobs {
    fn new(root: &Path, vocab: &Vocab, arch: &Arch) -> Self {
        let mut init = Init(SeededInit::new(arch.init_seed ^ 0xb0b));
        let d = arch.width as i64;
        let k = vocab.k();
        let std = (d as f64).powf(-0.5);
        let e = root / "emb";
        let labels = init.normal(&e, "label", &[k + 1, d], std);
        let cov = Covariates::new(&e, &mut init, vocab, d, std);
        let names = [
            "current",
            "mean",
            "year",
            "education",
            "gender",
            "race",
            "region",
            "birth",
        ];
        let pp = root / "proj";
        let rows = if arch.two_stage { k + 1 } else { k };
        let proj = names
            .iter()
            .map(|n| init.normal(&pp, n, &[rows, d], 0.02))
            .collect();
        let bias = pp.zeros("bias", &[rows]);
        Self {
            labels,
            cov,
            proj,
            bias,
            two_stage: arch.two_stage,
        }
    }

    fn logp(&self, b: &Batch) -> Tensor {
        let k = self.labels.size()[0] - 1;
        let (bsz, t) = (b.prev.size()[0], b.prev.size()[1]);
        let cur = lookup(&self.labels, &b.prev);
        // Earlier labels of position t are the previous labels of positions 1..t-1 (0-based).
        let not_start = b.prev.ne(k).to_kind(Kind::Float).unsqueeze(-1);
        let cs = (&cur * &not_start).cumsum(1, Kind::Float);
        let d = cur.size()[2];
        let shifted = Tensor::cat(
            &[
                Tensor::zeros([bsz, 1, d], (Kind::Float, cur.device())),
                cs.narrow(1, 0, t - 1),
            ],
            1,
        );
        let count = (Tensor::arange(t, (Kind::Float, cur.device())) - 1.0)
            .clamp_min(1.0)
            .view([1, t, 1]);
        let mean = shifted / count;
        let mut parts = vec![cur, mean];
        parts.extend(self.cov.parts(b));
        let mut logits = self.bias.view([1, 1, -1]);
        for (x, w) in parts.iter().zip(&self.proj) {
            logits = logits + linear(x, w, None);
        }
        if self.two_stage {
            let stay = logits.select(-1, k);
            two_stage_logp(&logits.narrow(-1, 0, k), &stay, &b.prev, k)
        } else {
            logits.log_softmax(-1, Kind::Float)
        }
    }
}

struct Block {
    ln1: (Tensor, Tensor),
    qkv: (Tensor, Tensor),
    out: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
    up: (Tensor, Tensor),
    down: (Tensor, Tensor),
}

/// CAREER: a pre-LayerNorm decoder-only transformer over label tokens with sinusoidal
/// positions. Input at step t: √d·emb(previous label, start token at t = 1) + embeddings of the
/// year and education of step t and of gender, race, region and birth-year bucket. Head: a stay
/// logit and K move logits, both clamped to ±10 (see [`two_stage_logp`]).
pub struct Career {
    labels: Tensor,
    cov: Covariates,
    blocks: Vec<Block>,
    ln_f: (Tensor, Tensor),
    head_move: (Tensor, Tensor),
    head_stay: (Tensor, Tensor),
    heads: i64,
    dropout: f64,
}

fn ln_params(p: &Path, d: i64) -> (Tensor, Tensor) {
    (p.ones("weight", &[d]), p.zeros("bias", &[d]))
}

fn lin(p: &Path, init: &mut Init, out: i64, inp: i64, std: f64) -> (Tensor, Tensor) {
    (
        init.normal(p, "weight", &[out, inp], std),
        p.zeros("bias", &[out]),
    )
}

impl Career {
    fn new(root: &Path, vocab: &Vocab, arch: &Arch) -> Self {
        let mut init = Init(SeededInit::new(arch.init_seed ^ 0xca4ee4));
        let d = arch.width as i64;
        let k = vocab.k();
        let std = (d as f64).powf(-0.5);
        let e = root / "emb";
        let labels = init.normal(&e, "label", &[k + 1, d], std);
        let cov = Covariates::new(&e, &mut init, vocab, d, std);
        let ffn = arch.ffn as i64;
        // GPT-2 style: residual projections scaled down with depth.
        let res_std = 0.02 / (2.0 * arch.layers as f64).sqrt();
        let blocks = (0..arch.layers)
            .map(|i| {
                let p = root / "layers" / i;
                Block {
                    ln1: ln_params(&(&p / "ln1"), d),
                    qkv: lin(&(&p / "qkv"), &mut init, 3 * d, d, 0.02),
                    out: lin(&(&p / "out"), &mut init, d, d, res_std),
                    ln2: ln_params(&(&p / "ln2"), d),
                    up: lin(&(&p / "up"), &mut init, ffn, d, 0.02),
                    down: lin(&(&p / "down"), &mut init, d, ffn, res_std),
                }
            })
            .collect();
        let ln_f = ln_params(&(root / "ln_f"), d);
        let head_move = lin(&(root / "head_move"), &mut init, k, d, 0.02);
        let head_stay = lin(&(root / "head_stay"), &mut init, 1, d, 0.02);
        Self {
            labels,
            cov,
            blocks,
            ln_f,
            head_move,
            head_stay,
            heads: arch.heads as i64,
            dropout: arch.dropout,
        }
    }

    /// The final hidden states `[B, T, d]`.
    fn hidden(&self, b: &Batch, train: bool) -> Tensor {
        let (bsz, t) = (b.prev.size()[0], b.prev.size()[1]);
        let d = self.labels.size()[1];
        let dev = self.labels.device();
        let mut x = lookup(&self.labels, &b.prev) * (d as f64).sqrt();
        for c in self.cov.parts(b) {
            x = x + c;
        }
        x = x + sinusoidal(t, d, dev).unsqueeze(0);
        let p = if train { self.dropout } else { 0.0 };
        x = x.dropout(p, train);
        let h = self.heads;
        let hd = d / h;
        let ln = |x: &Tensor, w: &(Tensor, Tensor)| {
            x.layer_norm([d], Some(&w.0), Some(&w.1), 1e-5, false)
        };
        for blk in &self.blocks {
            let a = ln(&x, &blk.ln1);
            let qkv = linear(&a, &blk.qkv.0, Some(&blk.qkv.1));
            let heads = |i: i64| {
                qkv.narrow(-1, i * d, d)
                    .view([bsz, t, h, hd])
                    .transpose(1, 2)
            };
            let y = Tensor::scaled_dot_product_attention::<Tensor>(
                &heads(0),
                &heads(1),
                &heads(2),
                None,
                p,
                true,
                None,
                false,
            );
            let y = y.transpose(1, 2).reshape([bsz, t, d]);
            x = x + linear(&y, &blk.out.0, Some(&blk.out.1)).dropout(p, train);
            let a = ln(&x, &blk.ln2);
            let f = linear(&a, &blk.up.0, Some(&blk.up.1)).gelu("none");
            x = x + linear(&f, &blk.down.0, Some(&blk.down.1)).dropout(p, train);
        }
        ln(&x, &self.ln_f)
    }

    fn logp(&self, b: &Batch, train: bool) -> Tensor {
        let k = self.labels.size()[0] - 1;
        let x = self.hidden(b, train);
        let mv = linear(&x, &self.head_move.0, Some(&self.head_move.1));
        let stay = linear(&x, &self.head_stay.0, Some(&self.head_stay.1)).squeeze_dim(-1);
        two_stage_logp(&mv, &stay, &b.prev, k)
    }
}

/// Sinusoidal positions `[T, d]` (Vaswani et al.): sin on even, cos on odd dimensions.
pub fn sinusoidal(t: i64, d: i64, device: Device) -> Tensor {
    let pos = Tensor::arange(t, (Kind::Float, device)).unsqueeze(1);
    let i = Tensor::arange_start_step(0, d, 2, (Kind::Float, device));
    let freq = (i * (-(10000f64.ln()) / d as f64)).exp().unsqueeze(0);
    let ang = pos * freq;
    let pe = Tensor::stack(&[ang.sin(), ang.cos()], -1).reshape([t, -1]);
    pe.narrow(1, 0, d)
}

/// The two-stage head in log space. `move_logits` `[B, T, K]`, `stay_logit` `[B, T]`, `prev`
/// `[B, T]` (K = start token). Both logits are clamped to ±10. Where a previous label exists:
/// log p(prev) = log σ(s), and log p(k) = log σ(−s) + log softmax over the labels other than
/// prev; at t = 1 (prev = start) there is no stay branch: log p = log softmax over all K.
pub fn two_stage_logp(move_logits: &Tensor, stay_logit: &Tensor, prev: &Tensor, k: i64) -> Tensor {
    let is_prev = prev.one_hot(k + 1).narrow(-1, 0, k).to_kind(Kind::Bool);
    let z = move_logits
        .clamp(-10.0, 10.0)
        .masked_fill(&is_prev, f64::NEG_INFINITY);
    let lsm = z.log_softmax(-1, Kind::Float);
    let s = stay_logit.clamp(-10.0, 10.0);
    let has_prev = prev.ne(k).to_kind(Kind::Float).unsqueeze(-1);
    let moved = lsm + has_prev * (-&s).log_sigmoid().unsqueeze(-1);
    let stay = s.log_sigmoid().unsqueeze(-1).expand_as(&moved);
    moved.where_self(&is_prev.logical_not(), &stay)
}

/// A network and its variables.
pub struct Net {
    pub vs: VarStore,
    pub arch: Arch,
    inner: Inner,
}

enum Inner {
    Bag(BagOfJobs),
    Career(Career),
}

impl Net {
    pub fn new(vocab: &Vocab, arch: &Arch, device: Device) -> Result<Self, String> {
        arch.validate()?;
        let vs = VarStore::new(device);
        let root = vs.root();
        let inner = match arch.kind {
            NetKind::BagOfJobs => Inner::Bag(BagOfJobs::new(&root, vocab, arch)),
            NetKind::Career => Inner::Career(Career::new(&root, vocab, arch)),
        };
        Ok(Self {
            vs,
            arch: arch.clone(),
            inner,
        })
    }

    /// `[B, T, K]` log-probabilities (f32). `train` turns dropout on.
    pub fn logp(&self, b: &Batch, train: bool) -> Tensor {
        match &self.inner {
            Inner::Bag(m) => m.logp(b),
            Inner::Career(m) => m.logp(b, train),
        }
    }

    pub fn n_params(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}
