//! Career histories given to a fitted model: JSON (one object per history; JSON lines for many)
//! or CSV in the panel's columns. Labels are given by code or by exact title (case ignored);
//! an unknown label is an error that names the closest titles.
//!
//! ```json
//! {"id": "ana", "gender": "female", "birth_year": 1980,
//!  "records": [{"year": 2001, "label": "Cashiers", "education": "high_school_diploma"},
//!              {"year": 2002, "label": "Retail salespersons"}],
//!  "next": {"year": 2004, "education": "bachelors"}}
//! ```
//!
//! Only `records` (each with `year` and `label`) is required. `next` sets the year and
//! education of the record to predict; by default it is the year after the last record, with
//! the last known education carried forward ([`crate::next::next_record`]).

use std::collections::HashMap;

use labor_data::panel::is_missing_token;
use labor_data::{Education, LabelId, Person, Record, Taxonomy};
use serde::Deserialize;

/// Limits on what one history may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records per history.
    pub max_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_records: 200 }
    }
}

/// A history as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryJson {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub race: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub birth_year: Option<i32>,
    pub records: Vec<RecordJson>,
    #[serde(default)]
    pub next: Option<NextJson>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordJson {
    pub year: i32,
    pub label: String,
    #[serde(default)]
    pub education: Option<String>,
}

/// The record to predict: its year and education, when not the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextJson {
    #[serde(default)]
    pub year: Option<i32>,
    #[serde(default)]
    pub education: Option<String>,
}

/// A history ready for a model: the person (records sorted by year) and what to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub person: Person,
    pub next_year: Option<i32>,
    pub next_education: Option<Education>,
}

