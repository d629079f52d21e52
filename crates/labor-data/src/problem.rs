//! Validation problems: what was wrong, where, and what was expected.

use std::fmt;

/// How a location counts records: physical lines of a text file, or rows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A 1-based line of a text file (a CSV header is line 1).
    Line,
    /// A 1-based data row of a table without lines (Parquet).
    Row,
}

/// Where a problem was found. The core crates do not know file paths; the caller (the CLI)
/// fills `file` in before printing when it is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    pub unit: Unit,
    pub index: u64,
}

impl Location {
    pub fn line(index: u64) -> Self {
        Self {
            file: None,
            unit: Unit::Line,
            index,
        }
    }
    pub fn row(index: u64) -> Self {
        Self {
            file: None,
            unit: Unit::Row,
            index,
        }
    }
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        match self.unit {
            Unit::Line => write!(f, "line {}", self.index),
            Unit::Row => write!(f, "row {}", self.index),
        }
    }
}

/// One problem in an input: location, field, the value found and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `None` for problems about a whole input (e.g. a missing column).
    pub location: Option<Location>,
    pub field: String,
    pub found: String,
    pub expected: String,
}

impl Problem {
    pub fn at(
        location: Location,
        field: impl Into<String>,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            location: Some(location),
            field: field.into(),
            found: found.into(),
            expected: expected.into(),
        }
    }

    pub fn global(
        field: impl Into<String>,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            location: None,
            field: field.into(),
            found: found.into(),
            expected: expected.into(),
        }
    }

    /// Sets the file name of the location when it has none yet.
    pub fn with_default_file(mut self, file: &str) -> Self {
        match &mut self.location {
            Some(loc) if loc.file.is_none() => loc.file = Some(file.to_string()),
            None => {
                self.location = Some(Location {
                    file: Some(file.to_string()),
                    unit: Unit::Line,
                    index: 0,
                })
            }
            _ => {}
        }
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) if loc.index == 0 => {
                if let Some(file) = &loc.file {
                    write!(f, "{file}: ")?;
                }
            }
            Some(loc) => write!(f, "{loc}: ")?,
            None => {}
        }
        write!(
            f,
            "field `{}`: found {}; expected {}",
            self.field,
            show(&self.found),
            self.expected
        )
    }
}

fn show(value: &str) -> String {
    if value.is_empty() {
        "an empty value".to_string()
    } else {
        format!("{value:?}")
    }
}

/// A list of problems as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s); first: {}", .0.len(), .0.first().map(|p| p.to_string()).unwrap_or_default())]
pub struct Problems(pub Vec<Problem>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_field_value_and_expectation() {
        let p = Problem::at(Location::line(7), "year", "19x2", "an integer year")
            .with_default_file("panel.csv");
        assert_eq!(
            p.to_string(),
            "panel.csv: line 7: field `year`: found \"19x2\"; expected an integer year"
        );
        let g = Problem::global("columns", "", "a `year` column").with_default_file("p.parquet");
        assert_eq!(
            g.to_string(),
            "p.parquet: field `columns`: found an empty value; expected a `year` column"
        );
    }
}
