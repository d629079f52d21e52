//! Education levels: the closed set of values a panel's `education` field may take.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Highest level of education attained at a record's year, in increasing order.
///
/// The panel spelling (`as_str`) is the snake_case token also used by the CAREER file format
/// (`high_school_diploma`, `associates`, `bachelors`, `masters`, `doctorate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Education {
    LessThanHighSchool,
    HighSchoolDiploma,
    SomeCollege,
    Associates,
    Bachelors,
    Masters,
    Professional,
    Doctorate,
}

impl Education {
    pub const ALL: [Education; 8] = [
        Education::LessThanHighSchool,
        Education::HighSchoolDiploma,
        Education::SomeCollege,
        Education::Associates,
        Education::Bachelors,
        Education::Masters,
        Education::Professional,
        Education::Doctorate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Education::LessThanHighSchool => "less_than_high_school",
            Education::HighSchoolDiploma => "high_school_diploma",
            Education::SomeCollege => "some_college",
            Education::Associates => "associates",
            Education::Bachelors => "bachelors",
            Education::Masters => "masters",
            Education::Professional => "professional",
            Education::Doctorate => "doctorate",
        }
    }

    /// The allowed values as one line, for error messages.
    pub fn expected() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
        format!("one of {}", names.join(", "))
    }
}

impl fmt::Display for Education {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Education {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|e| e.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_value_and_is_ordered() {
        for e in Education::ALL {
            assert_eq!(e.as_str().parse::<Education>(), Ok(e));
        }
        assert!(Education::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!("Bachelors".parse::<Education>().is_err());
        assert!("college".parse::<Education>().is_err());
    }
}
