//! What this machine must provide to run a cluster (the node's own prerequisites), checked once for the
//! scenarios and the benchmarks: each missing piece is a reason in words, so that callers report the
//! scenario as ignored, never as passed.

use std::path::Path;

use crate::kubelet::image::{images_spec, Postgres, BUILDS_DIR, IMAGES_ENV};

/// What a run needs beyond Helm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Root (namespaces, mounts, uid changes), iproute2, PostgreSQL, nss_wrapper.
    Postgres,
    /// Also Citus (`citus.so` in `pg_config --pkglibdir`).
    Citus,
    /// Also a second Citus build mapped to a `citusdata/citus` tag by `LOCAL_CLUSTER_IMAGES`.
    TwoCitus,
}

/// What the machine provides.
#[derive(Debug, Clone)]
pub struct Host {
    pub postgres: Postgres,
    /// A `citusdata/citus` tag that `LOCAL_CLUSTER_IMAGES` maps to another Citus build (with `TwoCitus`).
    pub upgrade_tag: Option<String>,
}

/// The host for `needs`, or why this machine cannot provide it. PostgreSQL comes from
/// `LOCAL_CLUSTER_PG_CONFIG` (default `/usr/lib/postgresql/15/bin/pg_config`).
pub fn check(needs: Needs) -> Result<Host, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root (network and mount namespaces, running pods as uid 1001)".into());
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Err("iproute2 (`ip`) is not installed".into());
    }
    let pg_config =
        std::env::var("LOCAL_CLUSTER_PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".to_owned());
    if !Path::new(&pg_config).exists() {
        return Err(format!("PostgreSQL is not installed (no {pg_config})"));
    }
    let nss = [
        "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
        "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
        "/usr/lib/libnss_wrapper.so",
    ];
    if !nss.iter().any(|p| Path::new(p).exists()) {
        return Err("libnss_wrapper.so is not installed (apt-get install libnss-wrapper; the image has it)".into());
    }
    let postgres = Postgres::from_pg_config(Path::new(&pg_config)).map_err(|e| e.to_string())?;
    if needs == Needs::Postgres {
        return Ok(Host { postgres, upgrade_tag: None });
    }
    if !postgres.citus_library().exists() {
        return Err(format!("Citus is not installed (no citus.so in {})", postgres.pkglibdir.display()));
    }
    if needs == Needs::Citus {
        return Ok(Host { postgres, upgrade_tag: None });
    }
    let images = images_spec();
    let lib = postgres.pkglibdir.strip_prefix("/").unwrap_or(&postgres.pkglibdir).to_path_buf();
    let tag = images.split(',').find_map(|entry| {
        let (image, root) = entry.split_once('=')?;
        let tag = image.trim().strip_prefix("citusdata/citus:")?;
        Path::new(root.trim()).join(&lib).join("citus.so").exists().then(|| tag.to_owned())
    });
    match tag {
        Some(tag) => Ok(Host { postgres, upgrade_tag: Some(tag) }),
        None => Err(format!(
            "no second Citus build: install one with `make install DESTDIR={BUILDS_DIR}/citus-<tag>`, or set \
             {IMAGES_ENV}=citusdata/citus:<tag>=<DESTDIR root holding {}/citus.so>",
            postgres.pkglibdir.display()
        )),
    }
}