/// The dataset name given to histories that name none.
pub const DEFAULT_DATASET: &str = "input";

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The `n` titles closest to `text` (case ignored): titles containing it first, then by edit
/// distance.
pub fn closest_titles(taxonomy: &Taxonomy, text: &str, n: usize) -> Vec<String> {
    let q = text.to_lowercase();
    let mut scored: Vec<(usize, &str)> = taxonomy
        .labels()
        .iter()
        .map(|l| {
            let t = l.title.to_lowercase();
            let d = if !q.is_empty() && t.contains(&q) {
                0
            } else {
                distance(&q, &t).min(distance(&q, &l.code.to_lowercase()))
            };
            (d, l.title.as_str())
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// A label by code, or by exact title with case ignored.
pub fn resolve_label(taxonomy: &Taxonomy, text: &str) -> Result<LabelId, String> {
    let t = text.trim();
    if let Some(id) = taxonomy.by_code(t).or_else(|| taxonomy.by_title(t)) {
        return Ok(id);
    }
    let close = closest_titles(taxonomy, t, 3);
    Err(format!(
        "unknown label {t:?}: expected a code or an exact title of the taxonomy; closest titles: {}",
        close
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn education(text: Option<&str>) -> Result<Option<Education>, String> {
    match text.map(str::trim) {
        None => Ok(None),
        Some(t) if t.is_empty() || is_missing_token(t) => Ok(None),
        Some(t) => t.parse::<Education>().map(Some).map_err(|_| {
            format!(
                "education {t:?}: expected one of {}, or NA",
                Education::ALL.map(|e| e.as_str()).join(", ")
            )
        }),
    }
}

fn covariate(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !is_missing_token(s))
}

/// Checks records (sorted, distinct years, within limits) and builds the history.
fn finish(
    person: Person,
    next_year: Option<i32>,
    next_education: Option<Education>,
    limits: &Limits,
) -> Result<History, String> {
    if person.records.is_empty() {
        return Err("records: a history needs at least one record".into());
    }
    if person.records.len() > limits.max_records {
        return Err(format!(
            "records: {} records; at most {} are accepted",
            person.records.len(),
            limits.max_records
        ));
    }
    for (i, w) in person.records.windows(2).enumerate() {
        if w[1].year <= w[0].year {
            return Err(format!(
                "records[{}].year: {} after {}; years must increase",
                i + 1,
                w[1].year,
                w[0].year
            ));
        }
    }
    let last = person.records.last().expect("non-empty").year;
    if let Some(y) = next_year
        && y <= last
    {
        return Err(format!(
            "next.year: {y} is not after the last record's year {last}"
        ));
    }
    Ok(History {
        person,
        next_year,
        next_education,
    })
}

/// One history from its JSON form. `default_id` names it when it has no `id`.
pub fn from_json(
    h: HistoryJson,
    taxonomy: &Taxonomy,
    default_id: &str,
    limits: &Limits,
) -> Result<History, String> {
    if h.records.len() > limits.max_records {
        return Err(format!(
            "records: {} records; at most {} are accepted",
            h.records.len(),
            limits.max_records
        ));
    }
    let mut records = Vec::with_capacity(h.records.len());
    for (i, r) in h.records.iter().enumerate() {
        let label =
            resolve_label(taxonomy, &r.label).map_err(|e| format!("records[{i}].label: {e}"))?;
        let education =
            education(r.education.as_deref()).map_err(|e| format!("records[{i}].{e}"))?;
        records.push(Record {
            year: r.year,
            label,
            education,
            weight: None,
        });
    }
    let next = h.next.unwrap_or_default();
    let next_education = education(next.education.as_deref()).map_err(|e| format!("next.{e}"))?;
    let person = Person {
        dataset: covariate(h.dataset).unwrap_or_else(|| DEFAULT_DATASET.to_string()),
        person_id: covariate(h.id).unwrap_or_else(|| default_id.to_string()),
        gender: covariate(h.gender),
        race: covariate(h.race),
        region: covariate(h.region),
        birth_year: h.birth_year,
        split: None,
        records,
    };
    finish(person, next.year, next_education, limits)
}

/// One history from JSON text.
pub fn parse_json(
    text: &str,
    taxonomy: &Taxonomy,
    default_id: &str,
    limits: &Limits,
) -> Result<History, String> {
    let h: HistoryJson = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    from_json(h, taxonomy, default_id, limits)
}

/// Histories from JSON lines (blank lines skipped). Errors name the line.
pub fn parse_json_lines(
    text: &str,
    taxonomy: &Taxonomy,
    limits: &Limits,
) -> Result<Vec<History>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let h = parse_json(line, taxonomy, &(out.len() + 1).to_string(), limits)
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(h);
    }
    if out.is_empty() {
        return Err("no history: the input is empty".into());
    }
    Ok(out)
}

/// Histories from CSV in the panel's columns (an empty optional cell is missing, like `NA`): `person_id` (or `id`), `year` and `label`
/// required; `dataset`, `education`, `gender`, `race`, `region` and `birth_year` optional.
/// A person's rows need not be adjacent; histories come in order of first appearance, records
/// sorted by year. Errors name the line and column.
pub fn parse_csv(text: &str, taxonomy: &Taxonomy, limits: &Limits) -> Result<Vec<History>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("line 1: {e}"))?
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    const KNOWN: [&str; 10] = [
        "dataset",
        "person_id",
        "id",
        "year",
        "label",
        "education",
        "gender",
        "race",
        "region",
        "birth_year",
    ];
    for h in &header {
        if !KNOWN.contains(&h.as_str()) {
            return Err(format!(
                "line 1: unknown column {h:?}; expected some of {}",
                KNOWN.join(", ")
            ));
        }
    }
    let col = |n: &str| header.iter().position(|h| h == n);
    let id_col = col("person_id")
        .or_else(|| col("id"))
        .ok_or("line 1: a person_id column is required")?;
    let year_col = col("year").ok_or("line 1: a year column is required")?;
    let label_col = col("label").ok_or("line 1: a label column is required")?;
    let mut order: Vec<(String, String)> = Vec::new();
    let mut persons: HashMap<(String, String), Person> = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("line {line}: {e}"))?;
        let get = |c: Option<usize>| c.and_then(|c| row.get(c)).map(str::to_string);
        let field_err = |field: &str, e: String| format!("line {line}, column {field}: {e}");
        let id = get(Some(id_col)).unwrap_or_default();
        if id.is_empty() {
            return Err(field_err(
                "person_id",
                "empty; expected an identifier".into(),
            ));
        }
        let dataset = covariate(get(col("dataset"))).unwrap_or_else(|| DEFAULT_DATASET.into());
        let year_text = get(Some(year_col)).unwrap_or_default();
        let year: i32 = year_text
            .parse()
            .map_err(|_| field_err("year", format!("{year_text:?}: expected a year")))?;
        let label = resolve_label(taxonomy, &get(Some(label_col)).unwrap_or_default())
            .map_err(|e| field_err("label", e))?;
        let edu =
            education(get(col("education")).as_deref()).map_err(|e| field_err("education", e))?;
        let birth_year = match covariate(get(col("birth_year"))) {
            None => None,
            Some(t) => Some(
                t.parse::<i32>()
                    .map_err(|_| field_err("birth_year", format!("{t:?}: expected a year")))?,
            ),
        };
        let key = (dataset.clone(), id.clone());
        let p = persons.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Person {
                dataset,
                person_id: id,
                gender: None,
                race: None,
                region: None,
                birth_year: None,
                split: None,
                records: Vec::new(),
            }
        });
        for (field, slot, value) in [
            ("gender", &mut p.gender, covariate(get(col("gender")))),
            ("race", &mut p.race, covariate(get(col("race")))),
            ("region", &mut p.region, covariate(get(col("region")))),
        ] {
            match (slot.as_ref(), value) {
                (Some(old), Some(new)) if *old != new => {
                    return Err(field_err(
                        field,
                        format!("{new:?} differs from this person's earlier {old:?}"),
                    ));
                }
                (None, Some(new)) => *slot = Some(new),
                _ => {}
            }
        }
        match (p.birth_year, birth_year) {
            (Some(old), Some(new)) if old != new => {
                return Err(field_err(
                    "birth_year",
                    format!("{new} differs from this person's earlier {old}"),
                ));
            }
            (None, Some(new)) => p.birth_year = Some(new),
            _ => {}
        }
        if p.records.iter().any(|r| r.year == year) {
            return Err(field_err("year", format!("a second record for {year}")));
        }
        p.records.push(Record {
            year,
            label,
            education: edu,
            weight: None,
        });
    }
    if order.is_empty() {
        return Err("no history: the CSV has no rows".into());
    }
    order
        .into_iter()
        .map(|key| {
            let mut p = persons.remove(&key).expect("present");
            p.records.sort_by_key(|r| r.year);
            let id = p.person_id.clone();
            finish(p, None, None, limits).map_err(|e| format!("person {id}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tax() -> Taxonomy {
        Taxonomy::embedded_default()
    }

    #[test]
    fn labels_resolve_by_code_or_title_and_unknown_ones_name_close_titles() {
        let t = tax();
        let occ = t.occupations().next().unwrap().clone();
        assert_eq!(
            resolve_label(&t, &occ.code).unwrap(),
            resolve_label(&t, &occ.title.to_uppercase()).unwrap()
        );
        let typo: String = occ.title.chars().skip(1).collect();
        let e = resolve_label(&t, &typo).unwrap_err();
        assert!(e.contains(&format!("{:?}", occ.title)), "{e}");
    }

    #[test]
    fn json_and_csv_give_the_same_history() {
        let t = tax();
        let occ: Vec<_> = t.occupations().take(2).cloned().collect();
        let json = format!(
            r#"{{"id": "a", "gender": "female", "birth_year": 1980, "records": [
                {{"year": 2001, "label": "{}", "education": "bachelors"}},
                {{"year": 2002, "label": "UNEMP"}},
                {{"year": 2003, "label": "{}", "education": "NA"}}]}}"#,
            occ[0].code, occ[1].title
        );
        let a = parse_json_lines(&json.replace('\n', " "), &t, &Limits::default()).unwrap();
        let csv = format!(
            "person_id,year,label,education,gender,birth_year\n\
             a,2003,{},NA,female,1980\na,2001,{},bachelors,,1980\na,2002,Unemployed,,NA,\n",
            occ[1].code, occ[0].title
        );
        let b = parse_csv(&csv, &t, &Limits::default()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].person.records.len(), 3);
        assert_eq!(a[0].person.records[0].education, Some(Education::Bachelors));
        assert_eq!(a[0].person.records[2].education, None);
    }

    #[test]
    fn bad_histories_are_refused_with_where_and_what() {
        let t = tax();
        let l = Limits { max_records: 2 };
        let e = |s: &str| parse_json_lines(s, &t, &l).unwrap_err();
        assert!(e(r#"{"records": []}"#).contains("at least one record"));
        assert!(
            e(r#"{"records": [{"year": 2, "label": "UNEMP"}, {"year": 1, "label": "UNEMP"}]}"#)
                .contains("records[1].year")
        );
        assert!(
            e(r#"{"records": [{"year": 1, "label": "UNEMP"}, {"year": 2, "label": "UNEMP"}, {"year": 3, "label": "UNEMP"}]}"#)
                .contains("at most 2")
        );
        assert!(
            e(r#"{"records": [{"year": 1, "label": "UNEMP", "edu": "x"}]}"#)
                .contains("unknown field")
        );
        assert!(
            e("\n\n{\"records\": [{\"year\": 1, \"label\": \"Nope nope\"}]}")
                .starts_with("line 3:")
        );
        assert!(
            e(r#"{"records": [{"year": 1, "label": "UNEMP"}], "next": {"year": 1}}"#)
                .contains("next.year")
        );
        let c =
            parse_csv("person_id,year,label\na,2001,UNEMP\na,200x,UNEMP\n", &t, &l).unwrap_err();
        assert!(c.starts_with("line 3, column year"), "{c}");
        let c = parse_csv("person_id,year,label,colour\n", &t, &l).unwrap_err();
        assert!(c.contains("unknown column \"colour\""), "{c}");
    }
}
