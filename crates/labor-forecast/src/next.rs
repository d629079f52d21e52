//! The next year's distribution for one history.

use labor_data::predictions::{Predictor, row_from_logp};
use labor_data::{Education, LabelId, Person, Record, Split, Taxonomy};

/// The record a model is asked about after a person's last one: the given year (default: the
/// year after the last record) and education (default: the last known education carried
/// forward). Its label is a placeholder that no model reads.
pub fn next_record(person: &Person, year: Option<i32>, education: Option<Education>) -> Record {
    let last = person.records.last().expect("a history has a record");
    Record {
        year: year.unwrap_or(last.year + 1),
        label: LabelId(0),
        education: education.or_else(|| person.records.iter().rev().find_map(|r| r.education)),
        weight: None,
    }
}

/// A model's distribution for the record after a history.
#[derive(Debug, Clone, PartialEq)]
pub struct NextDist {
    pub year: i32,
    pub education: Option<Education>,
    /// Normalized probabilities of the K labels, in taxonomy order.
    pub p: Vec<f64>,
    /// Mass a language model gave to strings that are not labels (0 for other models).
    pub leak: f64,
    /// Probability of the last record's label.
    pub p_stay: Option<f64>,
    /// Probability of an occupation or unemployment.
    pub p_in_lf: f64,
}

impl NextDist {
    /// The `k` most probable labels, most probable first (ties: taxonomy order).
    pub fn top(&self, k: usize) -> Vec<(LabelId, f64)> {
        let mut order: Vec<usize> = (0..self.p.len()).collect();
        order.sort_by(|&a, &b| self.p[b].total_cmp(&self.p[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|i| (LabelId(i as u32), self.p[i]))
            .collect()
    }
}

/// `person` with `record` appended.
pub fn extended(person: &Person, record: Record) -> Person {
    let mut p = person.clone();
    p.records.push(record);
    p
}

/// The distribution of the record after `person`'s last, as `labor score` computes it for a
/// record in a panel (the same normalization, through [`row_from_logp`]).
pub fn predict_next(
    predictor: &mut dyn Predictor,
    taxonomy: &Taxonomy,
    person: &Person,
    record: Record,
) -> Result<NextDist, String> {
    let (year, education) = (record.year, record.education);
    let full = extended(person, record);
    let t = full.records.len() - 1;
    let pred = predictor.predict(&full, &[t])?;
    let logp = pred
        .logp
        .first()
        .ok_or("the model returned no distribution")?;
    if logp.len() != taxonomy.len() {
        return Err(format!(
            "the model returned {} log-probabilities for {} labels",
            logp.len(),
            taxonomy.len()
        ));
    }
    let (row, p) = row_from_logp(
        predictor.name(),
        &full,
        Split::Test,
        taxonomy,
        t,
        logp,
        pred.icl_k,
    );
    Ok(NextDist {
        year,
        education,
        p,
        leak: row.leak,
        p_stay: row.p_stay,
        p_in_lf: row.p_in_lf,
    })
}

/// The distribution of the record a history asks about: its `next` year and education, or the
/// defaults of [`next_record`].
pub fn predict_history(
    predictor: &mut dyn Predictor,
    taxonomy: &Taxonomy,
    history: &crate::history::History,
) -> Result<NextDist, String> {
    let record = next_record(&history.person, history.next_year, history.next_education);
    predict_next(predictor, taxonomy, &history.person, record)
}
