//! The true model of the next observed label: P(label_t | type, earlier observed records,
//! covariates of t, gap since the last record). Its output is a distribution over all K labels
//! of the taxonomy that sums to 1 by construction.

use labor_data::taxonomy::{IN_EDUCATION, NOT_IN_LABOR_FORCE, UNEMPLOYED};
use labor_data::{Person, Record};

use crate::market::{BaseCache, BaseKey, Market};
use crate::world::{StateCoef, World};

/// Covariates of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariates {
    pub year: i32,
    pub age: i32,
    /// Education level index (0 = less than high school ... 7 = doctorate).
    pub edu: usize,
    /// -1 male, 1 female, 0 not recorded.
    pub sex: i8,
    pub birth_year: i32,
}

impl Covariates {
    pub fn of(person: &Person, record: &Record) -> Covariates {
        let birth_year = person.birth_year.unwrap_or(record.year - 30);
        Covariates {
            year: record.year,
            age: record.year - birth_year,
            edu: labor_data::Education::ALL
                .iter()
                .position(|e| Some(*e) == record.education)
                .unwrap_or(0),
            sex: sex_of(person.gender.as_deref().unwrap_or("")),
            birth_year,
        }
    }
}

pub fn sex_of(gender: &str) -> i8 {
    match gender {
        "female" => 1,
        "male" => -1,
        _ => 0,
    }
}

/// An earlier observed record: (year, label index in the taxonomy).
pub type Past = (i32, usize);

pub struct LabelModel<'a> {
    pub world: &'a World,
    pub market: &'a Market,
    /// Number of labels K.
    pub k: usize,
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl<'a> LabelModel<'a> {
    pub fn new(world: &'a World, market: &'a Market) -> Self {
        Self {
            world,
            market,
            k: market.first_label + market.n(),
        }
    }

    fn state_logit(
        &self,
        c: &StateCoef,
        z: usize,
        cov: &Covariates,
        prev: Option<(usize, i32)>,
    ) -> f64 {
        let w = self.world;
        let mut x = c.base + c.edu * cov.edu as f64 + w.types.nonwork_shift[z];
        if let Some((kind, gap)) = prev {
            let decay = if w.dynamics.gap {
                w.nonwork.persistence_decay.powi(gap - 1)
            } else {
                1.0
            };
            x += c.after[kind] * decay;
        }
        if cov.sex == 1 {
            let cohort = if w.dynamics.cohorts {
                (cov.birth_year - 1960) as f64 / 10.0
            } else {
                0.0
            };
            x += c.female + c.female_cohort * cohort;
        }
        if cov.age < 25 {
            x += c.young;
        }
        x += c.old * (cov.age - 50).max(0) as f64 + c.school * (23 - cov.age).max(0) as f64;
        x
    }

    /// Writes P(label | type z, history `hist`, covariates `cov`) into `out` (length K).
    pub fn dist(
        &self,
        z: usize,
        hist: &[Past],
        cov: &Covariates,
        cache: &mut BaseCache,
        out: &mut [f64],
    ) {
        let w = self.world;
        let d = &w.dynamics;
        let first = self.market.first_label;
        out.fill(0.0);
        let prev = hist.last().copied();
        let gap = prev.map_or(1, |(y, _)| cov.year - y);
        let prev_kind = prev.map(|(_, l)| if l >= first { 0 } else { l + 1 });
        // Work status: work, unemployed, not in labor force, in education.
        let pw = if w.population.non_work {
            let pk = prev_kind.map(|k| (k, gap));
            let nw = &w.nonwork;
            let e = [
                self.state_logit(&nw.unemployed, z, cov, pk).exp(),
                self.state_logit(&nw.not_in_labor_force, z, cov, pk).exp(),
                self.state_logit(&nw.in_education, z, cov, pk).exp(),
            ];
            let total = 1.0 + e[0] + e[1] + e[2];
            out[UNEMPLOYED.index()] = e[0] / total;
            out[NOT_IN_LABOR_FORCE.index()] = e[1] / total;
            out[IN_EDUCATION.index()] = e[2] / total;
            1.0 / total
        } else {
            1.0
        };
        let base = cache.get(
            self.market,
            w,
            BaseKey {
                z: z as u8,
                edu: cov.edu as u8,
                sex: cov.sex,
                year: cov.year as i16,
            },
        );
        let b = &base.p;
        let occ = &mut out[first..];
        match prev {
            Some((py, pl)) if pl >= first => {
                let p = pl - first;
                let mut start = py;
                for &(y, l) in hist.iter().rev() {
                    if l != pl {
                        break;
                    }
                    start = y;
                }
                let tenure = if d.tenure {
                    (py - start + 1) as f64
                } else {
                    1.0
                };
                let mut s =
                    d.stay_base + d.stay_tenure * (1.0 + tenure).ln() + w.types.stay_shift[z];
                if d.gap {
                    s -= d.stay_gap * (gap - 1) as f64;
                }
                if cov.age < 25 {
                    s += d.stay_young;
                }
                let stay = logistic(s);
                occ[p] += pw * stay;
                let m = pw * (1.0 - stay);
                let mut earlier: Vec<usize> = Vec::new();
                if d.returns {
                    for &(_, l) in hist {
                        if l >= first && l != pl && !earlier.contains(&(l - first)) {
                            earlier.push(l - first);
                        }
                    }
                }
                let g = self.market.occupations[p].group;
                let group_rest = base.group_sum[g] - b[p];
                let nbrs = &self.market.neighbours[p];
                let nbr_sum: f64 = nbrs.iter().map(|&n| b[n]).sum();
                let ret = if earlier.is_empty() {
                    0.0
                } else {
                    d.move_return
                };
                let grp = if d.related_moves && group_rest > 0.0 {
                    d.move_group
                } else {
                    0.0
                };
                let wrd = if d.related_moves && nbr_sum > 0.0 {
                    d.move_word
                } else {
                    0.0
                };
                let rest = m * (1.0 - ret - grp - wrd) / (1.0 - b[p]);
                for (j, o) in occ.iter_mut().enumerate() {
                    if j != p {
                        *o += rest * b[j];
                    }
                }
                if grp > 0.0 {
                    let f = m * grp / group_rest;
                    for &j in &self.market.group_members[g] {
                        if j != p {
                            occ[j] += f * b[j];
                        }
                    }
                }
                if wrd > 0.0 {
                    let f = m * wrd / nbr_sum;
                    for &n in nbrs {
                        occ[n] += f * b[n];
                    }
                }
                if ret > 0.0 {
                    let f = m * ret / earlier.len() as f64;
                    for &j in &earlier {
                        occ[j] += f;
                    }
                }
            }
            _ => {
                // First record, or work after a non-work record: perhaps back to the last
                // occupation held.
                let last = hist
                    .iter()
                    .rev()
                    .find(|(_, l)| *l >= first)
                    .filter(|_| d.returns);
                let r = match last {
                    Some(&(y, _)) => {
                        d.return_after_spell
                            * (-d.return_decay * (cov.year - y - 1).max(0) as f64).exp()
                    }
                    None => 0.0,
                };
                for (o, bj) in occ.iter_mut().zip(b) {
                    *o += pw * (1.0 - r) * bj;
                }
                if let Some(&(_, l)) = last {
                    occ[l - first] += pw * r;
                }
            }
        }
    }
}
