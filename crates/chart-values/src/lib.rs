//! The single source of truth for the chart's parameters: `values.yaml` and its doc comments.
//!
//! `## @param <key> <description>` documents a parameter; `## @schema <key> <json>` gives the JSON
//! schema of a key where the type inferred from its default is not precise enough. From these come
//! `values.schema.json` ([`ValuesDoc::json_schema`]) and the checks on the README tables ([`readme`]).

#![forbid(unsafe_code)]

mod doc;
pub mod readme;
mod schema;

pub use doc::{Error, Param, ValuesDoc};
pub use readme::{default_matches, ReadmeRow, ReadmeTables};

use std::path::{Path, PathBuf};

/// `charts/citus` of this workspace.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/citus")
}
