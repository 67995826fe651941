//! values.yaml, values.schema.json and the READMEs (README.md, README.en.md) of the chart must agree.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs;

use chart_values::{chart_dir, default_matches, ReadmeTables, ValuesDoc};

fn values_doc() -> ValuesDoc {
    let text = fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    ValuesDoc::parse(&text).unwrap_or_else(|e| panic!("values.yaml: {e}"))
}

#[test]
fn values_schema_json_is_generated_from_values_yaml() {
    let path = chart_dir().join("values.schema.json");
    let generated = format!("{}\n", serde_json::to_string_pretty(&values_doc().json_schema()).expect("json"));
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        fs::write(&path, &generated).expect("write values.schema.json");
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "charts/citus/values.schema.json is not what values.yaml generates; run `cargo xtask schema` (UPDATE_SCHEMA=1 cargo test -p chart-values)"
    );
}

#[test]
fn readme_tables_and_values_yaml_agree_on_keys_and_defaults() {
    let problems: Vec<String> = ["README.md", "README.en.md"].into_iter().flat_map(readme_problems).collect();
    assert!(problems.is_empty(), "the READMEs and values.yaml disagree:\n{}", problems.join("\n"));
}

/// Where one README's parameter tables and values.yaml disagree on keys or defaults.
fn readme_problems(name: &str) -> Vec<String> {
    let doc = values_doc();
    let readme = fs::read_to_string(chart_dir().join(name)).unwrap_or_else(|e| panic!("charts/citus/{name}: {e}"));
    let rows = ReadmeTables::parse(&readme).unwrap_or_else(|e| panic!("{name}: {e}"));
    let in_readme: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let in_values: BTreeSet<&str> = doc.params.iter().map(|p| p.key.as_str()).collect();
    let mut problems: Vec<String> = Vec::new();
    problems.extend(in_values.difference(&in_readme).map(|k| format!("{k}: in values.yaml, missing from {name}")));
    problems
        .extend(in_readme.difference(&in_values).map(|k| format!("{k}: in {name}, not a parameter of values.yaml")));
    for row in &rows {
        if let Some(param) = doc.param(&row.key) {
            if !default_matches(&row.default_text, &param.default) {
                problems.push(format!(
                    "{} ({name} line {}): default `{}`, values.yaml {}",
                    row.key, row.line, row.default_text, param.default
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    problems.extend(
        rows.iter().filter(|r| !seen.insert(r.key.as_str())).map(|r| format!("{}: listed twice in {name}", r.key)),
    );
    problems
}
