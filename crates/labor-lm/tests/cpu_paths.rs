//! The fast CPU fine-tuning paths against the f32 full path, on a tiny LoRA model:
//! - a frozen prefix (LoRA on the top layers only, the layers below run without autograd)
//!   computes the loss and gradients of the ordinary forward pass;
//! - after a few steps, top-layer LoRA and bf16 compute end within stated tolerances of the f32
//!   all-layer run;
//! - prefix outputs kept between epochs give the same run, bit for bit, as computing them again.

use labor_data::rng::SplitMix64;
use labor_lm::train::{
    LoopConfig, Loss, Select, TrainData, TrainState, eval_loss, lm_loss_sum, train, train_step,
};
use labor_lm::{Llama, LlamaConfig, LoraConfig};
use labor_torch::hooks::Quiet;
use labor_torch::optim::{AdamW, OptimConfig, Schedule};
use tch::{Device, Tensor, nn};

mod common;

const LAYERS: usize = 4;

/// Sequences over 40 tokens with structure to learn: a header, then pairs whose second token
/// mostly repeats the previous pair's.
fn data(n: usize, seed: u64) -> Vec<Vec<i64>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let mut ids = vec![30 + rng.modulo(5) as i64];
            let mut k = rng.modulo(10) as i64;
            for _ in 0..(4 + rng.modulo(8)) {
                ids.push(1 + rng.modulo(9) as i64);
                if rng.modulo(4) == 0 {
                    k = (k + 3) % 10;
                }
                ids.push(10 + k);
            }
            ids
        })
        .collect()
}

/// A frozen random base with LoRA adapters (rank 4, every module) on `layers` (`None`: all),
/// the adapters' B drawn non-zero so that every adapter has a gradient from the start.
fn lora_model(layers: Option<Vec<usize>>) -> (nn::VarStore, nn::VarStore, Llama) {
    let base = nn::VarStore::new(Device::Cpu);
    let mut m = Llama::new(
        &base.root(),
        &LlamaConfig::small(40, 32, 64, LAYERS, 4, 2, 64, true),
        false,
    );
    common::fill_normal(&base, 11, 0.08);
    let adapters = nn::VarStore::new(Device::Cpu);
    m.add_lora(
        &adapters.root(),
        &LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: labor_lm::model::LORA_MODULES.map(String::from).to_vec(),
            layers,
        },
    )
    .unwrap();
    common::fill_normal(&adapters, 12, 0.05);
    (base, adapters, m)
}

fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn optim() -> OptimConfig {
    OptimConfig {
        lr: 1e-2,
        betas: [0.9, 0.95],
        eps: 1e-8,
        weight_decay: 0.0,
        warmup_steps: 1,
        schedule: Schedule::Cosine,
        grad_clip: 1.0,
        min_lr_ratio: 0.1,
        lr_label_rows: None,
        lr_lora: None,
        lr_base: None,
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The loss and every adapter's gradient through a frozen prefix equal those of the plain
/// forward pass through the same model (padded batches of unequal lengths included).
#[test]
fn frozen_prefix_gives_the_forward_pass_loss_and_gradients() {
    let seqs = data(5, 1);
    let refs: Vec<&[i64]> = seqs.iter().map(Vec::as_slice).collect();
    let run = |frozen: usize| {
        let (_b, adapters, mut m) = lora_model(Some(vec![2, 3]));
        m.set_frozen_prefix(frozen).unwrap();
        let (sum, n) = lm_loss_sum(&m, &refs, Device::Cpu);
        (sum / n as f64).backward();
        let loss = tch::no_grad(|| {
            let (s, n) = lm_loss_sum(&m, &refs, Device::Cpu);
            s.double_value(&[]) / n as f64
        });
        let grads: Vec<(String, Tensor)> = trainable(&adapters)
            .into_iter()
            .map(|(name, t)| (name, t.grad().copy()))
            .collect();
        (loss, grads)
    };
    let (plain, g_plain) = run(0);
    let (frozen, g_frozen) = run(2);
    assert!(rel(frozen, plain) < 1e-6, "loss {frozen} vs {plain}");
    assert_eq!(
        g_plain.len(),
        2 * 7 * 2,
        "an A and a B per module of layers 2 and 3"
    );
    for ((name, a), (_, b)) in g_plain.iter().zip(&g_frozen) {
        let scale = a.abs().max().double_value(&[]);
        assert!(scale > 0.0, "{name} has no gradient");
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{name}: gradients differ by {diff}"
        );
    }
}

/// Nothing below a frozen prefix may train: an adapter there is an error naming it.
#[test]
fn a_frozen_prefix_refuses_trained_layers_below_it() {
    let (_b, _a, mut m) = lora_model(None);
    let e = m.set_frozen_prefix(1).unwrap_err();
    assert!(e.contains("model.layers.0.q_proj"), "{e}");
    let e = m.set_frozen_prefix(LAYERS + 1).unwrap_err();
    assert!(e.contains("has 4"), "{e}");
    // Full fine-tuning of the top layers: the bottom ones stop requiring gradients.
    let vs = nn::VarStore::new(Device::Cpu);
    let mut full = Llama::new(
        &vs.root(),
        &LlamaConfig::small(40, 32, 64, LAYERS, 4, 2, 64, true),
        true,
    );
    assert!(full.set_frozen_prefix(2).is_err());
    let all = trainable(&vs).len();
    full.freeze_bottom(2);
    full.set_frozen_prefix(2).unwrap();
    let left = trainable(&vs);
    assert!(left.iter().all(|(n, _)| n.contains("layers.2.")
        || n.contains("layers.3.")
        || n == "model.norm.weight"));
    // Embedding (tied head) and two layers of 9 tensors each are out.
    assert_eq!(left.len(), all - 1 - 2 * 9);
}

/// Six steps of each fast path against the f32 all-layer run from the same adapters.
/// Stated tolerances on the final held-out loss: top-layer LoRA with a frozen prefix equals
/// top-layer LoRA without one within 1e-4 (relative: the same model, padded and unpadded
/// products); top-layer LoRA is within 5% of all-layer LoRA (a smaller adapter: it learns
/// less per step; measured 1.7%); bf16 compute is within 1% of f32 (measured 0.002%). Every
/// run learns (its loss falls).
#[test]
fn fast_paths_end_near_the_f32_full_path() {
    let seqs = data(40, 2);
    let (train_set, valid) = seqs.split_at(32);
    let run = |layers: Option<Vec<usize>>, frozen: usize, bf16: bool| {
        let (_b, adapters, mut m) = lora_model(layers);
        // B at zero (PEFT's start): every run starts at the base model.
        tch::no_grad(|| {
            for (name, mut t) in adapters.variables() {
                if name.contains("lora_B") {
                    let _ = t.zero_();
                }
            }
        });
        m.set_frozen_prefix(frozen).unwrap();
        m.set_bf16_compute(bf16);
        let start = eval_loss(&m, valid, 8, Device::Cpu);
        let mut opt = AdamW::new(trainable(&adapters));
        for step in 0..6 {
            let batch: Vec<&[i64]> = train_set[(step * 8) % 32..(step * 8) % 32 + 8]
                .iter()
                .map(Vec::as_slice)
                .collect();
            train_step(&m, &mut opt, &optim(), &[batch], step, 6, Device::Cpu).unwrap();
        }
        m.set_bf16_compute(false);
        let end = eval_loss(&m, valid, 8, Device::Cpu);
        assert!(
            end < start - 0.05,
            "frozen {frozen}, bf16 {bf16}: {start} -> {end}"
        );
        end
    };
    let full = run(None, 0, false);
    let top = run(Some(vec![2, 3]), 0, false);
    let top_frozen = run(Some(vec![2, 3]), 2, false);
    let bf16 = run(None, 0, true);
    let bf16_top_frozen = run(Some(vec![2, 3]), 2, true);
    assert!(rel(top_frozen, top) < 1e-4, "{top_frozen} vs {top}");
    assert!(rel(top, full) < 0.05, "top layers {top} vs all {full}");
    assert!(rel(bf16, full) < 0.01, "bf16 {bf16} vs f32 {full}");
    assert!(
        rel(bf16_top_frozen, top) < 0.01,
        "bf16 top {bf16_top_frozen} vs f32 top {top}"
    );
}

/// Over three epochs, keeping every prefix output, some of them (a budget too small for all)
/// or none ends with the same adapters, bit for bit, in f32 and in bf16 compute.
#[test]
fn kept_prefix_outputs_give_the_same_run() {
    let seqs = data(24, 3);
    let td = TrainData::text(seqs[..20].to_vec(), seqs[20..].to_vec());
    for bf16 in [false, true] {
        let run = |budget: usize| {
            let (_b, adapters, mut m) = lora_model(Some(vec![3]));
            m.set_frozen_prefix(3).unwrap();
            m.set_bf16_compute(bf16);
            let mut opt = AdamW::new(trainable(&adapters));
            let plan = LoopConfig {
                optim: optim(),
                batch_size: 2,
                grad_accum: 2,
                micro_batch_tokens: 40,
                total_steps: 15,
                seed: 5,
                eval_every: 5,
                checkpoint_every: 100,
                loss: Loss::default(),
                select: Select::All,
                prefix_cache_bytes: budget,
                absent_labels: Default::default(),
            };
            let mut st = TrainState::default();
            train(
                &m,
                &mut opt,
                &plan,
                &td,
                &mut st,
                15,
                Device::Cpu,
                &mut Quiet,
            )
            .unwrap();
            (st.best_val, trainable(&adapters))
        };
        let (v_none, none) = run(0);
        // 20 sequences of at most 25 tokens × 32 × 4 bytes: 1 MB keeps all, 20 kB a few.
        for budget in [1 << 20, 20_000] {
            let (v, kept) = run(budget);
            assert_eq!(v, v_none, "bf16 {bf16}, budget {budget}");
            for ((name, a), (_, b)) in kept.iter().zip(&none) {
                assert!(a.equal(b), "bf16 {bf16}, budget {budget}: {name} differs");
            }
        }
    }
}

/// Keeping bf16 copies of the frozen weights gives the numbers of casting them at every call:
/// the same loss and adapter gradients, bit for bit.
#[test]
fn bf16_copies_of_frozen_weights_change_nothing() {
    let seqs = data(4, 4);
    let refs: Vec<&[i64]> = seqs.iter().map(Vec::as_slice).collect();
    let run = |copies: bool| {
        let (_b, adapters, mut m) = lora_model(None);
        m.set_bf16_compute(true);
        if copies {
            m.cache_bf16_frozen();
        }
        let (sum, n) = lm_loss_sum(&m, &refs, Device::Cpu);
        let loss = sum.double_value(&[]) / n as f64;
        (sum / n as f64).backward();
        let grads: Vec<Tensor> = trainable(&adapters)
            .into_iter()
            .map(|(_, t)| t.grad().copy())
            .collect();
        (loss, grads)
    };
    let (l0, g0) = run(false);
    let (l1, g1) = run(true);
    assert_eq!(l0, l1);
    assert!(g0.iter().zip(&g1).all(|(a, b)| a.equal(b)));
}
