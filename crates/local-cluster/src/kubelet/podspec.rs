//! The parts of a Kubernetes pod spec that the harness acts on, read from rendered JSON.
//! Fields that only matter to a scheduler or a real kubelet (resources, affinity, ...) are ignored;
//! probes the harness cannot run are rejected in [`PodSpec::from_value`].

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// `null` in rendered YAML (`args:` with nothing after it) means "not set".
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod as the harness runs it: its containers plus the pod-level settings.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Run in order, each to completion, before `containers` start.
    pub init_containers: Vec<Container>,
    /// At least one; all share the pod's network namespace and volumes.
    pub containers: Vec<Container>,
    pub restart_policy: RestartPolicy,
    pub volumes: Vec<Volume>,
    pub security_context: PodSecurityContext,
    pub termination_grace_period_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    #[serde(default, deserialize_with = "nullable")]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    #[serde(default)]
    restart_policy: RestartPolicy,
    #[serde(default, deserialize_with = "nullable")]
    volumes: Vec<Volume>,
    #[serde(default, deserialize_with = "nullable")]
    security_context: PodSecurityContext,
    termination_grace_period_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<EnvVar>,
    #[serde(default, deserialize_with = "nullable")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default, deserialize_with = "nullable")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, deserialize_with = "nullable")]
    pub security_context: ContainerSecurityContext,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<ContainerPort>,
    pub working_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub secret_key_ref: Option<KeyRef>,
    pub config_map_key_ref: Option<KeyRef>,
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    #[serde(default)]
    pub prefix: String,
    pub config_map_ref: Option<NameRef>,
    pub secret_ref: Option<NameRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    pub sub_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub config_map: Option<ConfigMapVolume>,
    pub secret: Option<SecretVolume>,
    pub empty_dir: Option<EmptyDirVolume>,
    pub persistent_volume_claim: Option<ClaimVolume>,
    pub projected: Option<ProjectedVolume>,
}

/// What the ServiceAccount admission plugin mounts (`kube-api-access-*`): a token, the cluster's CA and the
/// namespace, in one directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolume {
    #[serde(default, deserialize_with = "nullable")]
    pub sources: Vec<ProjectedSource>,
    pub default_mode: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedSource {
    pub service_account_token: Option<TokenProjection>,
    pub config_map: Option<ObjectProjection>,
    pub secret: Option<ObjectProjection>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardApiProjection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenProjection {
    pub path: String,
    pub audience: Option<String>,
    pub expiration_seconds: Option<i64>,
}

/// A ConfigMap or Secret in a projected volume.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectProjection {
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub items: Vec<KeyToPath>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DownwardApiProjection {
    #[serde(default, deserialize_with = "nullable")]
    pub items: Vec<DownwardApiFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiFile {
    pub path: String,
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub items: Vec<KeyToPath>,
    pub default_mode: Option<Value>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub items: Vec<KeyToPath>,
    pub default_mode: Option<Value>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    pub mode: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EmptyDirVolume {
    #[serde(default)]
    pub medium: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimVolume {
    pub claim_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub fs_group: Option<u32>,
    pub fs_group_change_policy: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub supplemental_groups: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub initial_delay_seconds: u64,
    pub period_seconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub success_threshold: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpGetAction {
    #[serde(default)]
    pub path: String,
    pub port: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TcpSocketAction {
    pub port: Value,
}

impl Container {
    /// A probe's port: a number, or the name of one of the container's ports.
    pub fn port(&self, port: &Value) -> Option<u16> {
        match port {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(name) => {
                self.ports.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port)
            }
            _ => None,
        }
    }
}

impl PodSpec {
    pub fn from_value(owner: &str, spec: &Value) -> Result<Self> {
        let raw: RawPodSpec =
            serde_json::from_value(spec.clone()).map_err(|e| Error::Manifest(format!("pod spec of {owner}: {e}")))?;
        if raw.containers.is_empty() {
            return Err(Error::Manifest(format!("{owner} has no containers")));
        }
        for c in raw.init_containers.iter().chain(&raw.containers) {
            for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe].into_iter().flatten() {
                let port = probe.http_get.as_ref().map(|h| &h.port).or(probe.tcp_socket.as_ref().map(|t| &t.port));
                match (&probe.exec, port) {
                    (Some(_), None) => {}
                    (None, Some(port)) if c.port(port).is_some() => {}
                    (None, Some(port)) => {
                        return Err(Error::Manifest(format!(
                            "{owner}: container {} probes port {port}, which it does not declare",
                            c.name
                        )))
                    }
                    _ => {
                        return Err(Error::Unsupported(format!(
                            "{owner}: container {}: a probe that is not exactly one of exec, httpGet, tcpSocket",
                            c.name
                        )))
                    }
                }
            }
        }
        Ok(PodSpec {
            init_containers: raw.init_containers,
            containers: raw.containers,
            restart_policy: raw.restart_policy,
            volumes: raw.volumes,
            security_context: raw.security_context,
            termination_grace_period_seconds: raw.termination_grace_period_seconds,
        })
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }
}

pub fn file_mode(owner: &str, mode: &Value) -> Result<u32> {
    let parsed = match mode {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.len() > 1 && s.starts_with('0') => u64::from_str_radix(&s[1..], 8).ok(),
        _ => None,
    };
    parsed
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| Error::Manifest(format!("{owner}: file mode {mode} is not a permission mode (0..=0777)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_modes_are_permission_bits_with_yaml_1_1_octal() {
        assert_eq!(file_mode("t", &json!(0o555)).ok(), Some(0o555));
        assert_eq!(file_mode("t", &json!("0555")).ok(), Some(0o555), "YAML 1.1 octal left as a string");
        assert_eq!(file_mode("t", &json!("0440")).ok(), Some(0o440));
        assert!(file_mode("t", &json!(555)).is_err(), "above 0777");
        assert!(file_mode("t", &json!("0999")).is_err());
        assert!(file_mode("t", &json!("555")).is_err());
        assert!(file_mode("t", &json!(-1)).is_err());
    }

    #[test]
    fn init_containers_sidecars_and_probes_by_port_name_are_read() {
        let spec = json!({
        "initContainers": [{"name": "i", "command": ["true"]}],
        "containers": [
            {"name": "a", "command": ["x"], "args": null, "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "m", "ports": [{"name": "http-metrics", "containerPort": 9187}],
             "livenessProbe": {"httpGet": {"path": "/", "port": "http-metrics"}}},
        ]});
        let pod = PodSpec::from_value("t", &spec).expect("valid");
        assert_eq!((pod.init_containers.len(), pod.containers.len()), (1, 2));
        assert!(pod.containers[0].args.is_empty());
        let m = pod.container("m").expect("m");
        assert_eq!(m.port(&json!("http-metrics")), Some(9187));
        let bad = json!({"containers": [{"name": "a", "livenessProbe": {"tcpSocket": {"port": "nope"}}}]});
        assert!(matches!(PodSpec::from_value("t", &bad), Err(Error::Manifest(m)) if m.contains("does not declare")));
        assert!(matches!(PodSpec::from_value("t", &json!({"containers": []})), Err(Error::Manifest(_))));
    }
}
