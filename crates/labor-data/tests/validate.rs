//! Panel validation on CSV and Parquet inputs: planted defects are each reported with their
//! line/row and field; clean panels round-trip.

use labor_data::formats::csv::{read_panel_csv, write_panel_csv};
use labor_data::formats::parquet::{read_panel_parquet, write_panel_parquet};
use labor_data::problem::Unit;
use labor_data::{BuildOptions, Education, Panel, Problem, Taxonomy};

const CLEAN: &str = "\
dataset,person_id,year,label,education,gender,race,region,birth_year,weight
NLSY79,1,1982,41-003,high_school_diploma,female,black,northcentral,1962,1.5
NLSY79,1,1983,UNEMP,high_school_diploma,female,black,northcentral,1962,1.5
NLSY79,1,1986,29-033,associates,female,black,northcentral,1962,1.25
NLSY79,2,1990,53-008,less_than_high_school,male,white,south,1960,2
NLSY79,2,1989,53-008,less_than_high_school,male,white,south,1960,2
PSID,1,2001,EDUC,some_college,male,hispanic,west,1983,0.5
";

/// The clean panel with six planted defects, one per line 2..=7 of the data.
const DEFECTS: &str = "\
dataset,person_id,year,label,education,gender,race,region,birth_year,weight
NLSY79,1,1982,99-999,high_school_diploma,female,black,northcentral,1962,1.5
NLSY79,1,1982,UNEMP,high_school_diploma,female,black,northcentral,1962,1.5
NLSY79,1,19x6,29-033,associates,female,black,northcentral,1962,1.25
NLSY79,2,1990,53-008,less_than_high_school,,white,south,1960,2
NLSY79,2,1989,53-008,college,male,white,south,1960,2
PSID,,2001,EDUC,some_college,male,hispanic,west,1983,0.5
";

fn read_csv(text: &str) -> Result<Panel, Vec<Problem>> {
    read_panel_csv(
        text.as_bytes(),
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .map(|(p, _)| p)
    .map_err(|e| e.0)
}

#[test]
fn clean_panel_is_valid_sorted_by_year() {
    let p = read_csv(CLEAN).unwrap();
    assert_eq!(p.persons.len(), 3);
    assert_eq!(p.n_records(), 6);
    let years: Vec<i32> = p.persons[1].records.iter().map(|r| r.year).collect();
    assert_eq!(years, [1989, 1990], "records are sorted by year");
    assert_eq!(
        p.persons[0].records[2].education,
        Some(Education::Associates)
    );
    assert_eq!(p.persons[0].birth_year, Some(1962));
    assert_eq!(p.persons[2].dataset, "PSID");
}

#[test]
fn every_planted_defect_is_reported_with_line_and_field() {
    let problems = read_csv(DEFECTS).unwrap_err();
    let found: Vec<(u64, &str)> = problems
        .iter()
        .map(|p| {
            let loc = p.location.as_ref().expect("located");
            assert_eq!(loc.unit, Unit::Line);
            (loc.index, p.field.as_str())
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "label"),     // unknown label
            (3, "year"),      // duplicate person-year (with line 2)
            (4, "year"),      // non-numeric year
            (5, "gender"),    // missing static field
            (6, "education"), // education outside the allowed set
            (7, "person_id"), // empty person id
        ],
        "{problems:#?}"
    );
    assert_eq!(problems[0].found, "99-999");
    assert!(problems[1].expected.contains("line 2"), "{}", problems[1]);
    assert_eq!(problems[2].found, "19x6");
    assert_eq!(problems[4].found, "college");
    assert!(problems[4].expected.contains("bachelors"));
}

#[test]
fn unknown_labels_can_be_added_explicitly_and_are_reported() {
    let (p, report) = read_panel_csv(
        DEFECTS
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .as_bytes(),
        Taxonomy::embedded_default(),
        BuildOptions {
            add_unknown_labels: true,
        },
    )
    .unwrap();
    assert_eq!(report.added_labels, ["99-999"]);
    let label = p.taxonomy.label(p.persons[0].records[0].label);
    assert_eq!(
        (label.code.as_str(), label.group.as_str()),
        ("99-999", "Unknown")
    );
}

