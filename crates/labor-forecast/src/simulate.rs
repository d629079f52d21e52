//! Careers simulated forward: for each person and draw, H records after a start year, each label
//! drawn from the model's distribution given the history so far (observed records, then the
//! simulated ones), fed back. Covariates move forward by fixed rules: the year advances by one,
//! education is carried forward from the last known value, static covariates (and so age, from
//! the birth year) stay. A scenario ([`Setting`]) overrides covariates for a counterfactual.
//!
//! Draws use **common random numbers**: the uniform deciding draw `d`'s label at step `h` of a
//! person depends only on the seed, the person's dataset and id, `d` and `h`, and a label is
//! drawn by inverting the cumulative distribution in taxonomy order. A baseline and a
//! counterfactual run with the same seed therefore differ only where the scenario changed a
//! distribution; with no change they are identical, record for record.

use std::collections::HashMap;

use labor_data::predictions::Predictor;
use labor_data::{Education, LabelId, Person, Record, Taxonomy};

use crate::next::{next_record, predict_next};

/// A covariate set by a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// Education from `from_year` on (default: the first simulated year), observed records of
    /// those years included; later simulated years keep it.
    Education {
        value: Option<Education>,
        from_year: Option<i32>,
    },
    Gender(Option<String>),
    Race(Option<String>),
    Region(Option<String>),
    BirthYear(Option<i32>),
}

/// The covariates `--set` accepts.
pub const SETTABLE: [&str; 5] = ["education", "gender", "race", "region", "birth_year"];

/// Parses `NAME=VALUE` (`education=bachelors`, `region=south`, `gender=NA`). `from_year`
/// applies to education.
pub fn parse_setting(text: &str, from_year: Option<i32>) -> Result<Setting, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE, e.g. education=bachelors"))?;
    let value = value.trim();
    let missing = labor_data::panel::is_missing_token(value);
    let string = || (!missing).then(|| value.to_string());
    if value.is_empty() {
        return Err(format!("{text:?}: empty value; write NA for missing"));
    }
    Ok(match name.trim() {
        "education" => Setting::Education {
            value: if missing {
                None
            } else {
                Some(value.parse::<Education>().map_err(|_| {
                    format!(
                        "{text:?}: expected one of {}, or NA",
                        Education::ALL.map(|e| e.as_str()).join(", ")
                    )
                })?)
            },
            from_year,
        },
        "gender" => Setting::Gender(string()),
        "race" => Setting::Race(string()),
        "region" => Setting::Region(string()),
        "birth_year" => Setting::BirthYear(if missing {
            None
        } else {
            Some(
                value
                    .parse()
                    .map_err(|_| format!("{text:?}: expected a year"))?,
            )
        }),
        other => {
            return Err(format!(
                "{other:?} cannot be set: expected one of {}",
                SETTABLE.join(", ")
            ));
        }
    })
}

/// How far and how often to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Records simulated per draw (H).
    pub years: usize,
    /// Trajectories per person (D).
    pub draws: usize,
    pub seed: u64,
    /// Cut every history after this year and simulate from the year after it (forecast
    /// evaluation); by default each person is simulated from the year after its last record.
    pub cut: Option<i32>,
}

/// A person ready to simulate: the observed history (cut, scenario applied) and the first
/// simulated year.
#[derive(Debug, Clone)]
pub struct Start {
    pub person: Person,
    pub first_year: i32,
}

/// The starts of `persons`: cut at `cut` when given (persons with no record up to it are left
/// out; their count is returned), scenario applied.
pub fn starts(persons: &[Person], cut: Option<i32>, settings: &[Setting]) -> (Vec<Start>, usize) {
    let mut out = Vec::with_capacity(persons.len());
    let mut dropped = 0;
    for p in persons {
        let mut p = p.clone();
        if let Some(c) = cut {
            p.records.retain(|r| r.year <= c);
        }
        if p.records.is_empty() {
            dropped += 1;
            continue;
        }
        let first_year = cut.map_or(p.records.last().expect("non-empty").year + 1, |c| c + 1);
        for s in settings {
            match s {
                Setting::Gender(v) => p.gender = v.clone(),
                Setting::Race(v) => p.race = v.clone(),
                Setting::Region(v) => p.region = v.clone(),
                Setting::BirthYear(v) => p.birth_year = *v,
                Setting::Education { value, from_year } => {
                    let from = from_year.unwrap_or(first_year);
                    for r in p.records.iter_mut().filter(|r| r.year >= from) {
                        r.education = *value;
                    }
                }
            }
        }
        out.push(Start {
            person: p,
            first_year,
        });
    }
    (out, dropped)
}

/// The education of a simulated record in `year`: the scenario's when it applies, else the last
/// known one carried forward.
fn education_in(start: &Start, year: i32, settings: &[Setting]) -> Option<Education> {
    for s in settings {
        if let Setting::Education { value, from_year } = s
            && year >= from_year.unwrap_or(start.first_year)
        {
            return *value;
        }
    }
    next_record(&start.person, Some(year), None).education
}

/// One simulated record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimRecord {
    /// Index of the person in the starts.
    pub person: u32,
    pub draw: u32,
    /// 1..=H.
    pub step: u32,
    pub year: i32,
    pub label: LabelId,
    pub education: Option<Education>,
}

