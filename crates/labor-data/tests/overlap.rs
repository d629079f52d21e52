//! Held-out persons found in training corpora: by (dataset, person id), and by content when
//! the same persons come back under another dataset name.

use labor_data::overlap::{HeldOut, describe};
use labor_data::{Panel, Person, Record, Split, SplitSpec, Taxonomy};

fn panel(dataset: &str, n: usize, shift: usize) -> Panel {
    let taxonomy = Taxonomy::embedded_default();
    let ids: Vec<_> = taxonomy.ids().collect();
    let persons = (0..n)
        .map(|i| Person {
            dataset: dataset.into(),
            person_id: format!("{}", 1000 + i),
            gender: Some(["male", "female"][i % 2].into()),
            race: None,
            region: None,
            birth_year: Some(1960 + (i % 7) as i32),
            split: None,
            records: (0..4)
                .map(|y| Record {
                    year: 1990 + y,
                    label: ids[(i * 5 + y as usize + shift) % ids.len()],
                    education: None,
                    weight: None,
                })
                .collect(),
        })
        .collect();
    Panel { taxonomy, persons }
}

const USED: [Split; 1] = [Split::Train];

#[test]
fn the_same_panel_renamed_is_found_by_content() {
    let spec = SplitSpec::default();
    let survey = panel("kw", 300, 0);
    let mut held = HeldOut::new();
    held.add(&survey, &spec);
    let n_held = survey
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) != Split::Train)
        .count();
    assert_eq!(held.len(), n_held);
    assert!(n_held > 40, "{n_held}");

    // Listed again under its own name: its training persons are not held out.
    assert!(held.find(&survey, &spec, &USED).is_empty());
    // Under another name the hash puts some held-out persons in the training split.
    let renamed = panel("kw-pretrain", 300, 0);
    let found = held.find(&renamed, &spec, &USED);
    assert!(!found.is_empty());
    for o in &found {
        assert!(!o.same_key);
        assert_eq!(o.person.1, o.held.1);
        assert_eq!(o.held.0, "kw");
        assert_ne!(o.held.2, Split::Train);
    }
    // Every renamed training person that is held out in `kw` is found, and nothing else.
    let want = renamed
        .persons
        .iter()
        .filter(|p| {
            p.split_or(&spec) == Split::Train && spec.assign("kw", &p.person_id) != Split::Train
        })
        .count();
    assert_eq!(found.len(), want);
    let msg = describe("pretrain.parquet", &found);
    assert!(msg.starts_with("pretrain.parquet: "), "{msg}");
    assert!(msg.contains(&found[0].person.1), "{msg}");
}

#[test]
fn other_persons_with_the_same_ids_are_not_overlaps() {
    let spec = SplitSpec::default();
    let mut held = HeldOut::new();
    held.add(&panel("kw", 300, 0), &spec);
    // Same person ids, other careers: different persons.
    let other = panel("other", 300, 1);
    assert!(held.find(&other, &spec, &USED).is_empty());
}

#[test]
fn the_same_key_in_a_used_split_is_found() {
    let spec = SplitSpec::default();
    let survey = panel("kw", 200, 0);
    let mut held = HeldOut::new();
    held.add(&survey, &spec);
    // A stage that also trains on validation persons (CAREER's pretraining early-stops on
    // them) holds the survey's own validation persons when it reads the survey.
    let found = held.find(&survey, &spec, &[Split::Train, Split::Valid]);
    let valid = survey
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) == Split::Valid)
        .count();
    assert_eq!(found.len(), valid);
    assert!(found.iter().all(|o| o.same_key && o.held.2 == Split::Valid));
    // An explicit split that moves a test person into training is found by its key.
    let mut moved = survey.clone();
    let t = moved
        .persons
        .iter_mut()
        .find(|p| p.split_or(&spec) == Split::Test)
        .unwrap();
    t.split = Some(Split::Train);
    let id = t.person_id.clone();
    let found = held.find(&moved, &spec, &USED);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].person, ("kw".to_string(), id));
    assert_eq!(found[0].held.2, Split::Test);
}
