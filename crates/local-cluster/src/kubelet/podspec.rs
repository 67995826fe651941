//! The parts of a Kubernetes pod spec that the harness acts on, read from rendered JSON.
//! Fields that only matter to a scheduler or a real kubelet (resources, affinity, ...) are ignored;
//! fields whose behaviour the harness does not emulate are rejected in [`PodSpec::check_supported`].

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// `null` in rendered YAML (`args:` with nothing after it) means "not set".
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod as the harness runs it: one container plus the pod-level settings.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub container: Container,
    pub volumes: Vec<Volume>,
    pub security_context: PodSecurityContext,
    pub termination_grace_period_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    #[serde(default, deserialize_with = "nullable")]
    init_containers: Vec<Value>,
    containers: Vec<Container>,
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
    pub working_dir: Option<String>,
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

impl PodSpec {
    /// Reads a pod spec (`spec` of a Pod, `spec.template.spec` of a StatefulSet or Job). The harness runs
    /// exactly one container per pod, as its own process tree; what it would have to fake is refused
    /// instead of silently skipped.
    pub fn from_value(owner: &str, spec: &Value) -> Result<Self> {
        let raw: RawPodSpec = serde_json::from_value(spec.clone())
            .map_err(|e| Error::Manifest(format!("pod spec of {owner}: {e}")))?;
        if !raw.init_containers.is_empty() {
            return Err(Error::Unsupported(format!(
                "{owner} has init containers (e.g. volumePermissions.enabled)"
            )));
        }
        let count = raw.containers.len();
        let Ok([container]) = <[Container; 1]>::try_from(raw.containers) else {
            return Err(Error::Unsupported(format!(
                "{owner} has {count} containers; only single-container pods run here (no sidecars such as metrics.enabled)"
            )));
        };
        if let Some(m) = container
            .volume_mounts
            .iter()
            .find(|m| m.sub_path.is_some())
        {
            return Err(Error::Unsupported(format!(
                "{owner}: subPath mount of volume {}",
                m.name
            )));
        }
        if container
            .readiness_probe
            .as_ref()
            .is_some_and(|p| p.exec.is_none())
        {
            return Err(Error::Unsupported(format!(
                "{owner}: readiness probes other than exec"
            )));
        }
        Ok(PodSpec {
            container,
            volumes: raw.volumes,
            security_context: raw.security_context,
            termination_grace_period_seconds: raw.termination_grace_period_seconds,
        })
    }
}

/// A file mode from the manifest. The API server reads YAML 1.1, where `0555` is octal; a YAML 1.2 reader
/// leaves it a string, so a string of octal digits with a leading 0 is read the way the API server would.
/// Kubernetes only accepts 0..=0777.
pub fn file_mode(owner: &str, mode: &Value) -> Result<u32> {
    let parsed = match mode {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.len() > 1 && s.starts_with('0') => {
            u64::from_str_radix(&s[1..], 8).ok()
        }
        _ => None,
    };
    parsed
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Error::Manifest(format!(
                "{owner}: file mode {mode} is not a permission mode (0..=0777)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_modes_are_permission_bits_with_yaml_1_1_octal() {
        assert_eq!(file_mode("t", &json!(0o555)).ok(), Some(0o555));
        assert_eq!(
            file_mode("t", &json!("0555")).ok(),
            Some(0o555),
            "YAML 1.1 octal left as a string"
        );
        assert_eq!(file_mode("t", &json!("0440")).ok(), Some(0o440));
        assert!(file_mode("t", &json!(555)).is_err(), "above 0777");
        assert!(file_mode("t", &json!("0999")).is_err());
        assert!(file_mode("t", &json!("555")).is_err());
        assert!(file_mode("t", &json!(-1)).is_err());
    }

    #[test]
    fn pods_with_sidecars_or_init_containers_are_refused() {
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        assert!(
            matches!(PodSpec::from_value("t", &two), Err(Error::Unsupported(m)) if m.contains("2 containers"))
        );
        let init = json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]});
        assert!(matches!(
            PodSpec::from_value("t", &init),
            Err(Error::Unsupported(_))
        ));
        let null_args = json!({"containers": [{"name": "a", "command": ["x"], "args": null}]});
        assert!(PodSpec::from_value("t", &null_args).is_ok_and(|p| p.container.args.is_empty()));
    }
}
