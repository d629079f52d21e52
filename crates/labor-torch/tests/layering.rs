//! The workspace's layering: no model crate depends on another (their shared pieces live below
//! them, in labor-torch, labor-text, labor-gguf and labor-data).

use std::path::Path;

/// The `labor-*` crates named in the `[dependencies]` table of a crate's Cargo.toml.
fn labor_dependencies(krate: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("labor-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn no_model_crate_depends_on_another() {
    let models = ["labor-lm", "labor-career", "labor-baselines", "labor-synth"];
    for m in models {
        let deps = labor_dependencies(m);
        assert!(
            !deps.is_empty(),
            "{m}: no labor dependency found; is the path right?"
        );
        for other in models.iter().filter(|o| **o != m) {
            assert!(
                !deps.iter().any(|d| d == other),
                "{m} depends on {other}: shared pieces belong in a crate below both"
            );
        }
    }
    // The building blocks depend on nothing above them.
    for base in ["labor-torch", "labor-gguf", "labor-text"] {
        for d in labor_dependencies(base) {
            assert!(
                ["labor-data", "labor-gguf"].contains(&d.as_str()),
                "{base} depends on {d}"
            );
        }
    }
}
