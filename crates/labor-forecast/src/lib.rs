//! Using a fitted model (any [`Predictor`](labor_data::predictions::Predictor)): read career
//! histories a person typed or a program wrote ([`history`]), the next year's distribution
//! ([`next`]), careers simulated forward with common random numbers and counterfactual
//! covariates ([`simulate`]), the aggregate tables of a simulation ([`tables`]) and the scores of
//! a forecast against the truth ([`tables::forecast_scores`]). The crate does no I/O: readers
//! take strings, writers return rows.

pub mod history;
pub mod next;
pub mod simulate;
pub mod tables;

use labor_data::taxonomy::LabelKind;
use labor_data::{LabelId, Taxonomy};

/// The category a label is counted under in aggregate tables: its occupation group, or for a
/// special state its title (`Unemployed`, `Not in labor force`, `In education`).
pub fn category(taxonomy: &Taxonomy, id: LabelId) -> &str {
    let l = taxonomy.label(id);
    if l.kind == LabelKind::Occupation {
        &l.group
    } else {
        &l.title
    }
}

/// Every category of a taxonomy: the occupation groups in first-appearance order, then the
/// special states by title.
pub fn categories(taxonomy: &Taxonomy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in taxonomy.labels() {
        if l.kind == LabelKind::Occupation && !out.contains(&l.group) {
            out.push(l.group.clone());
        }
    }
    for l in taxonomy.labels() {
        if l.kind != LabelKind::Occupation {
            out.push(l.title.clone());
        }
    }
    out
}

/// The category of every label, as an index into the names of [`categories`].
#[derive(Debug, Clone)]
pub struct CategoryIndex {
    pub names: Vec<String>,
    of_label: Vec<usize>,
}

impl CategoryIndex {
    pub fn new(taxonomy: &Taxonomy) -> Self {
        let names = categories(taxonomy);
        let of_label = taxonomy
            .ids()
            .map(|id| {
                let c = category(taxonomy, id);
                names
                    .iter()
                    .position(|n| n == c)
                    .expect("every category is named")
            })
            .collect();
        Self { names, of_label }
    }

    pub fn of(&self, id: LabelId) -> usize {
        self.of_label[id.index()]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
