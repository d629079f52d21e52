//! Training: the loss falls, the schedule is right, resuming from saved state is exact, and the
//! library loop reports, keeps the best and resumes through its hooks.

use std::collections::{BTreeMap, HashMap};

use labor_lm::train::{
    Checkpoint, Event, LoopConfig, Loss, Select, Snapshot, TrainData, TrainError, TrainState,
    eval_loss, train, train_step,
};
use labor_lm::{Llama, LlamaConfig};
use labor_torch::hooks::Hooks;
use labor_torch::optim::{AdamW, OptimConfig, Schedule, lr_at};
use labor_torch::order::epoch_order;
use labor_torch::weights;
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor, nn};

mod common;

fn data() -> Vec<Vec<i64>> {
    (0..24)
        .map(|i| {
            (0..(8 + i % 7))
                .map(|j| ((i * 3 + j * j) % 29 + 1) as i64)
                .collect()
        })
        .collect()
}

fn optim() -> OptimConfig {
    OptimConfig {
        lr: 1e-2,
        betas: [0.9, 0.95],
        eps: 1e-8,
        weight_decay: 0.1,
        warmup_steps: 2,
        schedule: Schedule::Cosine,
        grad_clip: 1.0,
        min_lr_ratio: 0.1,
        lr_label_rows: None,
        lr_lora: None,
        lr_base: None,
    }
}

fn model(seed: i64) -> (nn::VarStore, Llama) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Llama::new(
        &vs.root(),
        &LlamaConfig::small(32, 32, 64, 2, 4, 2, 64, false),
        true,
    );
    // Drawn from a seeded generator, not torch's global RNG (shared with the other tests'
    // threads), so every run trains the same model.
    common::fill_normal(&vs, seed as u64, 0.02);
    (vs, m)
}

fn params(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs optimizer steps `from..to` of a `total`-step run: batches of 4 in the epoch order.
fn run(
    m: &Llama,
    opt: &mut AdamW,
    seqs: &[Vec<i64>],
    from: usize,
    to: usize,
    total: usize,
) -> Vec<f64> {
    let per_epoch = seqs.len() / 4;
    (from..to)
        .map(|step| {
            let order = epoch_order(seqs.len(), 7, (step / per_epoch) as u64);
            let i = step % per_epoch;
            let batch: Vec<&[i64]> = order[i * 4..i * 4 + 4]
                .iter()
                .map(|&j| seqs[j].as_slice())
                .collect();
            // Two micro-batches of two: gradient accumulation.
            let micro = vec![batch[..2].to_vec(), batch[2..].to_vec()];
            train_step(m, opt, &optim(), &micro, step, total, Device::Cpu)
                .unwrap()
                .loss
        })
        .collect()
}

fn roundtrip(tensors: &BTreeMap<String, Tensor>) -> Vec<u8> {
    let files = weights::save(tensors, Kind::Float, usize::MAX, &HashMap::new()).unwrap();
    files.into_iter().next().unwrap().1
}

#[test]
fn loss_falls_and_resume_is_bitwise_exact() {
    let seqs = data();
    let total = 16;
    // Straight: 2N steps.
    let (vs_a, a) = model(1);
    // The initial weights travel as bytes: torch's global RNG is shared with the other tests of
    // this binary, which run on other threads, so a second `model(1)` need not be identical.
    let init = roundtrip(&weights::named(&vs_a));
    let mut opt_a = AdamW::new(params(&vs_a));
    let before = eval_loss(&a, &seqs, 8, Device::Cpu);
    let losses = run(&a, &mut opt_a, &seqs, 0, total, total);
    let after = eval_loss(&a, &seqs, 8, Device::Cpu);
    assert!(after < before - 0.3, "loss {before} -> {after}");
    assert!(losses.iter().all(|l| l.is_finite()));

    // N steps, save weights + moments through safetensors bytes, load into a fresh model and
    // optimizer, N more steps.
    let (vs_b, b) = model(2);
    weights::load_into(&vs_b, &[("model.safetensors", &init)]).unwrap();
    let mut opt_b = AdamW::new(params(&vs_b));
    run(&b, &mut opt_b, &seqs, 0, total / 2, total);
    let w = roundtrip(&weights::named(&vs_b));
    let s = roundtrip(&opt_b.state());
    let t = opt_b.t;
    drop((vs_b, b, opt_b));
    let (vs_c, c) = model(99); // different init: everything must come from the checkpoint
    weights::load_into(&vs_c, &[("model.safetensors", &w)]).unwrap();
    let mut opt_c = AdamW::new(params(&vs_c));
    let st = SafeTensors::deserialize(&s).unwrap();
    let state: BTreeMap<String, Tensor> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            (n, Tensor::from_data_size(v.data(), &shape, Kind::Float))
        })
        .collect();
    opt_c.load_state(&state, t).unwrap();
    run(&c, &mut opt_c, &seqs, total / 2, total, total);
    let va = vs_a.variables();
    for (name, tc) in vs_c.variables() {
        let ta = &va[&name];
        assert!(ta.equal(&tc), "{name} differs after resume");
    }
}

