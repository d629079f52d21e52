//! Neural comparison models (SPEC §6) in tch: **bag-of-jobs** and **CAREER** (a decoder-only
//! transformer over label tokens with a two-stage stay/move head), trained with Adam on the
//! train split, early-stopped and kept at their best on the valid split, optionally pretrained on
//! a resume panel first; see docs/baselines.md.
//!
//! [`encode`] turns persons into label tokens and covariate indices and pads them into batches;
//! [`nets`] holds the two networks; [`train`] the staged, resumable training loop; this module
//! the fitted model ([`NeuralModel`], a [`Predictor`]), its (de)serialization and [`fit`].
//!
//! Like the other core crates this one does no file-system I/O: models, weights and checkpoints
//! go in and out as bytes, and the caller decides where they live.

pub mod encode;
pub mod nets;
pub mod train;

use std::collections::BTreeMap;

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Panel, Person, Split, SplitSpec};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub use encode::{Batch, Seq, Vocab};
pub use nets::{Arch, Net, NetKind, two_stage_logp};
pub use train::{Checkpoint, DynHooks, Event, Hooks, LrSchedule, Quiet, TrainConfig, TrainState};

/// The model file (`model.json`): everything but the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// The name in prediction files (`bag-of-jobs`, `career`, `career-pretrained`).
    pub name: String,
    pub arch: Arch,
    pub vocab: Vocab,
    pub pretrained: bool,
}

/// Everything `labor fit` needs to know for one neural model: the network and the survey
/// stage's settings, plus the pretraining stage's when pretraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitConfig {
    pub model: Arch,
    pub train: TrainConfig,
    #[serde(default)]
    pub pretrain: Option<TrainConfig>,
}

impl FitConfig {
    /// CLI defaults for bag-of-jobs.
    pub fn bag_of_jobs() -> Self {
        Self {
            model: Arch::bag_of_jobs(),
            train: TrainConfig {
                epochs: 40,
                batch_size: 32,
                lr: 3e-3,
                warmup_steps: 0,
                schedule: LrSchedule::Constant,
                patience: 3,
                seed: 0,
                grad_clip: 0.0,
                weight_decay: 0.0,
            },
            pretrain: None,
        }
    }
    /// CLI defaults for CAREER (a small transformer; [`Arch::career_paper`] is the paper's).
    pub fn career() -> Self {
        let train = TrainConfig {
            epochs: 30,
            batch_size: 16,
            lr: 2e-3,
            warmup_steps: 100,
            schedule: LrSchedule::InverseSqrt,
            patience: 3,
            seed: 0,
            grad_clip: 1.0,
            weight_decay: 0.0,
        };
        Self {
            model: Arch::career_small(),
            pretrain: Some(TrainConfig {
                epochs: 8,
                patience: 2,
                ..train.clone()
            }),
            train,
        }
    }
    pub fn default_for(kind: NetKind) -> Self {
        match kind {
            NetKind::BagOfJobs => Self::bag_of_jobs(),
            NetKind::Career => Self::career(),
        }
    }
}

/// A fitted (or freshly initialized) neural model.
pub struct NeuralModel {
    pub file: ModelFile,
    pub net: Net,
}

impl NeuralModel {
    pub fn new(file: ModelFile, device: Device) -> Result<Self, String> {
        let net = Net::new(&file.vocab, &file.arch, device)?;
        Ok(Self { file, net })
    }

    /// A model from its `model.json` text and safetensors weights.
    pub fn from_parts(json: &str, weights: &[u8], device: Device) -> Result<Self, String> {
        let file: ModelFile = serde_json::from_str(json).map_err(|e| format!("model.json: {e}"))?;
        let m = Self::new(file, device)?;
        train::load_weights(&m.net, &train::from_bytes(weights)?)
            .map_err(|e| format!("model.safetensors: {e}"))?;
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.file).expect("serializable")
    }

    /// The weights as safetensors bytes.
    pub fn weights_bytes(&self) -> Result<Vec<u8>, String> {
        let named: BTreeMap<String, Tensor> = self.net.vs.variables().into_iter().collect();
        train::to_bytes(&named)
    }

    /// Log-probabilities of the K labels at every record of each person, scored together in
    /// one padded batch.
    pub fn logp_batch(&self, persons: &[&Person]) -> Vec<Vec<Vec<f64>>> {
        let seqs: Vec<Seq> = persons.iter().map(|p| self.file.vocab.encode(p)).collect();
        let refs: Vec<&Seq> = seqs.iter().collect();
        let k = self.file.vocab.k();
        let lp = tch::no_grad(|| {
            let b = Batch::new(&refs, k, self.net.vs.device());
            self.net
                .logp(&b, false)
                .to_kind(Kind::Double)
                .to_device(Device::Cpu)
        });
        let t_max = lp.size()[1];
        let flat: Vec<f64> = Vec::try_from(lp.reshape([-1])).expect("f64 tensor");
        seqs.iter()
            .enumerate()
            .map(|(i, s)| {
                (0..s.len())
                    .map(|t| {
                        let o = (i * t_max as usize + t) * k as usize;
                        flat[o..o + k as usize].to_vec()
                    })
                    .collect()
            })
            .collect()
    }
}

