//! Rendering a person's history as text, with the spans the scorer needs, and parsing a
//! rendered text back into records.

use std::collections::HashMap;

use labor_data::{Education, LabelId, Person, Taxonomy};
use serde::{Deserialize, Serialize};

use crate::template::{Switches, Template};

/// Where record t sits in a rendered text. Offsets are UTF-8 byte offsets into the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSpan {
    pub year: i32,
    /// The label's code in the taxonomy.
    pub label: String,
    /// End of the context: just after `YEAR (EDU):` (or `YEAR:`).
    pub context_end: usize,
    /// The scored continuation `" " + title + "\n"` (with the `label_tokens` switch: the label's
    /// token, which the title follows): [start, end). `start == context_end`.
    pub continuation: [usize; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    pub text: String,
    pub records: Vec<RecordSpan>,
}

impl Rendered {
    /// The text with every record's continuation `" " + title + "\n"` replaced by its `"\n"`:
    /// what a tokenizer with one token per label (see `tokenize::add_label_tokens`) learns its
    /// other pieces from, so no vocabulary is spent on titles.
    pub fn without_continuations(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for r in &self.records {
            let [a, b] = r.continuation;
            out.push_str(&self.text[at..a]);
            out.push('\n');
            at = b;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// The fixed numeric code of a label for the `numeric_codes` switch: 1000 + its id (special
/// states 1000, 1001, 1002; occupations from 1003 in taxonomy order).
pub fn numeric_code(id: LabelId) -> String {
    (1000 + id.0).to_string()
}

/// The text of the added token of the label with code `code` (the `label_tokens` switch).
pub fn label_token(code: &str) -> String {
    format!("<|label:{code}|>")
}

/// A template, its switches and a label set, ready to render and parse.
#[derive(Debug)]
pub struct Renderer<'a> {
    pub template: &'a Template,
    pub switches: Switches,
    titles: Vec<String>,
    codes: Vec<String>,
    by_title: HashMap<String, LabelId>,
    by_phrase: HashMap<String, Education>,
}

fn fill(pattern: &str, vars: &[(&str, &str)]) -> String {
    let mut s = pattern.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// Matches `line` against a pattern with `{name}` placeholders; each placeholder takes the
/// shortest text up to the next literal part (the last one takes the rest before the final
/// literal).
fn match_pattern(pattern: &str, line: &str) -> Option<HashMap<String, String>> {
    let mut names = Vec::new();
    let mut literals = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')? + open;
        literals.push(&rest[..open]);
        names.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    literals.push(rest);
    let mut pos = line.strip_prefix(literals[0])?;
    let mut out = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let lit = literals[i + 1];
        let value_end = if i + 1 == names.len() {
            if !pos.ends_with(lit) {
                return None;
            }
            pos.len() - lit.len()
        } else if lit.is_empty() {
            return None; // adjacent placeholders are ambiguous
        } else {
            pos.find(lit)?
        };
        out.insert(name.to_string(), pos[..value_end].to_string());
        pos = &pos[value_end + lit.len()..];
    }
    if names.is_empty() && !pos.is_empty() {
        return None;
    }
    Some(out)
}

/// Records and header values read back from a rendered text.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub dataset: Option<String>,
    pub gender: Option<String>,
    pub race: Option<String>,
    pub region: Option<String>,
    pub birth_year: Option<i32>,
    /// (year, label, education when the text has it)
    pub records: Vec<(i32, LabelId, Option<Education>)>,
}

impl<'a> Renderer<'a> {
    /// Checks that the titles the template gives the labels are usable: unique, non-empty, no
    /// newline.
    pub fn new(
        template: &'a Template,
        switches: Switches,
        taxonomy: &Taxonomy,
    ) -> Result<Self, String> {
        let titles: Vec<String> = taxonomy
            .ids()
            .map(|id| {
                if switches.numeric_codes {
                    numeric_code(id)
                } else {
                    let l = taxonomy.label(id);
                    template
                        .titles
                        .get(&l.code)
                        .cloned()
                        .unwrap_or_else(|| l.title.clone())
                }
            })
            .collect();
        let mut by_title = HashMap::new();
        for (i, t) in titles.iter().enumerate() {
            if t.is_empty() || t.contains('\n') || t.trim() != t {
                return Err(format!(
                    "label {}: title {t:?} must be non-empty, trimmed, without newline",
                    taxonomy.labels()[i].code
                ));
            }
            if let Some(j) = by_title.insert(t.clone(), LabelId(i as u32)) {
                return Err(format!(
                    "labels {} and {} would both be written {t:?}",
                    taxonomy.label(j).code,
                    taxonomy.labels()[i].code
                ));
            }
        }
        let by_phrase = template
            .education
            .iter()
            .filter_map(|(k, v)| Some((v.clone(), k.parse::<Education>().ok()?)))
            .collect();
        let codes: Vec<String> = taxonomy.labels().iter().map(|l| l.code.clone()).collect();
        if switches.label_tokens
            && let Some(c) = codes
                .iter()
                .find(|c| c.is_empty() || c.contains(['|', '\n', '<', '>']))
        {
            return Err(format!(
                "label code {c:?} cannot name a label token (it must be non-empty, without `|`, `<`, `>` or newline)"
            ));
        }
        Ok(Self {
            template,
            switches,
            titles,
            codes,
            by_title,
            by_phrase,
        })
    }

