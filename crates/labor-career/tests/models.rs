//! Bag-of-jobs and CAREER on small synthetic worlds: normalization of the two-stage head,
//! padding, save/load, exact resume, and both models beating label frequencies.
//!
//! Models are built from their own seeded initializer (never torch's global RNG), and the
//! bitwise checks train without dropout, so the tests of this binary may run on parallel threads.

use labor_career::train::{self, Checkpoint, Hooks, Stage};
use labor_career::{
    Arch, FitConfig, LrSchedule, ModelFile, NeuralModel, Quiet, TrainConfig, fit, prepare,
    two_stage_logp,
};
use labor_data::predictions::Predictor;
use labor_data::{Panel, Split, SplitSpec, Taxonomy};
use labor_synth::{Generator, World};
use tch::{Device, Kind, Tensor};

fn world(name: &str, n: usize, seed: u64) -> Panel {
    // Small tensors: one thread is fastest, and several spin against each other on a busy machine.
    tch::set_num_threads(1);
    let g = Generator::new(
        World::preset(name).unwrap(),
        Taxonomy::embedded_default(),
        seed,
    )
    .unwrap();
    labor_synth::into_panel(&g.taxonomy, g.generate(n, 2, 0, &|_| {})).0
}

fn tiny_career() -> Arch {
    Arch {
        width: 16,
        layers: 2,
        heads: 2,
        ffn: 32,
        dropout: 0.1,
        ..Arch::career_small()
    }
}

fn quick(epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        lr,
        warmup_steps: 20,
        schedule: LrSchedule::InverseSqrt,
        patience: 0,
        seed: 7,
        grad_clip: 1.0,
        weight_decay: 0.0,
    }
}

fn model(panel: &Panel, arch: Arch) -> NeuralModel {
    let data = prepare(panel, &SplitSpec::default(), None).unwrap();
    NeuralModel::new(
        ModelFile {
            name: arch.kind.as_str().into(),
            arch,
            vocab: data.vocab,
            pretrained: false,
        },
        Device::Cpu,
    )
    .unwrap()
}

#[test]
fn two_stage_head_sums_to_one_and_has_no_stay_branch_at_t1() {
    let k = 7i64;
    // Logits far outside ±10 too; prev = k is the start token.
    let z = Tensor::from_slice(
        &(0..2 * 4 * 7)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 2.5)
            .collect::<Vec<_>>(),
    )
    .reshape([2, 4, k]);
    let s = Tensor::from_slice(&[-30.0f32, 0.3, 4.0, 25.0, 1.0, -2.0, 0.0, 12.0]).reshape([2, 4]);
    let prev = Tensor::from_slice(&[k, 3, 3, 0, k, 6, 2, 2]).reshape([2, 4]);
    let lp = two_stage_logp(&z, &s, &prev, k).to_kind(Kind::Double);
    let v: Vec<f64> = Vec::try_from(lp.reshape([-1])).unwrap();
    let zc: Vec<f64> =
        Vec::try_from(z.clamp(-10.0, 10.0).to_kind(Kind::Double).reshape([-1])).unwrap();
    let sv: Vec<f64> = Vec::try_from(s.to_kind(Kind::Double).reshape([-1])).unwrap();
    let pv: Vec<i64> = Vec::try_from(prev.reshape([-1])).unwrap();
    for pos in 0..8 {
        let row = &v[pos * 7..pos * 7 + 7];
        assert!(row.iter().all(|x| x.is_finite()), "{row:?}");
        let sum: f64 = row.iter().map(|x| x.exp()).sum();
        assert!((sum - 1.0).abs() < 1e-6, "position {pos}: sum {sum}");
        let zr = &zc[pos * 7..pos * 7 + 7];
        if pv[pos] == k {
            // t = 1: a plain softmax over all labels.
            let lse = zr.iter().map(|x| x.exp()).sum::<f64>().ln();
            for j in 0..7 {
                assert!((row[j] - (zr[j] - lse)).abs() < 1e-5);
            }
        } else {
            let p = pv[pos] as usize;
            let sc = sv[pos].clamp(-10.0, 10.0);
            let stay = 1.0 / (1.0 + (-sc).exp());
            assert!((row[p].exp() - stay).abs() < 1e-6, "P(stay) at {pos}");
            let others = (0..7).filter(|&j| j != p);
            let lse = others.clone().map(|j| zr[j].exp()).sum::<f64>().ln();
            for j in others {
                let want = (1.0 - stay).ln() + zr[j] - lse;
                assert!(
                    (row[j] - want).abs() < 1e-4,
                    "{pos} {j}: {} vs {want}",
                    row[j]
                );
            }
        }
    }
}

