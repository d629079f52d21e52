//! Splits by person: proportions, determinism, stability when persons are removed.

use labor_data::{Split, SplitSpec};

fn ids(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                ["NLSY79", "NLSY97", "PSID"][i % 3].to_string(),
                format!("{}", 100_000 + i * 7),
            )
        })
        .collect()
}

#[test]
fn proportions_on_100k_persons_are_within_half_a_point() {
    let spec = SplitSpec::default();
    let persons = ids(100_000);
    let mut n = [0usize; 3];
    for (d, p) in &persons {
        n[spec.assign(d, p) as usize] += 1;
    }
    let share = n.map(|c| c as f64 / persons.len() as f64);
    for (got, want) in share.iter().zip([0.7, 0.1, 0.2]) {
        assert!((got - want).abs() < 0.005, "shares {share:?}");
    }
}

#[test]
fn same_seed_same_assignment_and_stable_under_removal() {
    let spec = SplitSpec::default();
    let persons = ids(20_000);
    let first: Vec<Split> = persons.iter().map(|(d, p)| spec.assign(d, p)).collect();
    let second: Vec<Split> = persons.iter().map(|(d, p)| spec.assign(d, p)).collect();
    assert_eq!(first, second);
    // Remove every tenth person: the others keep their split.
    let kept: Vec<(usize, &(String, String))> = persons
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .collect();
    assert_eq!(kept.len(), 18_000);
    for (i, (d, p)) in kept {
        assert_eq!(spec.assign(d, p), first[i]);
    }
    // A different seed moves persons.
    let other = SplitSpec { seed: 1, ..spec };
    let moved = persons
        .iter()
        .zip(&first)
        .filter(|((d, p), s)| other.assign(d, p) != **s)
        .count();
    assert!(moved > 5_000, "{moved}");
}