#[test]
fn schedule_warms_up_then_decays_to_the_floor() {
    let c = OptimConfig {
        lr: 3e-3,
        ..optim()
    };
    assert!((lr_at(&c, 0, 10) - 1.5e-3).abs() < 1e-15);
    assert!((lr_at(&c, 1, 10) - 3e-3).abs() < 1e-15);
    assert!(
        (lr_at(&c, 2, 10) - 3e-3).abs() < 1e-15,
        "decay starts at the peak"
    );
    assert!(
        (lr_at(&c, 10, 10) - 3e-4).abs() < 1e-12,
        "ends at min_lr_ratio · lr"
    );
    let lin = OptimConfig {
        schedule: Schedule::Linear,
        ..c.clone()
    };
    assert!((lr_at(&lin, 6, 10) - (3e-4 + 2.7e-3 * 0.5)).abs() < 1e-12);
    let orders: Vec<_> = (0..3).map(|e| epoch_order(10, 1, e)).collect();
    assert_ne!(orders[0], orders[1]);
    assert_eq!(orders[0], epoch_order(10, 1, 0));
    let mut sorted = orders[2].clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
}

#[test]
fn pads_are_never_trained_on() {
    let (_vs, m) = model(3);
    let short: Vec<i64> = vec![3, 4, 5];
    let long: Vec<i64> = (1..12).collect();
    let (alone, n1) = labor_lm::train::lm_loss_sum(&m, &[&short], Device::Cpu);
    let (l2, n2) = labor_lm::train::lm_loss_sum(&m, &[&long], Device::Cpu);
    let (both, n) = labor_lm::train::lm_loss_sum(&m, &[&short, &long], Device::Cpu);
    assert_eq!((n1, n2, n), (2, 10, 12));
    let d = (both.double_value(&[]) - alone.double_value(&[]) - l2.double_value(&[])).abs();
    assert!(d < 1e-4, "padded batch loss differs by {d}");
}

#[test]
fn bf16_mixed_precision_trains_f32_weights_close_to_f32() {
    let seqs = data();
    let (vs, m) = model(5);
    let refs: Vec<&[i64]> = seqs.iter().take(4).map(Vec::as_slice).collect();
    let (l32, _) = labor_lm::train::lm_loss_sum(&m, &refs, Device::Cpu);
    m.set_bf16_compute(true);
    assert_eq!(m.compute_kind(), Kind::BFloat16);
    let (l16, n) = labor_lm::train::lm_loss_sum(&m, &refs, Device::Cpu);
    let (a, b) = (
        l32.double_value(&[]) / n as f64,
        l16.double_value(&[]) / n as f64,
    );
    assert!((a - b).abs() < 0.05 && a != b, "f32 {a} vs bf16 {b}");
    let mut opt = AdamW::new(params(&vs));
    let micro = vec![refs.clone()];
    let s = train_step(&m, &mut opt, &optim(), &micro, 0, 4, Device::Cpu).unwrap();
    assert!(s.loss.is_finite() && s.grad_norm > 0.0);
    for (name, t) in vs.variables() {
        assert_eq!(t.kind(), Kind::Float, "{name} stays f32");
    }
}

/// Training in bf16 on CPU (the GPU path's mixed precision): the loss falls as in f32, and the
/// trained model scores in bf16 (`cache_bf16_weights`, what `--dtype bf16` does) within the
/// tolerance docs/lm.md states for this tiny model: every next-token log-probability within 0.05
/// of f32, the mean within 0.01.
#[test]
fn bf16_training_lowers_the_loss_and_bf16_scores_stay_within_tolerance_of_f32() {
    let seqs = data();
    let (vs, m) = model(9);
    m.set_bf16_compute(true);
    let mut opt = AdamW::new(params(&vs));
    let losses = run(&m, &mut opt, &seqs, 0, 30, 30);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(last < 0.8 * first, "bf16 training: loss {first} -> {last}");
    // The same run in f32 ends at about the same loss.
    let (vs32, m32) = model(9);
    let mut opt32 = AdamW::new(params(&vs32));
    let last32 = *run(&m32, &mut opt32, &seqs, 0, 30, 30).last().unwrap();
    assert!(
        (last - last32).abs() < 0.05 * last32,
        "final loss bf16 {last} vs f32 {last32}"
    );
    m.set_bf16_compute(false);
    let ids: Vec<Tensor> = seqs.iter().take(6).map(|s| Tensor::from_slice(s)).collect();
    let logp = |m: &Llama| -> Vec<f64> {
        let mut out = Vec::new();
        for x in &ids {
            let lp = tch::no_grad(|| m.forward(&x.unsqueeze(0)))
                .get(0)
                .log_softmax(-1, Kind::Float);
            let n = x.size()[0];
            for j in 1..n {
                out.push(lp.double_value(&[j - 1, x.int64_value(&[j])]));
            }
        }
        out
    };
    let f32_scores = logp(&m);
    let mut m = m;
    m.cache_bf16_weights();
    assert_eq!(m.compute_kind(), Kind::BFloat16);
    let bf16_scores = logp(&m);
    let diffs: Vec<f64> = f32_scores
        .iter()
        .zip(&bf16_scores)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    eprintln!(
        "loss {first:.4} -> {last:.4} (f32 {last32:.4}); bf16 vs f32 log p: max {max:.2e}, mean {mean:.2e}"
    );
    assert!(max > 0.0, "bf16 changed nothing: not running in bf16");
    assert!(
        max < 0.05 && mean < 0.01,
        "bf16 vs f32: max {max}, mean {mean}"
    );
}