#[test]
fn every_position_of_both_models_sums_to_one_and_padding_changes_nothing() {
    let panel = world("nlsy79", 12, 3);
    let plain_bag = Arch {
        two_stage: false,
        ..Arch::bag_of_jobs()
    };
    for arch in [tiny_career(), Arch::bag_of_jobs(), plain_bag] {
        let mut m = model(&panel, arch.clone());
        let persons: Vec<_> = panel.persons.iter().take(5).collect();
        let lens: Vec<usize> = persons.iter().map(|p| p.records.len()).collect();
        assert!(
            lens.iter().min() < lens.iter().max(),
            "persons of different lengths: {lens:?}"
        );
        let batch = m.logp_batch(&persons);
        for (p, rows) in persons.iter().zip(&batch) {
            assert_eq!(rows.len(), p.records.len());
            for (t, row) in rows.iter().enumerate() {
                assert_eq!(row.len(), panel.taxonomy.len());
                let sum: f64 = row.iter().map(|x| x.exp()).sum();
                assert!((sum - 1.0).abs() < 1e-6, "{:?} t={t}: {sum}", arch.kind);
            }
            let alone = m.logp_batch(&[p]).remove(0);
            let diff = alone
                .iter()
                .flatten()
                .zip(rows.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                diff < 1e-5,
                "{:?}: padding changed a person's outputs by {diff}",
                arch.kind
            );
            // The Predictor answers the requested records only.
            let pred = m.predict(p, &[rows.len() - 1, 0]).unwrap();
            assert_eq!(pred.logp.len(), 2);
            assert_eq!(pred.logp[1], alone[0]);
        }
        assert!(m.predict(persons[0], &[99]).is_err());
    }
}

#[test]
fn saved_models_load_and_predict_the_same() {
    let panel = world("nlsy79", 10, 4);
    let m = model(&panel, tiny_career());
    let back =
        NeuralModel::from_parts(&m.to_json(), &m.weights_bytes().unwrap(), Device::Cpu).unwrap();
    back.file.vocab.check_taxonomy(&panel.taxonomy).unwrap();
    let p = &panel.persons[0];
    assert_eq!(m.logp_batch(&[p]), back.logp_batch(&[p]));
    // A different initialization seed gives different weights (the seed is used).
    let other = model(
        &panel,
        Arch {
            init_seed: 1,
            ..tiny_career()
        },
    );
    assert_ne!(m.logp_batch(&[p]), other.logp_batch(&[p]));
    assert!(NeuralModel::from_parts("{}", &[], Device::Cpu).is_err());
}

/// Records every checkpoint.
struct Keep(Vec<Checkpoint>);
impl Hooks<train::Event<'_>, Checkpoint> for Keep {
    fn checkpoint(&mut self, ck: &Checkpoint) -> Result<(), String> {
        self.0.push(Checkpoint {
            state: ck.state.clone(),
            weights: ck.weights.clone(),
            optimizer: ck.optimizer.clone(),
            best: ck.best.clone(),
        });
        Ok(())
    }
}

/// A state without its wall-clock times.
fn timeless(mut s: train::TrainState) -> train::TrainState {
    for h in &mut s.history {
        h.seconds = 0.0;
    }
    s
}

