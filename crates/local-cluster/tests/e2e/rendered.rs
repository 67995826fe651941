//! Checks on the rendered objects alone (Helm only): what the pods will be given.

use anyhow::ensure;
use helm_engine::{Helm, RenderOptions};
use serde_json::{json, Value};

use crate::util::{self, Env, APP_PASSWORD, POSTGRES_PASSWORD};

crate::scenarios!(Helm: passwords_are_not_in_arguments_env_values_or_config_maps);

fn render(values: Value) -> anyhow::Result<Vec<Value>> {
    let rendered = Helm::discover()?.render(&util::chart_dir(), &values, &RenderOptions::default())?;
    Ok(rendered.documents()?.into_iter().map(|d| d.value).collect())
}

/// Every string of a container's command, args and plain env values.
fn container_strings(doc: &Value) -> Vec<String> {
    let spec = doc
        .pointer("/spec/template/spec")
        .or_else(|| doc.pointer("/spec/jobTemplate/spec/template/spec"))
        .or_else(|| doc.get("spec"));
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for c in containers {
        for key in ["command", "args"] {
            out.extend(
                c.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned),
            );
        }
        out.extend(
            c.get("env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("value")?.as_str())
                .map(str::to_owned),
        );
    }
    out
}

fn passwords_are_not_in_arguments_env_values_or_config_maps(_: &Env) -> anyhow::Result<()> {
    for extra in [json!({}), json!({"auth": {"usePasswordFiles": true}})] {
        let docs = render(util::values(extra.clone()))?;
        let mut containers = 0;
        for doc in &docs {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let mut strings = container_strings(doc);
            containers += strings.len();
            if kind == "ConfigMap" {
                strings.extend(
                    doc.get("data")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, v)| v.as_str())
                        .map(str::to_owned),
                );
            }
            for s in strings {
                ensure!(
                    !s.contains(POSTGRES_PASSWORD) && !s.contains(APP_PASSWORD),
                    "password in {kind} with {extra}: {s}"
                );
            }
        }
        ensure!(containers > 0, "no container found in the render");
    }
    Ok(())
}
