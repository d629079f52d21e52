//! Writes a large, valid, pseudo-random panel CSV for benchmarks (not a labor-market model:
//! the synthetic world with exact probabilities is `labor synth`).
//!
//! cargo run --release -p labor-data --example make_panel -- ROWS OUT.csv

use std::io::{BufWriter, Write};

use labor_data::{Education, Taxonomy};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let out = args.get(2).map(String::as_str).unwrap_or("panel.csv");
    let tax = Taxonomy::embedded_default();
    let codes: Vec<&str> = tax.labels().iter().map(|l| l.code.as_str()).collect();
    let mut state: u64 = 0x2406_1797_2024;
    let mut rnd = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    writeln!(
        w,
        "dataset,person_id,year,label,education,gender,race,region,birth_year,weight"
    )?;
    let (mut written, mut person) = (0usize, 0u64);
    while written < rows {
        person += 1;
        let dataset = ["NLSY79", "NLSY97", "PSID"][rnd(3) as usize];
        let gender = ["female", "male"][rnd(2) as usize];
        let race = ["white", "black", "hispanic", "asian", "other"][rnd(5) as usize];
        let region = ["northeast", "northcentral", "south", "west"][rnd(4) as usize];
        let birth = 1950 + rnd(40) as i32;
        let n = (10 + rnd(21) as usize).min(rows - written);
        let mut year = birth + 16 + rnd(6) as i32;
        let mut label = rnd(codes.len() as u64) as usize;
        let mut edu = rnd(3) as usize;
        for _ in 0..n {
            if rnd(4) == 0 {
                label = rnd(codes.len() as u64) as usize;
            }
            if rnd(8) == 0 && edu + 1 < Education::ALL.len() {
                edu += 1;
            }
            let weight = 500.0 + rnd(200_000) as f64 / 100.0;
            writeln!(
                w,
                "{dataset},{person},{year},{},{},{gender},{race},{region},{birth},{weight}",
                codes[label],
                Education::ALL[edu].as_str()
            )?;
            year += 1 + (rnd(5) == 0) as i32;
        }
        written += n;
    }
    w.flush()?;
    eprintln!("wrote {out}: {written} rows, {person} persons");
    Ok(())
}