#[test]
fn resuming_from_any_checkpoint_continues_exactly() {
    let survey = world("nlsy79", 40, 5);
    let resumes = world("resumes", 40, 6);
    let data = prepare(&survey, &SplitSpec::default(), Some(&resumes)).unwrap();
    assert!(!data.pre_train.is_empty() && !data.pre_valid.is_empty());
    // Resumes record no non-work states and no gender or race: their embeddings are the survey's.
    assert!(data.vocab.genders.contains(&"unknown".to_string()));
    let arch = Arch {
        dropout: 0.0,
        ..tiny_career()
    };
    let stages = [
        Stage {
            name: "pretrain".into(),
            train: &data.pre_train,
            valid: &data.pre_valid,
            config: quick(2, 3e-3),
        },
        Stage {
            name: "fine-tune".into(),
            train: &data.train,
            valid: &data.valid,
            config: quick(2, 3e-3),
        },
    ];
    let fresh = || {
        NeuralModel::new(
            ModelFile {
                name: "career".into(),
                arch: arch.clone(),
                vocab: data.vocab.clone(),
                pretrained: true,
            },
            Device::Cpu,
        )
        .unwrap()
    };
    let full = fresh();
    let mut keep = Keep(Vec::new());
    let end = train::train(&full.net, data.vocab.k(), &stages, None, &mut keep, None).unwrap();
    assert_eq!(end.stage, 2);
    assert_eq!(end.stages.len(), 2);
    // Two epochs + a stage end per stage.
    assert_eq!(keep.0.len(), 6);
    let want = full.weights_bytes().unwrap();
    // A checkpoint of another stage layout (pretraining, resumed without it) is refused.
    let ck = &keep.0[2];
    let other = Checkpoint {
        state: ck.state.clone(),
        weights: ck.weights.clone(),
        optimizer: ck.optimizer.clone(),
        best: ck.best.clone(),
    };
    let err = train::train(
        &fresh().net,
        data.vocab.k(),
        &stages[1..],
        Some(other),
        &mut Quiet,
        None,
    )
    .unwrap_err();
    assert!(err.contains("other stages"), "{err}");
    for (i, ck) in keep.0.into_iter().enumerate() {
        let m = fresh();
        let st = train::train(&m.net, data.vocab.k(), &stages, Some(ck), &mut Quiet, None).unwrap();
        assert_eq!(
            timeless(st),
            timeless(end.clone()),
            "state after resuming from checkpoint {i}"
        );
        assert!(
            m.weights_bytes().unwrap() == want,
            "weights after resuming from checkpoint {i}"
        );
    }
    // Stopping early hands back an unfinished state.
    let m = fresh();
    let st = train::train(&m.net, data.vocab.k(), &stages, None, &mut Quiet, Some(1)).unwrap();
    assert_eq!((st.stage, st.epoch), (0, 1));
}

fn frequency_perplexity(panel: &Panel, spec: &SplitSpec, split: Split) -> f64 {
    let k = panel.taxonomy.len();
    let mut counts = vec![1.0; k];
    for p in panel
        .persons
        .iter()
        .filter(|p| p.split_or(spec) == Split::Train)
    {
        for r in &p.records {
            counts[r.label.index()] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let mut ll = labor_baselines::LogLik::default();
    for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
        for (t, r) in p.records.iter().enumerate() {
            ll.add(t, (counts[r.label.index()] / total).ln());
        }
    }
    ll.perplexity_all()
}

#[test]
fn both_models_beat_label_frequencies() {
    let panel = world("nlsy79", 300, 8);
    let spec = SplitSpec::default();
    let data = prepare(&panel, &spec, None).unwrap();
    let freq = frequency_perplexity(&panel, &spec, Split::Test);
    for cfg in [
        FitConfig {
            model: Arch {
                width: 16,
                ..Arch::bag_of_jobs()
            },
            train: TrainConfig {
                epochs: 6,
                lr: 1e-2,
                ..FitConfig::bag_of_jobs().train
            },
            pretrain: None,
        },
        FitConfig {
            model: tiny_career(),
            train: TrainConfig {
                patience: 2,
                ..quick(6, 5e-3)
            },
            pretrain: None,
        },
    ] {
        let (mut m, state) = fit(&data, &cfg, Device::Cpu, &mut Quiet, None, None).unwrap();
        let ll = labor_baselines::evaluate(&mut m, &panel, &spec, Split::Test).unwrap();
        let ppl = ll.perplexity_all();
        let best = state.stages[0].best_valid_perplexity;
        eprintln!(
            "{}: test perplexity {ppl:.2} (transitions {:.2}), best valid {best:.2}, label frequencies {freq:.2}",
            m.name(),
            ll.perplexity_transitions()
        );
        assert!(
            ppl < 0.1 * freq,
            "{}: {ppl} vs frequencies {freq}",
            m.name()
        );
        assert!(state.stages[0].best_epoch > 0);
    }
}
