//! The worked import example of docs/import.md (examples/import/) and import problems.

use labor_data::import::{Mapping, import_extract, read_crosswalk};
use labor_data::stats::PanelStats;
use labor_data::{Education, Taxonomy};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/import");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

#[test]
fn worked_example_imports_with_hand_computed_stats() {
    let mapping = Mapping::from_toml(&read("mapping.toml")).unwrap();
    let (panel, report) = import_extract(
        &mapping,
        read_crosswalk(&read("crosswalk.csv"), &Taxonomy::embedded_default()).unwrap(),
        read("extract.csv").as_bytes(),
        Taxonomy::embedded_default(),
    )
    .unwrap();
    // Hand-computed from examples/import/extract.csv (see docs/import.md).
    assert_eq!(report.extract_rows, 6);
    assert_eq!(report.waves_not_interviewed, 2); // person 2 in 1992, person 5 in 1994
    assert_eq!(report.education_carried_forward, 1); // person 5 in 1992
    assert_eq!(report.skipped_unmapped, 0);

    let p1 = &panel.persons[0];
    assert_eq!(
        (p1.gender.as_str(), p1.race.as_str(), p1.region.as_str()),
        ("female", "white", "northcentral")
    );
    assert_eq!(p1.birth_year, Some(1958));
    let codes: Vec<&str> = p1
        .records
        .iter()
        .map(|r| panel.taxonomy.label(r.label).code.as_str())
        .collect();
    assert_eq!(codes, ["41-003", "41-003", "UNEMP", "29-033"]);
    assert_eq!(p1.records[3].education, Education::SomeCollege);
    assert_eq!(p1.records[0].weight, Some(1500.5));
    assert_eq!(
        panel.persons[4].records[2].education,
        Education::HighSchoolDiploma
    );

    let s = PanelStats::compute(&panel);
    assert_eq!(s.persons, 6);
    assert_eq!(s.person_years, 22);
    assert_eq!((s.year_min, s.year_max, s.distinct_years), (1990, 1994, 4));
    assert_eq!((s.records_per_person_min, s.records_per_person_max), (3, 4));
    let special: Vec<(&str, usize)> = s
        .special
        .iter()
        .map(|l| (l.code.as_str(), l.count))
        .collect();
    assert_eq!(special, [("UNEMP", 1), ("NILF", 1), ("EDUC", 2)]);
    assert_eq!(s.labels[0].code, "13-014"); // accountants, 4 person-years
    assert_eq!(s.labels[0].count, 4);
    assert_eq!(s.labels_used, 12);
    assert_eq!((s.annual_pairs, s.annual_label_changes), (11, 5));
    assert_eq!(
        (s.annual_occupation_pairs, s.annual_occupation_changes),
        (7, 2)
    );
    assert!((s.annual_occupation_change_rate - 2.0 / 7.0).abs() < 1e-12);
    let gaps: Vec<(i32, usize)> = s.gaps.iter().map(|(g, n)| (*g, *n)).collect();
    assert_eq!(gaps, [(1, 11), (2, 4), (3, 1)]);
    assert_eq!(s.persons_with_gap, 5);
}

const LONG_MAPPING: &str = r#"
layout = "long"
dataset = "PSID"
missing = ["0", "99"]
[person]
id = "pid"
gender = "sex"
race = "race"
region = "region"
[long]
year = "year"
occupation = "occ"
status = "emp"
education = "educ"
[crosswalk]
codes = { "4720" = "41-003", "3255" = "29-017" }
unmapped = "skip"
[values.education]
"1" = "high_school_diploma"
"2" = "bachelors"
[[status]]
values = ["1"]
label = "occupation"
[[status]]
values = ["3"]
label = "UNEMP"
"#;

#[test]
fn long_layout_with_skipped_codes_counts_them() {
    let extract = "pid,year,sex,race,region,occ,emp,educ\n\
                   10,2001,male,white,west,4720,1,1\n\
                   10,2003,male,white,west,9999,1,1\n\
                   10,2005,male,white,west,0,3,2\n\
                   11,2003,female,black,south,3255,1,2\n";
    let m = Mapping::from_toml(LONG_MAPPING).unwrap();
    let (panel, report) = import_extract(
        &m,
        Default::default(),
        extract.as_bytes(),
        Taxonomy::embedded_default(),
    )
    .unwrap();
    assert_eq!(report.skipped_unmapped, 1);
    assert_eq!(report.skipped_codes.get("9999"), Some(&1));
    assert_eq!(panel.n_records(), 3);
    assert_eq!(panel.persons[0].records[1].year, 2005);
}

#[test]
fn import_problems_name_line_and_extract_column() {
    let m = Mapping::from_toml(&LONG_MAPPING.replace("unmapped = \"skip\"", "")).unwrap();
    let extract = "pid,year,sex,race,region,occ,emp,educ\n\
                   10,2001,male,white,west,9999,1,1\n\
                   10,2002,male,white,west,4720,5,1\n\
                   10,2003,male,white,west,4720,1,7\n\
                   10,20x4,male,white,west,4720,1,1\n";
    let err = import_extract(
        &m,
        Default::default(),
        extract.as_bytes(),
        Taxonomy::embedded_default(),
    )
    .unwrap_err()
    .0;
    let got: Vec<(u64, &str, &str)> = err
        .iter()
        .map(|p| {
            (
                p.location.as_ref().unwrap().index,
                p.field.as_str(),
                p.found.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, "occ (2001)", "9999"),
            (3, "emp (2002)", "5"),
            (4, "educ (2003)", "7"),
            (5, "year", "20x4")
        ]
    );
    // Mapping errors are caught before reading the extract.
    assert!(Mapping::from_toml("layout = \"wide\"\ndataset = \"x\"\n").is_err());
    let bad_key = LONG_MAPPING.replace("[long]", "[long]\nwage = \"w\"");
    assert!(Mapping::from_toml(&bad_key).unwrap_err().contains("wage"));
    let bad_edu = LONG_MAPPING.replace("\"bachelors\"", "\"college\"");
    assert!(
        Mapping::from_toml(&bad_edu)
            .unwrap_err()
            .contains("college")
    );
}
