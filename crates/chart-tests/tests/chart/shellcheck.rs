//! shellcheck over the POSIX sh scripts the pods run (they run in the images' /bin/sh, not bash).

use std::process::Command;

#[test]
fn every_pod_script_passes_shellcheck_as_posix_sh() {
    let dir = chart_tests::chart_dir().join("files/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("scripts directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "only {} scripts found in {}", scripts.len(), dir.display());
    // -x follows the `. common.sh` lines, so that functions defined there are known.
    let output = Command::new("shellcheck")
        .args(["--shell=sh", "--external-sources", "--severity=info"])
        .current_dir(&dir)
        .args(scripts.iter().filter_map(|p| p.file_name()))
        .output()
        .unwrap_or_else(|e| {
            panic!("shellcheck could not run ({e}): install it with `cargo xtask setup` or apt-get install shellcheck")
        });
    assert!(
        output.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
