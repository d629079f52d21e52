//! World files: everything that defines a synthetic labor market and its survey population.
//! A world file is TOML; presets live in `worlds/`; a run writes the fully resolved world.

use std::collections::BTreeMap;

use labor_data::Education;
use serde::{Deserialize, Serialize};

/// The built-in presets: name and TOML text.
pub const PRESETS: [(&str, &str); 4] = [
    ("nlsy79", include_str!("../worlds/nlsy79.toml")),
    ("nlsy97", include_str!("../worlds/nlsy97.toml")),
    ("psid", include_str!("../worlds/psid.toml")),
    ("resumes", include_str!("../worlds/resumes.toml")),
];
const MARKET: &str = include_str!("../worlds/market.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    pub name: String,
    /// Dataset name written into the panel.
    pub dataset: String,
    /// Default number of workers (persons with at least one observed record).
    pub workers: usize,
    pub population: Population,
    #[serde(default)]
    pub types: Types,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub nonwork: NonWork,
    #[serde(default = "default_market")]
    pub market: Market,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Birth years, inclusive range.
    pub birth_years: [i32; 2],
    pub first_year: i32,
    pub last_year: i32,
    /// Waves every year up to and including this year, then every second year.
    pub annual_until: i32,
    /// Ages at which a person is in the survey.
    pub min_age: i32,
    pub max_age: i32,
    /// Probability that a scheduled wave is missed (a gap).
    pub missing_rate: f64,
    /// Probability of leaving the survey for good after each wave.
    pub attrition: f64,
    pub gender: BTreeMap<String, f64>,
    pub race: BTreeMap<String, f64>,
    pub region: BTreeMap<String, f64>,
    /// Distribution of final education for the cohort born in 1960.
    pub education: BTreeMap<String, f64>,
    /// Cohort trend: log-odds shift per decade of birth towards higher final education.
    #[serde(default)]
    pub education_shift_per_decade: f64,
    /// Non-work states (unemployed, not in labor force, in education) occur.
    #[serde(default = "yes")]
    pub non_work: bool,
}

fn yes() -> bool {
    true
}

/// Latent worker types: prior and how each shifts mobility and non-work (the type's sector
/// tastes are drawn from the market seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Types {
    pub prior: Vec<f64>,
    pub stay_shift: Vec<f64>,
    pub nonwork_shift: Vec<f64>,
}

impl Default for Types {
    fn default() -> Self {
        Self {
            prior: vec![0.5, 0.3, 0.2],
            stay_shift: vec![0.7, -0.8, 0.0],
            nonwork_shift: vec![-0.6, 0.0, 1.1],
        }
    }
}

/// Occupation dynamics; every switch can be turned off for ablations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dynamics {
    pub tenure: bool,
    pub gap: bool,
    pub related_moves: bool,
    pub returns: bool,
    pub interactions: bool,
    pub trends: bool,
    pub cohorts: bool,
    /// Logit of staying in the same occupation ...
    pub stay_base: f64,
    /// ... plus this times ln(1 + years in the occupation) ...
    pub stay_tenure: f64,
    /// ... minus this per year of gap beyond one ...
    pub stay_gap: f64,
    /// ... plus this below age 25.
    pub stay_young: f64,
    /// Shares of moves going to the same group, to occupations sharing a title word, and back
    /// to an earlier occupation (the rest follows the entry distribution).
    pub move_group: f64,
    pub move_word: f64,
    pub move_return: f64,
    /// Probability of going back to the last occupation when work resumes after a one-year
    /// non-work spell, decaying by `return_decay` per extra year of spell.
    pub return_after_spell: f64,
    pub return_decay: f64,
    /// Strength of the education × group-skill interaction in destinations.
    pub edu_group: f64,
    /// Scale of the gender × group effects.
    pub gender_group: f64,
}

impl Default for Dynamics {
    fn default() -> Self {
        Self {
            tenure: true,
            gap: true,
            related_moves: true,
            returns: true,
            interactions: true,
            trends: true,
            cohorts: true,
            stay_base: 1.1,
            stay_tenure: 0.75,
            stay_gap: 0.45,
            stay_young: -0.5,
            move_group: 0.35,
            move_word: 0.2,
            move_return: 0.15,
            return_after_spell: 0.6,
            return_decay: 0.25,
            edu_group: 3.0,
            gender_group: 1.0,
        }
    }
}

