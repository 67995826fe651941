//! The chart on a real Kubernetes API server (issue 16, first step: the control plane without a node). Each
//! scenario works in a namespace of its own on the run's shared control plane. Without a node no Job ends, so
//! Helm runs here only what needs no hook: an install without the registration hook, and upgrades as
//! `--dry-run=server` (rendered with `lookup` answering, validated by the API server, no hook run).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::{Helm, ReleaseOptions, RenderOptions};
use serde_json::{json, Value};

use crate::util::{self, Env};

crate::scenarios!(ControlPlane: every_object_of_the_default_render_is_admitted_under_pod_security_restricted_and_a_second_apply_changes_nothing, an_upgrade_that_changes_a_claim_template_is_refused_by_lookup_and_one_that_repeats_a_stored_size_is_not);

const NAMESPACE: &str = "restricted";

/// `helm template` of the chart with `values` into `namespace`, as one YAML stream.
fn template(values: &Value, namespace: &str) -> anyhow::Result<String> {
    let helm = Helm::discover()?;
    let options =
        RenderOptions { namespace: namespace.into(), kube_version: Some("v1.36.2".into()), ..RenderOptions::default() };
    Ok(helm.render(&util::chart_dir(), values, &options)?.to_yaml_stream())
}

/// `metadata.generation` of every StatefulSet and Job in `namespace`, as `kind/name=generation` lines.
fn generations(plane: &control_plane::ControlPlane, namespace: &str) -> anyhow::Result<String> {
    let (out, _) = plane.kubectl(
        &[
            "get",
            "statefulsets,jobs",
            "-n",
            namespace,
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.generation}{\"\\n\"}{end}",
        ],
        None,
    )?;
    Ok(out)
}

fn every_object_of_the_default_render_is_admitted_under_pod_security_restricted_and_a_second_apply_changes_nothing(
    _env: &Env,
) -> anyhow::Result<()> {
    let plane = util::control_plane()?;
    plane.kubectl(&["create", "namespace", NAMESPACE], None)?;
    plane.kubectl(
        &[
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    )?;
    // The namespace enforces it: a pod that runs as root is refused.
    match plane.kubectl(&["run", "root", "-n", NAMESPACE, "--image=citusdata/citus:13.0.3", "--restart=Never"], None) {
        Ok(_) => bail!("the namespace admitted a pod without securityContext: Pod Security is not enforced"),
        Err(e) => ensure!(e.to_string().contains("violates PodSecurity \"restricted"), "{e}"),
    }
    let stream = template(&util::values(serde_json::json!({})), NAMESPACE)?;

    // The GitOps path: every object, hooks included, by server-side apply. A workload whose pods the namespace's
    // Pod Security level would refuse draws a warning at apply time.
    let apply = ["apply", "--server-side", "--field-manager=gitops", "-n", NAMESPACE, "-f", "-"];
    let (applied, warnings) =
        plane.kubectl(&apply, Some(stream.as_bytes())).context("server-side apply of the render")?;
    ensure!(!warnings.contains("violate PodSecurity"), "Pod Security restricted warns about the render:\n{warnings}");
    ensure!(applied.contains("statefulset.apps/my-citus-worker serverside-applied"), "{applied}");

    // The StatefulSet and Job controllers create the pods, and admission lets every one of them in.
    let want = ["my-citus-coordinator-0", "my-citus-worker-0", "my-citus-worker-1"];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pods, _) = plane.kubectl(&["get", "pods", "-n", NAMESPACE, "-o", "name"], None)?;
        if want.iter().all(|p| pods.contains(&format!("pod/{p}"))) && pods.contains("pod/my-citus-register-workers-") {
            break;
        }
        if Instant::now() > deadline {
            let (events, _) = plane.kubectl(&["get", "events", "-n", NAMESPACE], None)?;
            bail!(
                "pods {want:?} and the registration Job's were not all created within 60 s: {pods}\nevents:\n{events}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Applied again, as a GitOps tool does at every sync: no object's spec changes, so nothing would restart.
    let before = generations(plane, NAMESPACE)?;
    let (again, _) = plane.kubectl(&apply, Some(stream.as_bytes()))?;
    ensure!(again.contains("serverside-applied"), "{again}");
    let after = generations(plane, NAMESPACE)?;
    ensure!(before == after, "a second apply changed generations:\nbefore:\n{before}\nafter:\n{after}");
    plane.kubectl(&["delete", "namespace", NAMESPACE, "--wait=false"], None)?;
    Ok(())
}

fn an_upgrade_that_changes_a_claim_template_is_refused_by_lookup_and_one_that_repeats_a_stored_size_is_not(
    _env: &Env,
) -> anyhow::Result<()> {
    let plane = util::control_plane()?;
    let namespace = "immutable";
    plane.kubectl(&["create", "namespace", namespace], None)?;
    let releases = Helm::discover()?.releases(&plane.kubeconfig(), namespace)?;
    let chart = util::chart_dir();
    let values = |persistence: Value| {
        util::values(json!({"workerRegistration": {"enabled": false}, "worker": {"persistence": persistence}}))
    };
    releases.install(&chart, "my-citus", &values(json!({"size": "10240Mi"})), &ReleaseOptions::default())?;
    // The API server keeps the size in canonical form.
    let (stored, _) = plane.kubectl(
        &[
            "get",
            "statefulset",
            "my-citus-worker",
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.volumeClaimTemplates[0].spec.resources.requests.storage}",
        ],
        None,
    )?;
    ensure!(stored == "10Gi", "stored size {stored}");

    let dry = ReleaseOptions { dry_run: Some("server"), ..ReleaseOptions::default() };
    // The same values again: nothing changes, so nothing is refused.
    releases
        .upgrade(&chart, "my-citus", &values(json!({"size": "10240Mi"})), &dry)
        .context("the same values refused")?;
    // A label on the claim template: Kubernetes would refuse the StatefulSet after the drain hook ran.
    match releases.upgrade(&chart, "my-citus", &values(json!({"size": "10240Mi", "labels": {"tier": "db"}})), &dry) {
        Ok(_) => bail!("an upgrade that changes the claim template's labels was not refused"),
        Err(e) => ensure!(
            e.to_string().contains("IMMUTABLE FIELD")
                && e.to_string().contains("worker.persistence.labels would change the claim template's labels"),
            "the refusal does not name the field: {e}"
        ),
    }
    releases.uninstall("my-citus")?;
    plane.kubectl(&["delete", "namespace", namespace, "--wait=false"], None)?;
    Ok(())
}
