#![forbid(unsafe_code)]
use std::path::{Path, PathBuf};

use helm_engine::{Error, Helm, LintOptions, RenderOptions};
use serde_json::json;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny")
}

fn helm() -> Helm {
    Helm::discover().expect("Helm is needed for these tests: run `cargo xtask setup --only helm`")
}

fn configmap(values: serde_json::Value, options: &RenderOptions) -> serde_json::Value {
    let rendered = helm().render(&chart(), &values, options).expect("render");
    let docs = rendered.documents().expect("documents");
    docs.into_iter().find(|d| d.kind() == "ConfigMap").expect("a ConfigMap").value
}

#[test]
fn renders_documents_with_release_and_capabilities() {
    let options = RenderOptions {
        release_name: "rel".into(),
        namespace: "ns".into(),
        kube_version: Some("v1.23.0".into()),
        api_versions: vec!["monitoring.coreos.com/v1".into()],
        ..RenderOptions::default()
    };
    let cm = configmap(json!({"name": "x"}), &options);
    assert_eq!(cm["metadata"]["name"], "rel-x");
    assert_eq!(cm["metadata"]["namespace"], "ns");
    assert_eq!(cm["data"]["kube"], "v1.23.0");
    assert_eq!(cm["data"]["upgrade"], "false");
    assert_eq!(cm["data"]["monitoring"], "true");
    // The `---` inside the block scalar is content, not a document separator.
    assert_eq!(cm["data"]["script"], "first\n---\nlast\n");
}

#[test]
fn upgrade_renders_see_is_upgrade() {
    let options = RenderOptions { is_upgrade: true, ..RenderOptions::default() };
    assert_eq!(configmap(json!({}), &options)["data"]["upgrade"], "true");
}

#[test]
fn hooks_and_notes_are_exposed() {
    let rendered = helm().render(&chart(), &json!({}), &RenderOptions::default()).expect("render");
    let docs = rendered.documents().expect("documents");
    assert_eq!(docs.len(), 2, "ConfigMap and Job, the comment-only document dropped: {docs:?}");
    let hook = docs.iter().find_map(|d| d.hook().expect("valid hook annotations")).expect("the Job is a hook");
    assert_eq!(hook.events, vec![helm_engine::HookEvent::PostInstall, helm_engine::HookEvent::PostUpgrade]);
    assert_eq!(hook.weight, -5);
    assert_eq!(rendered.notes().map(str::trim), Some("Installed my-citus."));
    assert!(!rendered.to_yaml_stream().contains("Installed"), "NOTES is not a manifest");
}

#[test]
fn fail_maps_to_render_error_with_the_message() {
    let err = helm().render(&chart(), &json!({"failWith": "bad combination"}), &RenderOptions::default()).unwrap_err();
    match err {
        Error::Render { message } => assert!(message.contains("bad combination"), "{message}"),
        other => panic!("expected Error::Render, got {other:?}"),
    }
}

#[test]
fn schema_violations_map_to_values_error_naming_the_key() {
    let err = helm().render(&chart(), &json!({"replicaCont": 3}), &RenderOptions::default()).unwrap_err();
    match err {
        Error::Values { message } => assert!(message.contains("replicaCont"), "{message}"),
        other => panic!("expected Error::Values, got {other:?}"),
    }
    let err = helm().render(&chart(), &json!({"replicas": "three"}), &RenderOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Values { message } if message.contains("replicas")), "{err:?}");
}

#[test]
fn strict_lint_reports_a_broken_template() {
    let options = LintOptions::default();
    let clean = helm().lint(&chart(), &json!({}), &options).expect("lint");
    assert_eq!(clean.errors().count(), 0, "{clean:?}");
    let broken = helm().lint(&chart(), &json!({"broken": true}), &options).expect("lint");
    let errors: Vec<_> = broken.errors().collect();
    assert!(errors.iter().any(|m| m.text.contains("nope")), "{broken:?}");
}

#[test]
fn concurrent_renders_agree_and_free_their_charts() {
    let helm = helm();
    let before = helm.open_handles();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let helm = helm.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let name = format!("n{i}");
                    let rendered =
                        helm.render(&chart(), &json!({"name": name}), &RenderOptions::default()).expect("render");
                    let docs = rendered.documents().expect("documents");
                    assert_eq!(docs[0].name(), format!("my-citus-n{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("render thread");
    }
    assert_eq!(helm.open_handles(), before, "every loaded chart is freed");
}