#[test]
fn inconsistent_static_fields_and_bad_weights_are_problems() {
    let text = "\
dataset,person_id,year,label,education,gender,race,region,birth_year,weight
D,1,2000,41-003,bachelors,female,white,west,1970,1
D,1,2001,41-003,bachelors,male,white,west,1971,-1
D,2,2001,41-003,bachelors,male,white,west,2005,1
";
    let problems = read_csv(text).unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["weight", "gender", "birth_year", "birth_year"],
        "{problems:#?}"
    );
    assert!(problems[1].expected.contains("line 2"), "{}", problems[1]);
}

#[test]
fn header_problems_name_the_columns() {
    let problems = read_csv("dataset,person_id,yr,label,education,gender,race\nD,1,2000,x,y,z,w\n")
        .unwrap_err();
    let found: Vec<&str> = problems.iter().map(|p| p.found.as_str()).collect();
    // `yr` is not a column and `year` is missing; `region` (a covariate) may be absent.
    assert_eq!(found, ["yr", ""]);
    assert!(problems[1].expected.contains("`year`"));
    let wrong_width =
        read_csv("dataset,person_id,year,label,education,gender,race,region\nD,1,2000\n")
            .unwrap_err();
    assert_eq!(wrong_width[0].field, "row");
}

#[test]
fn csv_and_parquet_round_trip() {
    let p = read_csv(CLEAN).unwrap();
    let mut csv = Vec::new();
    write_panel_csv(&p, &mut csv).unwrap();
    let back = read_csv(std::str::from_utf8(&csv).unwrap()).unwrap();
    assert_eq!(back, p);
    let mut pq = Vec::new();
    write_panel_parquet(&p, &mut pq).unwrap();
    let (back, _) = read_panel_parquet(
        bytes::Bytes::from(pq),
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(back, p);
}

#[test]
fn parquet_problems_carry_row_numbers() {
    // Build a panel, write it, then corrupt nothing but read with a taxonomy lacking a label.
    let p = read_csv(CLEAN).unwrap();
    let mut pq = Vec::new();
    write_panel_parquet(&p, &mut pq).unwrap();
    let small = Taxonomy::from_csv("code,title,group\n41-003,Cashiers,Sales\n".as_bytes()).unwrap();
    let problems = read_panel_parquet(bytes::Bytes::from(pq), small, BuildOptions::default())
        .unwrap_err()
        .0;
    let rows: Vec<(Unit, u64)> = problems
        .iter()
        .map(|p| {
            let l = p.location.as_ref().unwrap();
            (l.unit, l.index)
        })
        .collect();
    // Rows in written order: person 1 (3 rows), person 2 sorted by year, then PSID.
    assert_eq!(rows, [(Unit::Row, 3), (Unit::Row, 4), (Unit::Row, 5)]);
    assert!(
        read_panel_parquet(
            bytes::Bytes::from_static(b"not parquet"),
            Taxonomy::embedded_default(),
            BuildOptions::default()
        )
        .is_err()
    );
}

/// An input kept in `fuzz/regressions/parquet/`.
fn parquet_regression(name: &str) -> bytes::Bytes {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/parquet"
    );
    bytes::Bytes::from(std::fs::read(format!("{dir}/{name}")).unwrap())
}

/// The problems of reading `bytes` as a Parquet panel (it must be invalid).
fn panel_problems(bytes: bytes::Bytes) -> labor_data::Problems {
    read_panel_parquet(bytes, Taxonomy::embedded_default(), BuildOptions::default()).unwrap_err()
}

/// A Parquet file whose metadata puts a column chunk at a negative offset (found by fuzzing;
/// the `parquet` crate panics on it) is a problem naming the chunk, for panels and predictions.
#[test]
fn parquet_with_a_column_chunk_outside_the_file_is_a_problem() {
    let bytes = parquet_regression("negative-column-chunk-offset.parquet");
    let e = panel_problems(bytes.clone());
    assert!(
        e.0[0].found.contains("does not lie inside the file"),
        "{:?}",
        e.0
    );
    let e = labor_data::predictions::read_predictions(bytes).unwrap_err();
    assert!(e.contains("does not lie inside the file"), "{e}");
}