impl Predictor for NeuralModel {
    fn name(&self) -> &str {
        &self.file.name
    }
    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
        if let Some(&t) = ts.iter().find(|&&t| t >= person.records.len()) {
            return Err(format!(
                "record {t} requested of person {} with {} records",
                person.person_id,
                person.records.len()
            ));
        }
        if ts.is_empty() {
            return Ok(Prediction {
                logp: Vec::new(),
                icl_k: None,
            });
        }
        let all = self.logp_batch(&[person]).remove(0);
        Ok(Prediction {
            logp: ts.iter().map(|&t| all[t].clone()).collect(),
            icl_k: None,
        })
    }
}

/// The encoded persons of a fit.
pub struct FitData {
    pub vocab: Vocab,
    pub train: Vec<Seq>,
    pub valid: Vec<Seq>,
    /// The pretraining panel's train and valid persons, labels mapped to the survey's taxonomy.
    pub pre_train: Vec<Seq>,
    pub pre_valid: Vec<Seq>,
}

/// Encodes the survey (train and valid splits) and, when given, the pretraining panel (its own
/// train and valid splits, under the same split seed). Labels of the pretraining panel are
/// matched to the survey's by code; a code the survey's taxonomy lacks is an error.
pub fn prepare(
    panel: &Panel,
    spec: &SplitSpec,
    pretrain: Option<&Panel>,
) -> Result<FitData, String> {
    let of = |p: &'_ Panel, s: Split| -> Vec<Person> {
        p.persons
            .iter()
            .filter(|q| q.split_or(spec) == s && !q.records.is_empty())
            .cloned()
            .collect()
    };
    let (tr, va) = (of(panel, Split::Train), of(panel, Split::Valid));
    let (mut ptr, mut pva) = (Vec::new(), Vec::new());
    if let Some(pp) = pretrain {
        let map: Vec<Option<usize>> = pp
            .taxonomy
            .labels()
            .iter()
            .map(|l| panel.taxonomy.by_code(&l.code).map(|id| id.index()))
            .collect();
        let remap = |persons: Vec<Person>| -> Result<Vec<Person>, String> {
            persons
                .into_iter()
                .map(|mut q| {
                    for r in &mut q.records {
                        let i = r.label.index();
                        let j = map[i].ok_or_else(|| {
                            format!(
                                "pretraining panel: label {:?} (person {}) is not in the survey's \
                                 taxonomy",
                                pp.taxonomy.labels()[i].code,
                                q.person_id
                            )
                        })?;
                        r.label = labor_data::LabelId(j as u32);
                    }
                    Ok(q)
                })
                .collect()
        };
        ptr = remap(of(pp, Split::Train))?;
        pva = remap(of(pp, Split::Valid))?;
    }
    if tr.is_empty() {
        return Err("the panel has no training persons".into());
    }
    let vocab = Vocab::fit(panel, tr.iter().chain(&ptr));
    let enc = |v: &[Person]| v.iter().map(|p| vocab.encode(p)).collect::<Vec<_>>();
    Ok(FitData {
        train: enc(&tr),
        valid: enc(&va),
        pre_train: enc(&ptr),
        pre_valid: enc(&pva),
        vocab,
    })
}

/// Fits a model: the pretraining stage (when `data` has pretraining persons and `cfg.pretrain`
/// is set), then the survey stage. `resume` continues from a checkpoint of the same fit;
/// `stop_after_epochs` returns early (unfinished: `state.stage` < the number of stages).
pub fn fit(
    data: &FitData,
    cfg: &FitConfig,
    device: Device,
    hooks: &mut train::DynHooks<'_>,
    resume: Option<Checkpoint>,
    stop_after_epochs: Option<usize>,
) -> Result<(NeuralModel, TrainState), String> {
    let pretrained = !data.pre_train.is_empty();
    if pretrained && cfg.model.kind != NetKind::Career {
        return Err("pretraining is only for career".into());
    }
    let name = match (cfg.model.kind, pretrained) {
        (NetKind::Career, true) => "career-pretrained",
        (k, _) => k.as_str(),
    };
    let model = NeuralModel::new(
        ModelFile {
            name: name.into(),
            arch: cfg.model.clone(),
            vocab: data.vocab.clone(),
            pretrained,
        },
        device,
    )?;
    let mut stages = Vec::new();
    if pretrained {
        let pc = cfg
            .pretrain
            .clone()
            .ok_or("pretraining persons given but no [pretrain] settings")?;
        stages.push(train::Stage {
            name: "pretrain".into(),
            train: &data.pre_train,
            valid: &data.pre_valid,
            config: pc,
        });
    }
    stages.push(train::Stage {
        name: if pretrained { "fine-tune" } else { "train" }.into(),
        train: &data.train,
        valid: &data.valid,
        config: cfg.train.clone(),
    });
    let state = train::train(
        &model.net,
        data.vocab.k(),
        &stages,
        resume,
        hooks,
        stop_after_epochs,
    )?;
    Ok((model, state))
}
