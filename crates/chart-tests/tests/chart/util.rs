use helm_engine::{Document, Helm};
use serde_json::Value;

pub fn helm() -> Helm {
    Helm::discover().unwrap_or_else(|e| panic!("{e}"))
}

/// Renders at the newest Kubernetes version; panics with Helm's message on failure.
pub fn render(values: &Value) -> Vec<Document> {
    chart_tests::render(&helm(), values, chart_tests::KUBE_VERSIONS[1]).unwrap_or_else(|e| panic!("{e}"))
}

/// The error of a render that must fail.
pub fn render_error(values: &Value) -> helm_engine::Error {
    match chart_tests::render(&helm(), values, chart_tests::KUBE_VERSIONS[1]) {
        Ok(_) => panic!("rendering with {values} must fail"),
        Err(e) => e,
    }
}