#[test]
fn length_grouped_micro_batches_give_the_same_step() {
    let seqs = data();
    let refs: Vec<&[i64]> = seqs.iter().take(12).map(Vec::as_slice).collect();
    // Grouped: sorted longest first, each micro-batch within the padded-token budget.
    let grouped = labor_torch::order::length_grouped(refs.clone(), 40);
    assert!(grouped.len() > 1, "the budget splits the step");
    let mut flat: Vec<&[i64]> = grouped.iter().flatten().copied().collect();
    assert_eq!(flat.len(), refs.len(), "no sequence lost or repeated");
    for b in &grouped {
        assert!(b.len() == 1 || b.len() * b[0].len() <= 40, "over budget");
        assert!(b.windows(2).all(|w| w[0].len() >= w[1].len()));
    }
    flat.sort();
    let mut want = refs.clone();
    want.sort();
    assert_eq!(flat, want);
    // One step on the whole batch and one on the grouped micro-batches: the same loss and the
    // same gradient (up to float summation order), hence the same update.
    let mut after = Vec::new();
    for micro in [vec![refs.clone()], grouped] {
        let (vs, m) = model(11);
        let mut opt = AdamW::new(params(&vs));
        let st = train_step(&m, &mut opt, &optim(), &micro, 0, 4, Device::Cpu).unwrap();
        let grads: Vec<(String, Tensor)> = params(&vs)
            .into_iter()
            .map(|(n, t)| (n, t.grad().copy()))
            .collect();
        after.push((st.loss, st.tokens, grads, params(&vs)));
    }
    let (a, b) = (&after[0], &after[1]);
    assert!((a.0 - b.0).abs() < 1e-6, "loss {} vs {}", a.0, b.0);
    assert_eq!(a.1, b.1);
    for ((na, ga), (nb, gb)) in a.2.iter().zip(&b.2) {
        assert_eq!(na, nb);
        let scale = ga.abs().max().double_value(&[]);
        let d = (ga - gb).abs().max().double_value(&[]);
        assert!(
            d <= 1e-5 * scale + 1e-8,
            "gradient of {na} differs by {d} (max {scale})"
        );
    }
    for ((na, ta), (_, tb)) in a.3.iter().zip(&b.3) {
        let d = (ta - tb).abs().max().double_value(&[]);
        // Adam divides by the gradient's own size: a float-order difference in a tiny gradient
        // moves a weight by a small fraction of the step (lr 5e-3 here), never more.
        assert!(d < 1e-4, "{na} differs by {d} after the step");
    }
}

/// Records the loop's reports and keeps each resume snapshot as bytes (weights and moments).
#[derive(Default)]
struct Keep {
    steps: Vec<(usize, Option<f64>)>,
    best: Vec<(usize, f64)>,
    resume: Vec<(TrainState, Vec<u8>, Vec<u8>)>,
    vs: Option<nn::VarStore>,
}

impl Hooks<Event<'_>, Checkpoint<'_>> for Keep {
    fn event(&mut self, e: Event<'_>) {
        let Event::Step {
            stats, validation, ..
        } = e;
        self.steps.push((stats.step, validation.map(|v| v.loss)));
    }
    fn checkpoint(&mut self, ck: &Checkpoint<'_>) -> Result<(), String> {
        match ck.kind {
            Snapshot::Best => self.best.push((ck.state.step, ck.state.best_val.unwrap())),
            Snapshot::Resume => {
                let w = roundtrip(&weights::named(self.vs.as_ref().unwrap()));
                self.resume
                    .push((ck.state.clone(), w, roundtrip(&ck.optimizer.state())));
            }
        }
        Ok(())
    }
}

