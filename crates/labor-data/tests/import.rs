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
        (
            p1.gender.as_deref(),
            p1.race.as_deref(),
            p1.region.as_deref()
        ),
        (Some("female"), Some("white"), Some("northcentral"))
    );
    assert_eq!(p1.birth_year, Some(1958));
    let codes: Vec<&str> = p1
        .records
        .iter()
        .map(|r| panel.taxonomy.label(r.label).code.as_str())
        .collect();
    assert_eq!(codes, ["41-003", "41-003", "UNEMP", "29-033"]);
    assert_eq!(p1.records[3].education, Some(Education::SomeCollege));
    assert_eq!(p1.records[0].weight, Some(1500.5));
    assert_eq!(
        panel.persons[4].records[2].education,
        Some(Education::HighSchoolDiploma)
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

/// A teaching extract with only an id, sex, race and one activity code per year: the mapping
/// leaves out region and education (the panel has none; nothing invented), may give a constant
/// (`region = { value = ... }`), and a negative race code is a missing value.
#[test]
fn an_extract_with_few_covariates_imports_without_inventing_any() {
    let extract = "id,sex,race,occ1990,occ1991\n\
                   1,2,1,4720,4720\n\
                   2,1,-3,3255,-4\n";
    let mapping = |extra: &str| {
        Mapping::from_toml(&format!(
            r#"layout = "wide"
dataset = "TEACH"
negative_is_missing = true
[person]
id = "id"
gender = "sex"
race = "race"
{extra}
[[wave]]
year = 1990
occupation = "occ1990"
[[wave]]
year = 1991
occupation = "occ1991"
[crosswalk]
codes = {{ "4720" = "41-003", "3255" = "29-033" }}
[values.gender]
"1" = "male"
"2" = "female"
[values.race]
"1" = "white"
"#
        ))
        .unwrap()
    };
    let import = |m: &Mapping| {
        import_extract(
            m,
            Default::default(),
            extract.as_bytes(),
            Taxonomy::embedded_default(),
        )
        .unwrap()
    };
    let (panel, report) = import(&mapping(""));
    assert_eq!(report.person_years, 3);
    assert_eq!(report.waves_not_interviewed, 1);
    let (a, b) = (&panel.persons[0], &panel.persons[1]);
    assert_eq!(
        (a.gender.as_deref(), a.race.as_deref()),
        (Some("female"), Some("white"))
    );
    assert_eq!(
        (b.gender.as_deref(), b.race.as_deref()),
        (Some("male"), None)
    );
    assert!(
        panel
            .persons
            .iter()
            .all(|p| p.region.is_none() && p.birth_year.is_none())
    );
    assert!(
        panel
            .persons
            .iter()
            .all(|p| p.records.iter().all(|r| r.education.is_none()))
    );
    let mut csv = Vec::new();
    labor_data::formats::csv::write_panel_csv(&panel, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("dataset,person_id,year,label,gender,race\n"),
        "{csv}"
    );

    // A constant region for everyone.
    let (panel, _) = import(&mapping("region = { value = \"south\" }"));
    assert!(
        panel
            .persons
            .iter()
            .all(|p| p.region.as_deref() == Some("south"))
    );
}

/// An exported extract imports back exactly, in both styles, with what the synthetic worlds do
/// not have: missing covariates (`NA`), missing education in one year, weights, gaps.
#[test]
fn exported_extracts_round_trip_missing_values_and_weights() {
    use labor_data::export::{Style, export_extract};
    let text = "\
dataset,person_id,year,label,education,gender,race,region,birth_year,weight
D,a,1990,41-003,high_school_diploma,female,NA,south,1960,1.5
D,a,1992,UNEMP,NA,female,NA,south,1960,2.25
D,a,1993,EDUC,some_college,female,NA,south,1960,0.125
D,b,1991,NILF,bachelors,NA,white,NA,NA,3
D,b,1994,29-033,bachelors,NA,white,NA,NA,3
";
    let (panel, _) = labor_data::formats::csv::read_panel_csv(
        text.as_bytes(),
        Taxonomy::embedded_default(),
        Default::default(),
    )
    .unwrap();
    for style in [Style::Nls, Style::Psid] {
        let files = export_extract(&panel, style).unwrap();
        let mapping = Mapping::from_toml(&files["mapping.toml"]).unwrap();
        let crosswalk =
            read_crosswalk(&files["crosswalk.csv"], &Taxonomy::embedded_default()).unwrap();
        let (back, report) = import_extract(
            &mapping,
            crosswalk,
            files["extract.csv"].as_bytes(),
            Taxonomy::embedded_default(),
        )
        .unwrap();
        assert_eq!(back, panel, "{style:?}\n{}", files["extract.csv"]);
        // 2 persons × 5 waves (1990-1994), 5 records: 5 waves not interviewed.
        assert_eq!(report.waves_not_interviewed, 5, "{style:?}");
        assert_eq!(report.education_left_missing, 1, "{style:?}");
    }
    // The birth year is written with two digits only when every one fits.
    let files = export_extract(&panel, Style::Nls).unwrap();
    assert!(files["mapping.toml"].contains("birth_year_offset = 1900"));
    assert!(
        files["extract.csv"]
            .lines()
            .nth(1)
            .unwrap()
            .contains(",60,")
    );
}