/// A data page whose run-length header is longer than the format allows (found by fuzzing;
/// the `parquet` crate panics on it even in release builds) is a problem, not a crash. (The
/// page-header check now refuses this file before decoding, at a corrupted header of another
/// column; `guarded` stays for panics no header check can foresee.)
#[test]
fn parquet_whose_data_pages_panic_the_library_is_a_problem() {
    let bytes = parquet_regression("overlong-rle-run-header.parquet");
    let e = panel_problems(bytes.clone());
    assert!(
        e.0[0].found.contains("malformed Parquet data") || e.0[0].found.contains("page 0:"),
        "{:?}",
        e.0
    );
    for r in [
        labor_data::predictions::read_predictions(bytes.clone()).map(|_| ()),
        labor_data::predictions::read_logp(bytes.clone()).map(|_| ()),
        labor_data::predictions::read_full_by_class(bytes, &[], 2, |_| Some(0)).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(
            e.contains("malformed Parquet data") || e.contains("page 0:"),
            "{e}"
        );
    }
}

/// A footer whose unknown field holds a list of billions of booleans (found by fuzzing: the
/// `parquet` crate's Thrift skipper spends no byte per boolean and ran past libFuzzer's 20 s
/// limit) is refused by our footer check before the library parses it.
#[test]
fn parquet_whose_footer_would_keep_the_library_busy_is_refused() {
    let bytes = parquet_regression("footer-list-of-billions-of-booleans.parquet");
    let e = panel_problems(bytes.clone());
    assert!(
        e.0[0]
            .found
            .starts_with("Parquet metadata: the footer metadata"),
        "{:?}",
        e.0
    );
    for r in [
        labor_data::predictions::read_predictions(bytes.clone()).map(|_| ()),
        labor_data::predictions::read_logp(bytes).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(
            e.starts_with("Parquet metadata: the footer metadata"),
            "{e}"
        );
    }
}

/// A panel may lack covariate columns, and have `NA` (or `.`) for some values: nothing is
/// invented in their place, an empty cell is still a problem, and every format writes the
/// panel back with the absent columns left out and the missing values kept missing.
#[test]
fn covariates_may_be_absent_or_missing_and_round_trip_in_every_format() {
    let text = "\
dataset,person_id,year,label,gender,race
D,1,2000,41-003,female,NA
D,1,2001,UNEMP,NA,black
D,2,2001,41-003,.,NA
";
    let p = read_csv(text).unwrap();
    assert_eq!(p.persons.len(), 2);
    let (a, b) = (&p.persons[0], &p.persons[1]);
    // The first known value of a static covariate is the person's; NA never conflicts.
    assert_eq!(
        (a.gender.as_deref(), a.race.as_deref()),
        (Some("female"), Some("black"))
    );
    assert_eq!((b.gender.as_deref(), b.race.as_deref()), (None, None));
    assert_eq!((a.region.as_deref(), a.birth_year), (None, None));
    assert!(a.records.iter().all(|r| r.education.is_none()));
    use labor_data::Covariate;
    let has: Vec<bool> = Covariate::ALL.iter().map(|c| p.has_covariate(*c)).collect();
    assert_eq!(has, [true, true, false, false, false]);

    let mut csv = Vec::new();
    write_panel_csv(&p, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("dataset,person_id,year,label,gender,race\n"),
        "absent covariates are not written: {csv}"
    );
    assert!(csv.contains("D,2,2001,41-003,NA,NA\n"), "{csv}");
    assert_eq!(read_csv(&csv).unwrap(), p);
    let mut pq = Vec::new();
    write_panel_parquet(&p, &mut pq).unwrap();
    let (back, _) = read_panel_parquet(
        bytes::Bytes::from(pq),
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(back, p);

    // An empty covariate cell is a problem naming the way to say "missing".
    let e = read_csv("dataset,person_id,year,label,region\nD,1,2000,41-003,\n").unwrap_err();
    assert_eq!(e[0].field, "region");
    assert!(e[0].expected.contains("NA when it is missing"), "{}", e[0]);
    // A conflicting second known value is still a problem.
    let e = read_csv("dataset,person_id,year,label,gender\nD,1,2000,41-003,NA\nD,1,2001,41-003,male\nD,1,2002,41-003,female\n")
        .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].field.as_str(), e[0].found.as_str()),
        ("gender", "female")
    );
}