#[test]
fn the_training_loop_reports_keeps_the_best_and_resumes_exactly() {
    let seqs = data();
    let plan = LoopConfig {
        optim: optim(),
        batch_size: 2,
        grad_accum: 2,
        micro_batch_tokens: 0,
        total_steps: 12,
        seed: 7,
        eval_every: 3,
        checkpoint_every: 4,
        loss: Loss::default(),
        select: Select::All,
        prefix_cache_bytes: 0,
        absent_labels: Default::default(),
    };
    let td = TrainData::text(seqs[..20].to_vec(), seqs[20..].to_vec());
    let fresh = |init: &[u8]| {
        let (vs, m) = model(5);
        weights::load_into(&vs, &[("model.safetensors", init)]).unwrap();
        let opt = AdamW::new(params(&vs));
        (vs, m, opt)
    };
    let (vs0, _) = model(3);
    let init = roundtrip(&weights::named(&vs0));

    // Straight through.
    let (vs_a, a, mut opt_a) = fresh(&init);
    let mut keep_a = Keep {
        vs: Some(vs_a),
        ..Default::default()
    };
    let mut st_a = TrainState::default();
    train(
        &a,
        &mut opt_a,
        &plan,
        &td,
        &mut st_a,
        12,
        Device::Cpu,
        &mut keep_a,
    )
    .unwrap();
    assert_eq!(st_a.step, 12);
    let steps: Vec<usize> = keep_a.steps.iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    let evaluated: Vec<usize> = keep_a
        .steps
        .iter()
        .filter(|s| s.1.is_some())
        .map(|s| s.0)
        .collect();
    assert_eq!(evaluated, [3, 6, 9, 12]);
    // Each best is lower than the one before, and the state names the last.
    assert!(
        keep_a
            .best
            .windows(2)
            .all(|w| w[1].1 < w[0].1 && w[1].0 > w[0].0)
    );
    assert_eq!(st_a.best_step, keep_a.best.last().map(|b| b.0));
    let resumed_at: Vec<usize> = keep_a.resume.iter().map(|r| r.0.step).collect();
    assert_eq!(resumed_at, [4, 8, 12]);

    // Stopped at step 5 (a snapshot there too), then resumed from that snapshot's bytes alone.
    let (vs_b, b, mut opt_b) = fresh(&init);
    let mut keep_b = Keep {
        vs: Some(vs_b),
        ..Default::default()
    };
    let mut st_b = TrainState::default();
    train(
        &b,
        &mut opt_b,
        &plan,
        &td,
        &mut st_b,
        5,
        Device::Cpu,
        &mut keep_b,
    )
    .unwrap();
    let (st, w, o) = keep_b.resume.pop().unwrap();
    assert_eq!(st.step, 5);
    let (vs_c, c, mut opt_c) = fresh(&w);
    opt_c
        .load_state(&weights::read_named("o", &o).unwrap(), st.optimizer_t)
        .unwrap();
    let mut keep_c = Keep {
        vs: Some(vs_c),
        ..Default::default()
    };
    let mut st_c = st;
    train(
        &c,
        &mut opt_c,
        &plan,
        &td,
        &mut st_c,
        12,
        Device::Cpu,
        &mut keep_c,
    )
    .unwrap();
    assert_eq!(st_c.best_step, st_a.best_step);
    assert_eq!(st_c.best_val, st_a.best_val);
    let va = keep_a.vs.as_ref().unwrap().variables();
    for (name, tc) in keep_c.vs.as_ref().unwrap().variables() {
        assert!(va[&name].equal(&tc), "{name} differs after resume");
    }
}

#[test]
fn a_diverging_step_stops_the_loop_before_updating() {
    let seqs = data();
    let mut o = optim();
    o.lr = f64::NAN;
    let plan = LoopConfig {
        optim: o,
        batch_size: 4,
        grad_accum: 1,
        micro_batch_tokens: 0,
        total_steps: 3,
        seed: 1,
        eval_every: 1,
        checkpoint_every: 1,
        loss: Loss::default(),
        select: Select::All,
        prefix_cache_bytes: 0,
        absent_labels: Default::default(),
    };
    let td = TrainData::text(seqs.clone(), vec![]);
    let (vs, m) = model(4);
    let mut opt = AdamW::new(params(&vs));
    let mut st = TrainState::default();
    let mut keep = Keep {
        vs: Some(vs),
        ..Default::default()
    };
    // The first step's update is NaN, so the second step's loss is not finite.
    let e = train(&m, &mut opt, &plan, &td, &mut st, 3, Device::Cpu, &mut keep).unwrap_err();
    assert!(matches!(e, TrainError::Diverged(_)), "{e}");
    assert!(e.to_string().contains("at step 2"), "{e}");
    assert_eq!(st.step, 1);
}
