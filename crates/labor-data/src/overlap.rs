//! No evaluated person in any training data: which persons of a training corpus are also
//! validation or test persons of a panel that is scored.
//!
//! A person is the same when the corpus holds the same (dataset, person id), or the same person
//! id with the same static attributes and the same records (year and label code, year by year):
//! the second catches a panel listed a second time under another dataset name, whose persons the
//! split hash then assigns to other splits.

use std::collections::HashMap;

use crate::{Panel, Person, Split, SplitSpec, Taxonomy};

/// The validation and test persons of the evaluated panels.
#[derive(Debug, Default)]
pub struct HeldOut {
    by_key: HashMap<(String, String), Split>,
    by_content: HashMap<String, (String, String, Split)>,
}

/// One training person that is a held-out person.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    /// The training person: (dataset, person id).
    pub person: (String, String),
    /// The held-out person it is: (dataset, person id) and its split.
    pub held: (String, String, Split),
    /// True when the (dataset, person id) is the same; false when the dataset differs but the
    /// person id, attributes and records are the same.
    pub same_key: bool,
}

/// A person's id, attributes and records, with labels as codes (so panels with their own label
/// numbering compare equal).
fn content(p: &Person, tax: &Taxonomy) -> String {
    let mut s = format!(
        "{}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}",
        p.person_id, p.gender, p.race, p.region, p.birth_year
    );
    for r in &p.records {
        s.push('\u{1f}');
        s.push_str(&r.year.to_string());
        s.push(':');
        s.push_str(&tax.label(r.label).code);
    }
    s
}

impl HeldOut {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the validation and test persons of an evaluated panel.
    pub fn add(&mut self, panel: &Panel, spec: &SplitSpec) {
        for p in &panel.persons {
            let split = p.split_or(spec);
            if split == Split::Train {
                continue;
            }
            self.by_key
                .insert((p.dataset.clone(), p.person_id.clone()), split);
            self.by_content.insert(
                content(p, &panel.taxonomy),
                (p.dataset.clone(), p.person_id.clone(), split),
            );
        }
    }

    /// The number of held-out persons.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The persons of `corpus` in one of the splits `used` (the ones a stage trains on) that are
    /// held-out persons.
    pub fn find(&self, corpus: &Panel, spec: &SplitSpec, used: &[Split]) -> Vec<Overlap> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        for p in &corpus.persons {
            if !used.contains(&p.split_or(spec)) {
                continue;
            }
            let key = (p.dataset.clone(), p.person_id.clone());
            if let Some(&split) = self.by_key.get(&key) {
                out.push(Overlap {
                    held: (key.0.clone(), key.1.clone(), split),
                    person: key,
                    same_key: true,
                });
            } else if let Some(h) = self.by_content.get(&content(p, &corpus.taxonomy)) {
                out.push(Overlap {
                    person: key,
                    held: h.clone(),
                    same_key: false,
                });
            }
        }
        out
    }
}

/// A message naming the corpus, how many of its training persons are held out, and a few of
/// them.
pub fn describe(corpus: &str, overlaps: &[Overlap]) -> String {
    let shown: Vec<String> = overlaps
        .iter()
        .take(3)
        .map(|o| {
            if o.same_key {
                format!(
                    "{}/{} ({} split)",
                    o.person.0,
                    o.person.1,
                    o.held.2.as_str()
                )
            } else {
                format!(
                    "{}/{} (the same person id and records as {}/{}, {} split)",
                    o.person.0,
                    o.person.1,
                    o.held.0,
                    o.held.1,
                    o.held.2.as_str()
                )
            }
        })
        .collect();
    format!(
        "{corpus}: {} of its training persons {} validation or test persons of an evaluated \
         panel, e.g. {}",
        overlaps.len(),
        if overlaps.len() == 1 { "is" } else { "are" },
        shown.join(", ")
    )
}
