//! The README's backup and restore procedure on the real control plane (issue 16): a backup Job made with
//! `kubectl create job --from=cronjob/...`, the old release uninstalled with Helm (its backup claim must stay),
//! and a new release restoring from that claim through its post-install hook.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::ReleaseOptions;
use serde_json::json;

use crate::backup::{FACTS, FIXTURE};
use crate::util::{self, Env};
use testbed::Space;

crate::scenarios!(Node:
    the_readmes_backup_and_restore_carry_every_citus_kind_into_a_new_release_after_the_old_one_is_uninstalled);

fn facts(space: &Space, coordinator: &str) -> anyhow::Result<Vec<String>> {
    Ok(space.sql_in(coordinator, FACTS)?.lines().map(str::to_owned).collect())
}

fn the_readmes_backup_and_restore_carry_every_citus_kind_into_a_new_release_after_the_old_one_is_uninstalled(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-backup", None)?;
    space.install(json!({"backup": {"enabled": true}}))?;
    space.sql(FIXTURE).context("creating the fixture")?;
    let expected = facts(&space, util::COORDINATOR)?;

    // The README's manual backup: a Job from the CronJob, run by the real Job controller. It reaches the
    // coordinator through its Service, which has an endpoint once the coordinator's readiness probe passed.
    space.wait_ready(&[util::COORDINATOR], Duration::from_secs(60))?;
    space.kubectl(&["create", "job", "--from=cronjob/my-citus-backup", "my-citus-backup-manual"])?;
    let waited = space.kubectl(&["wait", "--for=condition=complete", "--timeout=300s", "job/my-citus-backup-manual"]);
    if let Err(e) = waited {
        let log = space.kubectl(&["logs", "job/my-citus-backup-manual"]).unwrap_or_else(|e| e.to_string());
        bail!("the manual backup did not complete: {e}\n{log}\n{}", space.diagnose());
    }
    let status = space.sql("SELECT last_backup || ' ' || (last_failure IS NULL) FROM citus_chart.backup_status")?;
    let latest = status.strip_suffix(" true").with_context(|| format!("backup_status after the backup: {status}"))?;
    let log = space.kubectl(&["logs", "job/my-citus-backup-manual"])?;
    ensure!(log.contains(latest), "the backup's log does not name backup {latest:?}:\n{log}");

    // A backup that starts while the coordinator is away (deleted, its replacement held Pending) waits for it,
    // and completes once the coordinator is back, instead of failing the night's run at once.
    space.agent.hold_pending(&space.ns, util::COORDINATOR);
    space.kubectl(&["delete", "pod", util::COORDINATOR, "--wait=true"])?;
    space.kubectl(&["create", "job", "--from=cronjob/my-citus-backup", "my-citus-backup-during-restart"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = space.kubectl(&["logs", "job/my-citus-backup-during-restart"]).unwrap_or_default();
        if log.contains("does not answer yet") {
            break;
        }
        ensure!(Instant::now() < deadline, "the backup did not wait for the coordinator:\n{log}\n{}", space.diagnose());
        std::thread::sleep(Duration::from_secs(1));
    }
    space.agent.release_pending(&space.ns, util::COORDINATOR);
    let waited =
        space.kubectl(&["wait", "--for=condition=complete", "--timeout=300s", "job/my-citus-backup-during-restart"]);
    let log = space.kubectl(&["logs", "job/my-citus-backup-during-restart"]).unwrap_or_else(|e| e.to_string());
    waited.with_context(|| format!("the backup started while the coordinator was away:\n{log}"))?;
    let pods = space.jsonpath("pods", "{.items[*].metadata.name}")?;
    let runs = pods.split_whitespace().filter(|p| p.starts_with("my-citus-backup-during-restart-")).count();
    ensure!(runs == 1, "the backup needed {runs} pods: it failed before the coordinator came back");
    let second = space.sql("SELECT last_backup FROM citus_chart.backup_status")?;
    ensure!(second != latest && log.contains(&second), "the second backup is {second:?}, its log:\n{log}");
    let latest = second;

    // `helm uninstall`: the release's pods go, its backup claim stays (the README's promise).
    space.helm.uninstall("my-citus")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let release_pod = |p: &str| p.starts_with("my-citus-coordinator-") || p.starts_with("my-citus-worker-");
    while space.jsonpath("pods", "{.items[*].metadata.name}")?.split_whitespace().any(release_pod) {
        ensure!(Instant::now() < deadline, "pods of my-citus left 120 s after uninstall\n{}", space.diagnose());
        std::thread::sleep(Duration::from_millis(500));
    }
    let claim = space.jsonpath("pvc/my-citus-backup", "{.status.phase}").context("the backup claim after uninstall")?;
    ensure!(claim == "Bound", "the backup claim after uninstall is {claim:?}");

    // The README's restore: a new release from the old backup claim; the hook restores before install returns.
    let values = util::values(json!({
        "restore": {"enabled": true, "existingClaim": "my-citus-backup", "backup": "latest"}
    }));
    let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
    space.helm.install(&util::chart_dir(), "my-citus-new", &values, &options).with_context(|| space.diagnose())?;
    let restored = "my-citus-new-coordinator-0";
    let got = facts(&space, restored)?;
    let missing: Vec<_> = expected.iter().filter(|f| !got.contains(f)).collect();
    let extra: Vec<_> = got.iter().filter(|f| !expected.contains(f)).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "the new release differs from the old\nonly in the old:\n{missing:#?}\nonly in the new:\n{extra:#?}"
    );
    let status = space.sql_in(restored, "SELECT backup, completed_at IS NOT NULL FROM citus_chart.restore_status")?;
    ensure!(status == format!("{latest}|t"), "restore_status: {status}");
    eprintln!("backup {latest} restored into my-citus-new: {} facts equal", expected.len());
    Ok(())
}
