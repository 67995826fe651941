//! `report`: a zip for a bug report. Whatever cannot be collected is listed in `skipped` (and in
//! README.txt inside the zip) instead of failing the whole report. Secrets are redacted: Secret values,
//! password-like env values, custom settings, pg_dist_authinfo, and every value of the release's Secrets and
//! the session's password wherever they appear.

use std::io::Write;
use std::path::Path;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::connect::Target;
use crate::doctor;
use crate::error::{Error, Result};
use crate::k8s::Release;
use crate::model::{ReportWritten, API_VERSION};
use crate::sql;

pub const REDACTED: &str = "REDACTED";

/// Catalog tables and views dumped into sql/ (pg_dist_authinfo separately, without its secrets).
pub const DIST_TABLES: &[&str] = &[
    "pg_dist_node",
    "pg_dist_partition",
    "pg_dist_shard",
    "pg_dist_placement",
    "pg_dist_colocation",
    "pg_dist_cleanup",
    "pg_dist_background_job",
    "pg_dist_background_task",
    "pg_dist_rebalance_strategy",
    "pg_dist_local_group",
    "pg_dist_transaction",
    "pg_dist_poolinfo",
    "pg_dist_object",
];

struct Zip {
    w: zip::ZipWriter<std::fs::File>,
    entries: Vec<String>,
    secrets: Vec<String>,
}

impl Zip {
    fn add(&mut self, name: &str, text: &str) -> Result<()> {
        let mut text = text.to_owned();
        for s in &self.secrets {
            if s.len() >= 4 {
                text = text.replace(s.as_str(), REDACTED);
            }
        }
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        self.w.start_file(name, opts).map_err(|source| Error::Zip { source })?;
        self.w
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("writing the report archive", "check free space", e))?;
        self.entries.push(name.to_owned());
        Ok(())
    }

    fn json(&mut self, name: &str, v: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(v).map_err(|e| Error::Encode(e.to_string()))?;
        self.add(name, &text)
    }
}

pub async fn write(target: Target, file: &Path, log_lines: i64) -> Result<ReportWritten> {
    let f = std::fs::File::create(file)
        .map_err(|e| Error::io(format!("creating {}", file.display()), "pass a writable path with --file", e))?;
    let mut z = Zip { w: zip::ZipWriter::new(f), entries: vec![], secrets: vec![] };
    let mut skipped = Vec::new();

    let kube = target.kube.as_ref().map(|k| (k.client.clone(), k.release.clone()));
    match target.connect().await {
        Ok(session) => {
            if let Some(p) = &session.params.password {
                z.secrets.push(p.clone());
            }
            collect_sql(&mut z, &session.client, &mut skipped).await?;
        }
        Err(e) => skipped.push(format!("everything from PostgreSQL: {e}")),
    }
    if let Some((client, release)) = &kube {
        collect_kube(&mut z, client, release, log_lines, &mut skipped).await?;
    } else {
        skipped.push("Kubernetes objects, events and logs: direct connection (use --release for them)".into());
    }

    let mut readme = String::from("kubectl citus report\n\nNot collected:\n");
    for s in &skipped {
        readme.push_str(&format!("- {s}\n"));
    }
    z.add("README.txt", &readme)?;
    z.w.finish().map_err(|source| Error::Zip { source })?;
    Ok(ReportWritten {
        api_version: API_VERSION,
        kind: "ReportWritten",
        file: file.display().to_string(),
        entries: z.entries,
        skipped,
    })
}

async fn collect_sql(z: &mut Zip, c: &tokio_postgres::Client, skipped: &mut Vec<String>) -> Result<()> {
    match sql::status(c).await {
        Ok(s) => {
            z.json("status.json", &s)?;
            match sql::cleanup_records(c).await {
                Ok(cl) => z.json("doctor.json", &doctor::analyse(&s, &cl, 1.5))?,
                Err(e) => skipped.push(format!("doctor.json: {e}")),
            }
        }
        Err(e) => skipped.push(format!("status.json: {e}")),
    }
    let mut queries: Vec<(String, String)> =
        DIST_TABLES.iter().map(|t| (format!("sql/{t}.json"), format!("SELECT * FROM {t}"))).collect();
    queries.push((
        "sql/pg_dist_authinfo.json".into(),
        format!("SELECT nodeid, rolename, '{REDACTED}' AS authinfo FROM pg_dist_authinfo"),
    ));
    // Custom settings (an application's `app.jwt_secret`, say) and secret-looking names keep only their name.
    queries.push((
        "sql/settings.json".into(),
        format!(
            "SELECT name, CASE WHEN (name LIKE '%.%' AND split_part(name, '.', 1) NOT IN \
             ('citus', 'columnar', 'pg_stat_statements', 'auto_explain', 'plpgsql')) \
             OR name ~* '(pass|secret|token|credential)' THEN '{REDACTED}' ELSE setting END AS setting, \
             unit, source FROM pg_settings ORDER BY name"
        ),
    ));
    queries.push((
        "sql/versions.json".into(),
        "SELECT version(), current_setting('citus.version', true) AS citus_library, \
         (SELECT extversion FROM pg_extension WHERE extname = 'citus') AS citus_extension"
            .into(),
    ));
    for (name, q) in queries {
        match sql::dump_as_json(c, &q).await {
            Ok(v) => z.json(&name, &v)?,
            Err(e) => skipped.push(format!("{name}: {e}")),
        }
    }
    Ok(())
}

