//! The label set: occupations with codes, titles and groups, plus three fixed special states.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::problem::{Location, Problem, Problems};

/// Index of a label in its [`Taxonomy`]. The three special labels always have ids 0, 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelId(pub u32);

impl LabelId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a label stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelKind {
    Occupation,
    Unemployed,
    NotInLaborForce,
    InEducation,
}

impl LabelKind {
    /// In the labor force by the BLS definition: employed (any occupation) or unemployed.
    pub fn in_labor_force(self) -> bool {
        matches!(self, LabelKind::Occupation | LabelKind::Unemployed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub code: String,
    pub title: String,
    pub group: String,
    pub kind: LabelKind,
}

/// Code, title and kind of the special labels, in id order. Their group is [`SPECIAL_GROUP`].
pub const SPECIAL_LABELS: [(&str, &str, LabelKind); 3] = [
    ("UNEMP", "Unemployed", LabelKind::Unemployed),
    ("NILF", "Not in labor force", LabelKind::NotInLaborForce),
    ("EDUC", "In education", LabelKind::InEducation),
];
pub const UNEMPLOYED: LabelId = LabelId(0);
pub const NOT_IN_LABOR_FORCE: LabelId = LabelId(1);
pub const IN_EDUCATION: LabelId = LabelId(2);
/// Group of the special labels.
pub const SPECIAL_GROUP: &str = "Not working";
/// Group given to codes added with `--add-unknown-labels`.
pub const UNKNOWN_GROUP: &str = "Unknown";

/// The project's own default occupation list (see `data/taxonomy-default.csv`).
pub const DEFAULT_TAXONOMY_CSV: &str = include_str!("../data/taxonomy-default.csv");

/// The label set every model predicts over: the special labels followed by the occupations in
/// file order. Codes are unique; titles are unique ignoring case.
#[derive(Debug, Clone, PartialEq)]
pub struct Taxonomy {
    labels: Vec<Label>,
    by_code: HashMap<String, LabelId>,
    by_title: HashMap<String, LabelId>,
}

/// Why a text cannot be a label code or title (None when it can).
fn text_defect(value: &str, what: &str) -> Option<String> {
    if value.is_empty() {
        Some(format!("a non-empty {what}"))
    } else if value.trim() != value {
        Some(format!("a {what} without leading or trailing spaces"))
    } else if value.chars().any(|c| c.is_control()) {
        Some(format!(
            "a {what} without newlines, tabs or control characters"
        ))
    } else {
        None
    }
}

impl Taxonomy {
    fn with_specials() -> Self {
        let mut t = Self {
            labels: Vec::new(),
            by_code: HashMap::new(),
            by_title: HashMap::new(),
        };
        for (code, title, kind) in SPECIAL_LABELS {
            t.push(Label {
                code: code.into(),
                title: title.into(),
                group: SPECIAL_GROUP.into(),
                kind,
            });
        }
        t
    }

    fn push(&mut self, label: Label) -> LabelId {
        let id = LabelId(self.labels.len() as u32);
        self.by_code.insert(label.code.clone(), id);
        self.by_title.insert(label.title.to_lowercase(), id);
        self.labels.push(label);
        id
    }

    /// The embedded default taxonomy.
    pub fn embedded_default() -> Self {
        Self::from_csv(DEFAULT_TAXONOMY_CSV.as_bytes())
            .expect("the embedded default taxonomy is valid (checked by tests)")
    }

    /// Reads `code,title,group` CSV (header required) and adds the special labels.
    /// Every problem is reported, with its line.
    pub fn from_csv<R: Read>(reader: R) -> Result<Self, Problems> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut t = Self::with_specials();
        let mut problems = Vec::new();
        let mut first_line: HashMap<LabelId, u64> = HashMap::new();
        let mut header_seen = false;
        for rec in rdr.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    problems.push(Problem::at(
                        Location::line(line),
                        "csv",
                        e.to_string(),
                        "well-formed UTF-8 CSV",
                    ));
                    continue;
                }
            };
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let loc = || Location::line(line);
            if !header_seen {
                header_seen = true;
                let header: Vec<&str> = rec.iter().collect();
                if header != ["code", "title", "group"] {
                    problems.push(Problem::at(
                        loc(),
                        "header",
                        header.join(","),
                        "the header `code,title,group`",
                    ));
                }
                continue;
            }
            if rec.len() != 3 {
                problems.push(Problem::at(
                    loc(),
                    "row",
                    format!("{} field(s)", rec.len()),
                    "3 fields: code,title,group",
                ));
                continue;
            }
            let (code, title, group) = (&rec[0], &rec[1], &rec[2]);
            let mut ok = true;
            for (field, value) in [("code", code), ("title", title), ("group", group)] {
                if let Some(expected) = text_defect(value, field) {
                    problems.push(Problem::at(loc(), field, value, expected));
                    ok = false;
                }
            }
            if code.chars().any(char::is_whitespace) {
                problems.push(Problem::at(loc(), "code", code, "a code without spaces"));
                ok = false;
            }
            if let Some(&id) = t.by_code.get(code) {
                let expected = match first_line.get(&id) {
                    Some(l) => format!("a code not used before (line {l} has it)"),
                    None => "a code other than the reserved special codes UNEMP, NILF, EDUC (special labels are added automatically)".into(),
                };
                problems.push(Problem::at(loc(), "code", code, expected));
                ok = false;
            }
            if let Some(&id) = t.by_title.get(&title.to_lowercase()) {
                let expected = match first_line.get(&id) {
                    Some(l) => format!(
                        "a title unique ignoring case (line {l} has {:?})",
                        t.labels[id.index()].title
                    ),
                    None => {
                        "a title other than the special labels' titles (added automatically)".into()
                    }
                };
                problems.push(Problem::at(loc(), "title", title, expected));
                ok = false;
            }
            if ok {
                let id = t.push(Label {
                    code: code.into(),
                    title: title.into(),
                    group: group.into(),
                    kind: LabelKind::Occupation,
                });
                first_line.insert(id, line);
            }
        }
        if !header_seen {
            problems.push(Problem::global(
                "header",
                "",
                "the header `code,title,group`",
            ));
        } else if t.labels.len() == SPECIAL_LABELS.len() && problems.is_empty() {
            problems.push(Problem::global(
                "rows",
                "no occupations",
                "at least one occupation row",
            ));
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(Problems(problems))
        }
    }

    /// Writes the occupations (not the special labels) as `code,title,group` CSV.
    pub fn write_csv<W: Write>(&self, writer: W) -> csv::Result<()> {
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(["code", "title", "group"])?;
        for l in self.occupations() {
            w.write_record([&l.code, &l.title, &l.group])?;
        }
        w.flush()?;
        Ok(())
    }

    /// Adds a label for a code the taxonomy does not know (the `--add-unknown-labels` option):
    /// its title is the code itself and its group [`UNKNOWN_GROUP`].
    pub fn add_unknown(&mut self, code: &str) -> Result<LabelId, String> {
        if let Some(&id) = self.by_code.get(code) {
            return Ok(id);
        }
        if let Some(e) = text_defect(code, "code") {
            return Err(e);
        }
        if code.chars().any(char::is_whitespace) {
            return Err("a code without spaces".into());
        }
        if let Some(&id) = self.by_title.get(&code.to_lowercase()) {
            return Err(format!(
                "a code that does not equal an existing title (label {} is titled {:?})",
                self.labels[id.index()].code,
                self.labels[id.index()].title
            ));
        }
        Ok(self.push(Label {
            code: code.into(),
            title: code.into(),
            group: UNKNOWN_GROUP.into(),
            kind: LabelKind::Occupation,
        }))
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn label(&self, id: LabelId) -> &Label {
        &self.labels[id.index()]
    }
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }
    pub fn ids(&self) -> impl Iterator<Item = LabelId> + '_ {
        (0..self.labels.len() as u32).map(LabelId)
    }
    pub fn by_code(&self, code: &str) -> Option<LabelId> {
        self.by_code.get(code).copied()
    }
    /// Looks a title up ignoring case.
    pub fn by_title(&self, title: &str) -> Option<LabelId> {
        self.by_title.get(&title.to_lowercase()).copied()
    }
    pub fn occupations(&self) -> impl Iterator<Item = &Label> {
        self.labels
            .iter()
            .filter(|l| l.kind == LabelKind::Occupation)
    }
    /// Distinct groups in first-appearance order (the special group first).
    pub fn groups(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for l in &self.labels {
            if !out.contains(&l.group.as_str()) {
                out.push(&l.group);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_rich() {
        let t = Taxonomy::from_csv(DEFAULT_TAXONOMY_CSV.as_bytes()).unwrap();
        let n = t.occupations().count();
        assert!((300..=500).contains(&n), "{n} occupations");
        assert_eq!(t.label(UNEMPLOYED).title, "Unemployed");
        assert_eq!(t.label(NOT_IN_LABOR_FORCE).code, "NILF");
        assert_eq!(t.label(IN_EDUCATION).kind, LabelKind::InEducation);
        // 22 SOC major groups (+ military) and the special group.
        assert!(t.groups().len() >= 22, "{:?}", t.groups());
        for must in [
            "Cashiers",
            "Registered nurses",
            "Truck drivers, heavy and tractor-trailer",
        ] {
            assert!(t.by_title(must).is_some(), "missing {must}");
        }
        // Titles within a group share words where real titles do.
        let count = |word: &str| {
            t.occupations()
                .filter(|l| l.title.to_lowercase().contains(word))
                .count()
        };
        for word in ["nurse", "driver", "manager", "clerk"] {
            assert!(count(word) >= 3, "only {} titles with {word}", count(word));
        }
    }

    #[test]
    fn reports_every_defect_with_its_line() {
        let csv = "code,title,group\n\
                   A1,Cooks,Food\n\
                   A1,Bakers,Food\n\
                   A2,cooks,Food\n\
                   A3, Waiters,Food\n\
                   A4,,Food\n\
                   UNEMP,Jobless,Special\n\
                   A5,In Education,Special\n\
                   A6,Chefs\n\
                   A 7,Hosts,Food\n";
        let err = Taxonomy::from_csv(csv.as_bytes()).unwrap_err().0;
        let lines: Vec<(u64, &str)> = err
            .iter()
            .map(|p| (p.location.as_ref().unwrap().index, p.field.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (3, "code"),
                (4, "title"),
                (5, "title"),
                (6, "title"),
                (7, "code"),
                (8, "title"),
                (9, "row"),
                (10, "code"),
            ]
        );
        assert!(err[1].expected.contains("line 2"), "{}", err[1]);
    }

    #[test]
    fn header_is_required_and_csv_round_trips() {
        assert!(Taxonomy::from_csv("code,name,group\nA,B,C\n".as_bytes()).is_err());
        let t = Taxonomy::from_csv("code,title,group\nA,\"Drivers, truck\",Transport\n".as_bytes())
            .unwrap();
        let mut out = Vec::new();
        t.write_csv(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "code,title,group\nA,\"Drivers, truck\",Transport\n"
        );
        let mut out = Vec::new();
        Taxonomy::embedded_default().write_csv(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), DEFAULT_TAXONOMY_CSV);
    }

    #[test]
    fn unknown_codes_get_their_own_label() {
        let mut t = Taxonomy::from_csv("code,title,group\nA,Cooks,Food\n".as_bytes()).unwrap();
        let id = t.add_unknown("31-2021").unwrap();
        assert_eq!(t.label(id).title, "31-2021");
        assert_eq!(t.label(id).group, UNKNOWN_GROUP);
        assert_eq!(t.add_unknown("31-2021"), Ok(id));
        assert!(t.add_unknown("cooks").is_err());
        assert!(t.add_unknown("a b").is_err());
    }
}