    pub fn title(&self, id: LabelId) -> &str {
        &self.titles[id.index()]
    }

    /// All K continuations in label order: `" " + title + "\n"`, or with the `label_tokens`
    /// switch each label's token [`Renderer::label_token`] (the title follows it in the text).
    pub fn continuations(&self) -> Vec<String> {
        if self.switches.label_tokens {
            self.codes.iter().map(|c| label_token(c)).collect()
        } else {
            self.titles.iter().map(|t| format!(" {t}\n")).collect()
        }
    }

    /// The text of label `id`'s own token under the `label_tokens` switch: `<|label:CODE|>`.
    pub fn label_token(&self, id: LabelId) -> String {
        label_token(&self.codes[id.index()])
    }

    /// The context of a record line (`YEAR (EDU):`, or `YEAR:` without the education switch
    /// or when the year's education is missing).
    pub fn record_prefix(&self, year: i32, education: Option<Education>) -> String {
        let year = year.to_string();
        match education.filter(|_| self.switches.education) {
            Some(e) => fill(
                &self.template.record_prefix,
                &[
                    ("year", &year),
                    ("education", self.template.education_phrase(e)),
                ],
            ),
            None => fill(
                &self.template.record_prefix_no_education,
                &[("year", &year)],
            ),
        }
    }

    /// The demographics line: missing values are left out (see
    /// [`Template::demographics_line_no_region`]).
    fn demographics(
        &self,
        gender: Option<&str>,
        race: Option<&str>,
        region: Option<&str>,
    ) -> String {
        let t = self.template;
        let word = |map, v: Option<&str>| v.map(|v| Template::wording(map, v)).unwrap_or_default();
        let line = fill(
            if region.is_some() {
                &t.demographics_line
            } else {
                &t.demographics_line_no_region
            },
            &[
                ("gender", &word(&t.gender, gender)),
                ("race", &word(&t.race, race)),
                ("region", &word(&t.region, region)),
            ],
        );
        close_up(&line)
    }

    /// Whether the records of `person` are written with education (the switch is on and at
    /// least one year's education is known).
    fn with_education(&self, person: &Person) -> bool {
        self.switches.education && person.records.iter().any(|r| r.education.is_some())
    }

    /// The header lines (everything before the first record), each ending with `\n`.
    pub fn header(&self, person: &Person) -> String {
        let t = self.template;
        let mut s = String::new();
        if self.switches.dataset_line {
            s += &fill(&t.dataset_line, &[("dataset", &person.dataset)]);
            s.push('\n');
        }
        if self.switches.demographics {
            s += &self.demographics(
                person.gender.as_deref(),
                person.race.as_deref(),
                person.region.as_deref(),
            );
            s.push('\n');
        }
        if let (true, Some(b)) = (self.switches.birth_year, person.birth_year) {
            s += &fill(&t.birth_year_line, &[("birth_year", &b.to_string())]);
            s.push('\n');
        }
        s += if self.with_education(person) {
            &t.records_intro
        } else {
            &t.records_intro_no_education
        };
        s.push('\n');
        s
    }

    pub fn render(&self, person: &Person, taxonomy: &Taxonomy) -> Rendered {
        let mut text = self.header(person);
        let with_education = self.with_education(person);
        let mut records = Vec::with_capacity(person.records.len());
        for r in &person.records {
            text += &self.record_prefix(r.year, r.education.filter(|_| with_education));
            let context_end = text.len();
            if self.switches.label_tokens {
                text += &self.label_token(r.label);
            }
            let label_end = text.len();
            text.push(' ');
            text += self.title(r.label);
            text.push('\n');
            records.push(RecordSpan {
                year: r.year,
                label: taxonomy.label(r.label).code.clone(),
                context_end,
                continuation: [
                    context_end,
                    if self.switches.label_tokens {
                        label_end
                    } else {
                        text.len()
                    },
                ],
            });
        }
        text += &self.template.terminator;
        Rendered { text, records }
    }