/// Logit of a non-work state relative to working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateCoef {
    pub base: f64,
    /// Added when the previous record was work, unemployed, not in labor force, in education.
    pub after: [f64; 4],
    /// Per education level (0 = less than high school ... 7 = doctorate).
    pub edu: f64,
    pub female: f64,
    /// Change of the female effect per decade of birth after 1960 (cohort differences).
    pub female_cohort: f64,
    /// Added below age 25.
    pub young: f64,
    /// Per year of age above 50.
    pub old: f64,
    /// Per year of age below 23.
    pub school: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NonWork {
    pub unemployed: StateCoef,
    pub not_in_labor_force: StateCoef,
    pub in_education: StateCoef,
    /// The effect of the previous record's state decays by this factor per year of gap beyond one.
    pub persistence_decay: f64,
}

impl Default for NonWork {
    fn default() -> Self {
        Self {
            unemployed: StateCoef {
                base: -3.3,
                after: [0.0, 2.0, 1.0, 0.6],
                edu: -0.15,
                female: 0.0,
                female_cohort: 0.0,
                young: 0.5,
                old: 0.0,
                school: 0.0,
            },
            not_in_labor_force: StateCoef {
                base: -3.4,
                after: [0.0, 1.0, 3.4, 0.8],
                edu: -0.12,
                female: 0.9,
                female_cohort: -0.35,
                young: 0.0,
                old: 0.12,
                school: 0.0,
            },
            in_education: StateCoef {
                base: -4.8,
                after: [0.0, 0.5, 0.6, 3.6],
                edu: 0.0,
                female: 0.0,
                female_cohort: 0.0,
                young: 0.0,
                old: 0.0,
                school: 0.6,
            },
            persistence_decay: 0.6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Market {
    pub market_seed: u64,
    pub size_sd: f64,
    pub taste_sd: f64,
    pub group: Vec<GroupParams>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupParams {
    pub name: String,
    pub share: f64,
    pub skill: f64,
    pub female: f64,
    pub trend: f64,
}

fn default_market() -> Market {
    toml::from_str(MARKET).expect("embedded market.toml is valid")
}

impl World {
    /// A preset by name, or None.
    pub fn preset(name: &str) -> Option<World> {
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| World::from_toml(t).expect("presets are valid (tested)"))
    }

    /// Parses and checks a world file.
    pub fn from_toml(text: &str) -> Result<World, String> {
        let w: World = toml::from_str(text).map_err(|e| e.to_string())?;
        w.check()?;
        Ok(w)
    }

    /// The fully resolved world as TOML (every default spelled out).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("serializable")
    }

    fn check(&self) -> Result<(), String> {
        let p = &self.population;
        let bad = |what: &str| Err(format!("world {}: {what}", self.name));
        if p.birth_years[0] > p.birth_years[1]
            || p.first_year > p.last_year
            || p.min_age > p.max_age
        {
            return bad(
                "birth_years, first_year..last_year and min_age..max_age must be increasing ranges",
            );
        }
        if !(0.0..1.0).contains(&p.missing_rate) || !(0.0..1.0).contains(&p.attrition) {
            return bad("missing_rate and attrition must be in [0, 1)");
        }
        for (name, m) in [
            ("gender", &p.gender),
            ("race", &p.race),
            ("region", &p.region),
            ("education", &p.education),
        ] {
            if m.is_empty()
                || m.values().any(|v| !v.is_finite() || *v < 0.0)
                || m.values().sum::<f64>() <= 0.0
            {
                return bad(&format!(
                    "population.{name} must have non-negative shares with a positive sum"
                ));
            }
        }
        for k in p.education.keys() {
            if k.parse::<Education>().is_err() {
                return bad(&format!(
                    "population.education key {k:?}: expected {}",
                    Education::expected()
                ));
            }
        }
        let z = self.types.prior.len();
        if z == 0 || self.types.stay_shift.len() != z || self.types.nonwork_shift.len() != z {
            return bad(
                "types.prior, types.stay_shift and types.nonwork_shift must have the same non-zero length",
            );
        }
        let d = &self.dynamics;
        if d.move_group + d.move_word + d.move_return > 1.0
            || [d.move_group, d.move_word, d.move_return]
                .iter()
                .any(|x| *x < 0.0)
        {
            return bad(
                "dynamics.move_group + move_word + move_return must be shares summing to at most 1",
            );
        }
        if !(0.0..=1.0).contains(&d.return_after_spell) {
            return bad("dynamics.return_after_spell must be in [0, 1]");
        }
        Ok(())
    }
}