/// Replace secret material in a Kubernetes object (as JSON) in place.
pub fn redact(kind: &str, v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        if kind == "Secret" {
            // last-applied-configuration would carry the data again.
            m.remove("annotations");
        }
    }
    if kind == "Secret" {
        for key in ["data", "stringData"] {
            if let Some(d) = v.get_mut(key).and_then(Value::as_object_mut) {
                for val in d.values_mut() {
                    *val = Value::String(REDACTED.into());
                }
            }
        }
    }
    redact_env(v);
}

fn redact_env(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(env)) = m.get_mut("env") {
                for e in env {
                    let secretish = e
                        .get("name")
                        .and_then(Value::as_str)
                        .map(|n| {
                            let n = n.to_ascii_uppercase();
                            ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "DSN", "URL", "URI"]
                                .iter()
                                .any(|w| n.contains(w))
                        })
                        .unwrap_or(false);
                    if secretish {
                        if let Some(val) = e.get_mut("value") {
                            *val = Value::String(REDACTED.into());
                        }
                    }
                }
            }
            for x in m.values_mut() {
                redact_env(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_env),
        _ => {}
    }
}

async fn objects<K>(
    client: &Client,
    release: &Release,
    selector: &str,
) -> std::result::Result<Vec<(String, Value)>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &release.namespace);
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let mut out = Vec::new();
    for o in list.items {
        let name = o.meta().name.clone().unwrap_or_default();
        let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(K::api_version(&()).into_owned()));
            m.insert("kind".into(), Value::String(K::kind(&()).into_owned()));
        }
        out.push((name, v));
    }
    Ok(out)
}