    /// Reads a rendered text back. Errors name the line and what was expected.
    pub fn parse(&self, text: &str) -> Result<Parsed, String> {
        let t = self.template;
        let body = text
            .strip_suffix(&t.terminator)
            .ok_or_else(|| format!("the text does not end with {:?}", t.terminator))?;
        let mut lines: Vec<&str> = body.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        let mut it = lines.iter().enumerate().peekable();
        let mut p = Parsed {
            dataset: None,
            gender: None,
            race: None,
            region: None,
            birth_year: None,
            records: Vec::new(),
        };
        let unword = |map: &std::collections::BTreeMap<String, String>, s: &str| {
            map.iter()
                .find(|(_, v)| *v == s)
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| s.replace(' ', "_"))
        };
        let expect = |n: usize, what: &str| format!("line {}: expected {what}", n + 1);
        if self.switches.dataset_line {
            let (n, l) = it.next().ok_or("empty text")?;
            let m =
                match_pattern(&t.dataset_line, l).ok_or_else(|| expect(n, "the dataset line"))?;
            p.dataset = m.get("dataset").cloned();
        }
        if self.switches.demographics {
            let (n, l) = it.next().ok_or("text ends in the header")?;
            let m = self
                .match_demographics(l)
                .ok_or_else(|| expect(n, "the demographics line"))?;
            p.gender = m.get("gender").map(|v| unword(&t.gender, v));
            p.race = m.get("race").map(|v| unword(&t.race, v));
            p.region = m.get("region").map(|v| unword(&t.region, v));
        }
        if let Some(m) = it
            .peek()
            .filter(|_| self.switches.birth_year)
            .and_then(|(_, l)| match_pattern(&t.birth_year_line, l))
        {
            p.birth_year = m.get("birth_year").and_then(|v| v.parse().ok());
            it.next();
        }
        let (n, l) = it.next().ok_or("text ends in the header")?;
        let with_education = self.switches.education && *l == t.records_intro;
        if !with_education && *l != t.records_intro_no_education {
            return Err(expect(n, "the records introduction line"));
        }
        let pattern = format!("{} {{title}}", t.record_prefix);
        let pattern_no_education = format!("{} {{title}}", t.record_prefix_no_education);
        for (n, l) in it {
            let (line, token) = if self.switches.label_tokens {
                let at = l
                    .find("<|label:")
                    .ok_or_else(|| expect(n, "a record line with a label token"))?;
                let end = l[at..]
                    .find("|>")
                    .ok_or_else(|| expect(n, "a label token ending in `|>`"))?
                    + at
                    + 2;
                (format!("{}{}", &l[..at], &l[end..]), Some(&l[at..end]))
            } else {
                (l.to_string(), None)
            };
            let l = line.as_str();
            // A year whose education is missing is written without it.
            let m = with_education
                .then(|| match_pattern(&pattern, l))
                .flatten()
                .or_else(|| match_pattern(&pattern_no_education, l))
                .ok_or_else(|| expect(n, "a record line"))?;
            let year = m["year"].parse().map_err(|_| expect(n, "a year"))?;
            let label = *self
                .by_title
                .get(&m["title"])
                .ok_or_else(|| expect(n, &format!("a label title, found {:?}", m["title"])))?;
            if let Some(tok) = token
                && tok != self.label_token(label)
            {
                return Err(expect(
                    n,
                    &format!("the label token of {:?}, found {tok}", self.title(label)),
                ));
            }
            let education = match m.get("education") {
                Some(e) => Some(
                    *self
                        .by_phrase
                        .get(e)
                        .ok_or_else(|| expect(n, &format!("an education phrase, found {e:?}")))?,
                ),
                None => None,
            };
            p.records.push((year, label, education));
        }
        Ok(p)
    }

    /// Matches a demographics line, trying the variants with missing values. The text alone
    /// cannot always tell a lone gender from a lone race: a value the template words as a
    /// gender (or `male`/`female`) is read as the gender, any other as the race.
    fn match_demographics(&self, line: &str) -> Option<HashMap<String, String>> {
        let t = self.template;
        let is_gender = |v: &str| {
            ["male", "female"].contains(&v)
                || t.gender.values().any(|w| w == v)
                || t.gender.contains_key(v)
        };
        for base in [&t.demographics_line, &t.demographics_line_no_region] {
            let without = |drop: &[&str]| {
                let vars: Vec<(&str, &str)> = drop.iter().map(|d| (*d, "")).collect();
                match_pattern(&close_up(&fill(base, &vars)), line)
            };
            let full = match_pattern(base, line).filter(|m| m.values().all(|v| !v.is_empty()));
            let no_gender = without(&["gender"]);
            let no_race = without(&["race"]);
            if let Some(m) = &full
                && (m.get("gender").is_none_or(|g| is_gender(g))
                    || (no_gender.is_none() && no_race.is_none()))
            {
                return full;
            }
            match (no_gender, no_race) {
                (Some(a), Some(b)) => {
                    let lone_gender = b.get("gender").is_some_and(|g| is_gender(g));
                    return Some(if lone_gender { b } else { a });
                }
                (Some(m), None) | (None, Some(m)) => return Some(m),
                (None, None) => {}
            }
            if let Some(m) = without(&["gender", "race"]) {
                return Some(m);
            }
        }
        None
    }
}

/// Closes up the doubled spaces a removed placeholder leaves (and a space before the final
/// period).
fn close_up(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        if c == '.' && out.ends_with(' ') {
            out.pop();
        }
        out.push(c);
    }
    out
}
