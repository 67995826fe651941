//! The parameter tables of the chart READMEs (`| 参数 | 描述 | 默认值 |` in README.md,
//! `| Parameter | Description | Default |` in README.en.md).

use serde_json::Value;

use crate::doc::Error;

const HEADERS: [[&str; 3]; 2] = [["参数", "描述", "默认值"], ["Parameter", "Description", "Default"]];

/// One row of a parameter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadmeRow {
    pub key: String,
    pub description: String,
    /// As written, without the backticks.
    pub default_text: String,
    pub line: usize,
}

pub struct ReadmeTables;

impl ReadmeTables {
    /// Every row of every parameter table, in order.
    pub fn parse(markdown: &str) -> Result<Vec<ReadmeRow>, Error> {
        let mut rows = Vec::new();
        let mut in_table = false;
        for (index, line) in markdown.lines().enumerate() {
            let cells = cells(line);
            if cells.len() == 3 && HEADERS.iter().any(|header| cells.iter().zip(header).all(|(c, h)| c == h)) {
                in_table = true;
                continue;
            }
            if !in_table {
                continue;
            }
            if cells.is_empty() {
                in_table = false;
                continue;
            }
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
                continue;
            }
            if cells.len() != 3 {
                return Err(Error::Readme(format!("line {}: a parameter row needs 3 cells: {line}", index + 1)));
            }
            rows.push(ReadmeRow {
                key: unquote(cells[0]).to_owned(),
                description: cells[1].to_owned(),
                default_text: unquote(cells[2]).to_owned(),
                line: index + 1,
            });
        }
        Ok(rows)
    }
}

fn cells(line: &str) -> Vec<&str> {
    let line = line.trim();
    if !line.starts_with('|') || !line.ends_with('|') || line.len() < 2 {
        return Vec::new();
    }
    line[1..line.len() - 1].split('|').map(str::trim).collect()
}

fn unquote(cell: &str) -> &str {
    cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')).unwrap_or(cell)
}

/// Whether a README default (`""`, `[]`, `true`, `5432`, `cluster.local`, `{cpu: 2, memory: 4Gi}`) is `value`.
pub fn default_matches(text: &str, value: &Value) -> bool {
    if text == "\"\"" {
        return value == &Value::String(String::new());
    }
    match serde_yaml::from_str::<Value>(text) {
        Ok(parsed) if &parsed == value => true,
        // YAML reads `13.0.3` as a string but `17` as a number; values.yaml may quote either.
        _ => value.as_str().is_some_and(|s| s == text) || value.as_i64().is_some_and(|n| n.to_string() == text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_of_parameter_tables_only() {
        let md = "| a | b |\n|---|---|\n| x | y |\n\n| 参数 | 描述 | 默认值 |\n|------|------|--------|\n| `k.a` | 描述 | `\"\"` |\n| `k.b` | 描述 | `{cpu: 2, memory: 4Gi}` |\n\ntext\n\n| Parameter | Description | Default |\n|---|---|---|\n| `k.c` | text | `1` |\n";
        let rows = ReadmeTables::parse(md).expect("rows");
        assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["k.a", "k.b", "k.c"]);
        assert_eq!(rows[1].default_text, "{cpu: 2, memory: 4Gi}");
    }

    #[test]
    fn defaults_compare_as_yaml() {
        assert!(default_matches("\"\"", &json!("")));
        assert!(default_matches("[]", &json!([])));
        assert!(default_matches("{cpu: 2, memory: 4Gi}", &json!({"cpu": 2, "memory": "4Gi"})));
        assert!(default_matches("[\"ALL\"]", &json!(["ALL"])));
        assert!(default_matches("0 2 * * *", &json!("0 2 * * *")));
        assert!(default_matches("13.0.3", &json!("13.0.3")));
        assert!(default_matches("17", &json!("17")));
        assert!(!default_matches("5432", &json!(5433)));
        assert!(!default_matches("true", &json!(false)));
    }
}
