use std::collections::BTreeMap;

use k8s_objects::Document;

use crate::Error;

/// Helm's output: template path -> rendered text (NOTES.txt included, disabled templates blank).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: BTreeMap<String, String>,
}

impl Rendered {
    /// Every object of the render, in template path order then document order.
    pub fn documents(&self) -> Result<Vec<Document>, Error> {
        let mut docs = Vec::new();
        for (source, text) in self.manifest_files() {
            for chunk in split_documents(text) {
                let value: serde_json::Value = serde_yaml::from_str(chunk)
                    .map_err(|e| Error::Parse { what: source.clone(), message: e.to_string() })?;
                if !value.is_null() {
                    docs.push(Document::new(source.clone(), value));
                }
            }
        }
        Ok(docs)
    }

    /// The rendered NOTES.txt, if the chart has one.
    pub fn notes(&self) -> Option<&str> {
        self.files.iter().find(|(path, _)| path.ends_with("/NOTES.txt")).map(|(_, text)| text.as_str())
    }

    /// The render as `helm template` prints it: every non-empty manifest with a `# Source:` line.
    pub fn to_yaml_stream(&self) -> String {
        let mut out = String::new();
        for (source, text) in self.manifest_files() {
            for chunk in split_documents(text) {
                out.push_str("---\n# Source: ");
                out.push_str(source);
                out.push('\n');
                out.push_str(chunk.trim_matches('\n'));
                out.push('\n');
            }
        }
        out
    }

    fn manifest_files(&self) -> impl Iterator<Item = (&String, &String)> {
        self.files.iter().filter(|(path, _)| !path.ends_with("NOTES.txt"))
    }
}

/// Splits a YAML stream on `---` lines. Only a separator at column 0 counts, so a `---` line inside an
/// (always indented) block scalar stays content. Blank and comment-only chunks are dropped.
fn split_documents(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_separator(line) {
            chunks.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    chunks.push(&text[start..]);
    chunks.into_iter().filter(|c| has_content(c)).collect()
}

fn is_separator(line: &str) -> bool {
    let rest = match line.strip_prefix("---") {
        Some(rest) => rest.trim_end_matches(['\n', '\r']),
        None => return false,
    };
    rest.is_empty() || rest.starts_with([' ', '\t']) && (rest.trim().is_empty() || rest.trim().starts_with('#'))
}

fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_on_column_zero_separators() {
        let text = "a: 1\n---\nb: |\n  ---\n  x\n--- # next\n# only a comment\n---\n\nc: 3\n";
        let chunks = split_documents(text);
        assert_eq!(chunks, vec!["a: 1\n", "b: |\n  ---\n  x\n", "\nc: 3\n"]);
    }

    #[test]
    fn a_key_starting_with_dashes_is_not_a_separator() {
        assert!(!is_separator("---x: 1\n"));
        assert!(is_separator("---\n"));
        assert!(is_separator("---   \n"));
    }
}