async fn collect_kube(
    z: &mut Zip,
    client: &Client,
    release: &Release,
    log_lines: i64,
    skipped: &mut Vec<String>,
) -> Result<()> {
    let sel = release.instance_selector();
    // Every value of the release's Secrets is scrubbed from all that follows (pod logs above all), also when
    // the database could not be reached: that is when reports are collected.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    match secrets.list(&ListParams::default().labels(&sel)).await {
        Ok(list) => {
            for s in list.items {
                let data = s.data.into_iter().flatten().map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned());
                let plain = s.string_data.into_iter().flatten().map(|(_, v)| v);
                z.secrets.extend(data.chain(plain).map(|v| v.trim_end_matches('\n').to_owned()));
            }
        }
        Err(e) => skipped.push(format!("the release's Secrets (their values could not be scrubbed from logs): {e}")),
    }
    macro_rules! dump {
        ($k:ty, $dir:literal) => {
            match objects::<$k>(client, release, &sel).await {
                Ok(list) => {
                    for (name, mut v) in list {
                        redact(<$k as Resource>::kind(&()).as_ref(), &mut v);
                        let text = serde_yaml::to_string(&v).map_err(|e| Error::Encode(e.to_string()))?;
                        z.add(&format!("manifests/{}/{name}.yaml", $dir), &text)?;
                    }
                }
                Err(e) => skipped.push(format!("{}: {e}", $dir)),
            }
        };
    }
    dump!(StatefulSet, "statefulsets");
    dump!(Pod, "pods");
    dump!(Service, "services");
    dump!(ConfigMap, "configmaps");
    dump!(Secret, "secrets");
    dump!(ServiceAccount, "serviceaccounts");
    dump!(Job, "jobs");
    dump!(CronJob, "cronjobs");
    dump!(PersistentVolumeClaim, "persistentvolumeclaims");
    dump!(PodDisruptionBudget, "poddisruptionbudgets");
    dump!(NetworkPolicy, "networkpolicies");

    let events: Api<Event> = Api::namespaced(client.clone(), &release.namespace);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            let mine: Vec<Value> = list
                .items
                .iter()
                .filter(|e| e.involved_object.name.as_deref().is_some_and(|n| n.starts_with(&release.fullname)))
                .filter_map(|e| serde_json::to_value(e).ok())
                .collect();
            let text = serde_yaml::to_string(&mine).map_err(|e| Error::Encode(e.to_string()))?;
            z.add("events.yaml", &text)?;
        }
        Err(e) => skipped.push(format!("events: {e}")),
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    match pods.list(&ListParams::default().labels(&sel)).await {
        Ok(list) => {
            for p in list.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                let containers: Vec<String> = p
                    .spec
                    .iter()
                    .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
                    .map(|c| c.name.clone())
                    .collect();
                for c in containers {
                    let lp =
                        LogParams { container: Some(c.clone()), tail_lines: Some(log_lines), ..Default::default() };
                    match pods.logs(&name, &lp).await {
                        Ok(log) => z.add(&format!("logs/{name}/{c}.log"), &log)?,
                        Err(e) => skipped.push(format!("logs of {name}/{c}: {e}")),
                    }
                }
            }
        }
        Err(e) => skipped.push(format!("pod logs: {e}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_password_env_are_redacted() {
        let mut s = json!({"kind": "Secret", "metadata": {"name": "x", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}, "managedFields": []},
                           "data": {"postgres-password": "c2VjcmV0"}});
        redact("Secret", &mut s);
        assert_eq!(s["data"]["postgres-password"], REDACTED);
        assert!(s["metadata"].get("annotations").is_none() && s["metadata"].get("managedFields").is_none());

        let mut p = json!({"kind": "Pod", "spec": {"containers": [{"name": "pg", "env": [
            {"name": "POSTGRES_PASSWORD", "value": "hunter2"},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "PGHOST", "value": "coord"}]}]}});
        redact("Pod", &mut p);
        let env = &p["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["value"], REDACTED);
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "k");
        assert_eq!(env[2]["value"], "coord");
    }

    /// collect_kube against a mock API server that answers every list by path: the zip holds the release's
    /// objects, events of its objects only, container logs, and no secret in clear.
    #[tokio::test]
    async fn cluster_part_of_the_report() {
        use http::{Request, Response};
        use kube::client::Body;
        use tower_test::mock;

        let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let uri = req.uri().to_string();
                let path = req.uri().path().to_owned();
                seen.push(uri.clone());
                let list = |kind: &str, items: serde_json::Value| json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items});
                let body = if path.ends_with("/log") {
                    assert!(uri.contains("container=postgresql") && uri.contains("tailLines=50"), "{uri}");
                    send.send_response(Response::new(Body::from(
                        b"LOG: password hunter2 accepted, app-pw S3cret-app\n".to_vec(),
                    )));
                    continue;
                } else if path == "/api/v1/namespaces/db/secrets" {
                    assert!(uri.contains("labelSelector=app.kubernetes.io%2Finstance%3Dprod"), "{uri}");
                    list(
                        "SecretList",
                        json!([{"metadata": {"name": "prod-citus-secret"}, "data": {"postgres-password": "aHVudGVyMg==", "password": "UzNjcmV0LWFwcA=="}}]),
                    )
                } else if path == "/api/v1/namespaces/db/pods" {
                    list(
                        "PodList",
                        json!([{"metadata": {"name": "prod-citus-coordinator-0"}, "spec": {"containers": [
                        {"name": "postgresql", "env": [{"name": "POSTGRES_PASSWORD", "value": "hunter2"}]}]}}]),
                    )
                } else if path == "/api/v1/namespaces/db/events" {
                    list(
                        "EventList",
                        json!([
                        {"metadata": {"name": "e1"}, "involvedObject": {"name": "prod-citus-worker-0"}, "reason": "BackOff"},
                        {"metadata": {"name": "e2"}, "involvedObject": {"name": "other-app-0"}, "reason": "Pulled"}]),
                    )
                } else {
                    list("List", json!([]))
                };
                send.send_response(Response::new(Body::from(serde_json::to_vec(&body).unwrap())));
            }
            seen
        });

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.zip");
        // Nothing known beforehand (the database is down): the Secret's values are what gets scrubbed.
        let mut z =
            Zip { w: zip::ZipWriter::new(std::fs::File::create(&path).unwrap()), entries: vec![], secrets: vec![] };
        let mut skipped = vec![];
        collect_kube(&mut z, &client, &Release::new("prod", "db", None), 50, &mut skipped).await.unwrap();
        z.w.finish().unwrap();
        drop(client);
        let seen = server.await.unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(seen.iter().any(|u| u.starts_with("/apis/apps/v1/namespaces/db/statefulsets?")), "{seen:?}");
        assert!(seen.iter().any(|u| u.starts_with("/apis/batch/v1/namespaces/db/cronjobs?")), "{seen:?}");

        let mut a = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut read = |name: &str| {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut a.by_name(name).unwrap(), &mut t).unwrap();
            t
        };
        let secret = read("manifests/secrets/prod-citus-secret.yaml");
        assert!(secret.contains("postgres-password: REDACTED") && !secret.contains("aHVudGVyMg"), "{secret}");
        let pod = read("manifests/pods/prod-citus-coordinator-0.yaml");
        assert!(pod.contains("kind: Pod") && pod.contains("value: REDACTED") && !pod.contains("hunter2"), "{pod}");
        assert_eq!(
            read("logs/prod-citus-coordinator-0/postgresql.log"),
            "LOG: password REDACTED accepted, app-pw REDACTED\n"
        );
        let events = read("events.yaml");
        assert!(events.contains("BackOff") && !events.contains("other-app-0"), "{events}");
    }

    #[test]
    fn known_password_is_scrubbed_from_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.zip");
        let f = std::fs::File::create(&path).unwrap();
        let mut z = Zip { w: zip::ZipWriter::new(f), entries: vec![], secrets: vec!["hunter2".into()] };
        z.add("logs/a.log", "connecting with password hunter2\n").unwrap();
        z.w.finish().unwrap();
        let mut a = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut a.by_name("logs/a.log").unwrap(), &mut text).unwrap();
        assert_eq!(text, "connecting with password REDACTED\n");
    }
}