/// The common random number of (seed, person, draw, step), uniform on [0, 1).
pub fn uniform(seed: u64, person: &Person, draw: u32, step: u32) -> f64 {
    let mixed = seed
        ^ (draw as u64).wrapping_mul(labor_data::rng::GOLDEN)
        ^ (step as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let h = labor_data::split::person_hash(mixed, &person.dataset, &person.person_id);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The label whose cumulative probability (taxonomy order) first exceeds `u` times the total.
pub fn sample(p: &[f64], u: f64) -> usize {
    let total: f64 = p.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if target < acc {
            return i;
        }
    }
    p.iter().rposition(|&x| x > 0.0).unwrap_or(0)
}

/// Simulates `opts.draws` trajectories of `opts.years` records for every start. Distributions
/// are computed once per distinct history (draws that agree so far share them). `progress` is
/// called after each person with the number done.
pub fn simulate(
    predictor: &mut dyn Predictor,
    taxonomy: &Taxonomy,
    starts: &[Start],
    settings: &[Setting],
    opts: &SimOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<SimRecord>, String> {
    let mut out = Vec::with_capacity(starts.len() * opts.draws * opts.years);
    for (i, start) in starts.iter().enumerate() {
        let mut memo: HashMap<Vec<u32>, Vec<f64>> = HashMap::new();
        for d in 0..opts.draws as u32 {
            let mut person = start.person.clone();
            let mut path: Vec<u32> = Vec::with_capacity(opts.years);
            for h in 0..opts.years as u32 {
                let year = start.first_year + h as i32;
                let education = education_in(start, year, settings);
                let record = Record {
                    year,
                    label: LabelId(0),
                    education,
                    weight: None,
                };
                let p = match memo.get(&path) {
                    Some(p) => p,
                    None => {
                        let dist = predict_next(predictor, taxonomy, &person, record.clone())
                            .map_err(|e| format!("{} {}: {e}", person.dataset, person.person_id))?;
                        memo.entry(path.clone()).or_insert(dist.p)
                    }
                };
                let label = sample(p, uniform(opts.seed, &start.person, d, h + 1)) as u32;
                path.push(label);
                person.records.push(Record {
                    label: LabelId(label),
                    ..record
                });
                out.push(SimRecord {
                    person: i as u32,
                    draw: d,
                    step: h + 1,
                    year,
                    label: LabelId(label),
                    education,
                });
            }
        }
        progress(i + 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labor_data::predictions::Prediction;

    /// A model whose distribution depends on the education of the record and the last label.
    struct Toy {
        k: usize,
        calls: usize,
    }

    impl Predictor for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
            self.calls += 1;
            let logp = ts
                .iter()
                .map(|&t| {
                    let r = &person.records[t];
                    let prev = person.records[t - 1].label.index();
                    let bonus = if r.education == Some(Education::Bachelors) {
                        3
                    } else {
                        0
                    };
                    (0..self.k)
                        .map(|j| {
                            if j == (prev + bonus) % self.k {
                                0.0
                            } else {
                                -1.5
                            }
                        })
                        .collect()
                })
                .collect();
            Ok(Prediction { logp, icl_k: None })
        }
    }

    fn person(id: &str) -> Person {
        Person {
            dataset: "d".into(),
            person_id: id.into(),
            gender: None,
            race: None,
            region: None,
            birth_year: Some(1970),
            split: None,
            records: vec![Record {
                year: 2000,
                label: LabelId(4),
                education: Some(Education::HighSchoolDiploma),
                weight: None,
            }],
        }
    }

    #[test]
    fn same_seed_and_no_change_gives_identical_draws_and_a_change_moves_them() {
        let t = Taxonomy::embedded_default();
        let persons: Vec<Person> = (0..5).map(|i| person(&i.to_string())).collect();
        let opts = SimOptions {
            years: 4,
            draws: 20,
            seed: 7,
            cut: None,
        };
        let mut m = Toy {
            k: t.len(),
            calls: 0,
        };
        let (s, _) = starts(&persons, None, &[]);
        let a = simulate(&mut m, &t, &s, &[], &opts, &mut |_| {}).unwrap();
        // Draws sharing a history share one model call.
        assert!(m.calls < 5 * 20 * 4, "{} calls", m.calls);
        let none: Vec<Setting> = vec![];
        let (s2, _) = starts(&persons, None, &none);
        let b = simulate(&mut m, &t, &s2, &none, &opts, &mut |_| {}).unwrap();
        assert_eq!(a, b);
        let set = vec![parse_setting("education=bachelors", None).unwrap()];
        let (s3, _) = starts(&persons, None, &set);
        let c = simulate(&mut m, &t, &s3, &set, &opts, &mut |_| {}).unwrap();
        assert_eq!(a.len(), c.len());
        assert!(a.iter().zip(&c).any(|(x, y)| x.label != y.label));
        assert!(c.iter().all(|r| r.education == Some(Education::Bachelors)));
        assert!(
            a.iter()
                .all(|r| r.education == Some(Education::HighSchoolDiploma))
        );
        assert_eq!(a[0].year, 2001);
        assert_eq!(a.iter().map(|r| r.step).max(), Some(4));
    }

    #[test]
    fn sampling_inverts_the_cumulative_distribution() {
        let p = [0.2, 0.0, 0.5, 0.3];
        assert_eq!(sample(&p, 0.0), 0);
        assert_eq!(sample(&p, 0.1999), 0);
        assert_eq!(sample(&p, 0.2), 2);
        assert_eq!(sample(&p, 0.71), 3);
        assert_eq!(sample(&p, 0.999_999_999_999), 3);
        let u: Vec<f64> = (0..1000).map(|d| uniform(1, &person("x"), d, 1)).collect();
        let mean = u.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05 && u.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn settings_parse_or_explain() {
        assert!(
            parse_setting("education=phd", None)
                .unwrap_err()
                .contains("bachelors")
        );
        assert!(
            parse_setting("height=2", None)
                .unwrap_err()
                .contains("cannot be set")
        );
        assert!(
            parse_setting("education", None)
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert_eq!(
            parse_setting("region=NA", None).unwrap(),
            Setting::Region(None)
        );
    }
}
