use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::document::ObjectKey;
use crate::Error;

/// The events Helm runs hooks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    PreInstall,
    PostInstall,
    PreDelete,
    PostDelete,
    PreUpgrade,
    PostUpgrade,
    PreRollback,
    PostRollback,
    Test,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PostInstall => "post-install",
            HookEvent::PreDelete => "pre-delete",
            HookEvent::PostDelete => "post-delete",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostUpgrade => "post-upgrade",
            HookEvent::PreRollback => "pre-rollback",
            HookEvent::PostRollback => "post-rollback",
            HookEvent::Test => "test",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookEvent {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "pre-install" => HookEvent::PreInstall,
            "post-install" => HookEvent::PostInstall,
            "pre-delete" => HookEvent::PreDelete,
            "post-delete" => HookEvent::PostDelete,
            "pre-upgrade" => HookEvent::PreUpgrade,
            "post-upgrade" => HookEvent::PostUpgrade,
            "pre-rollback" => HookEvent::PreRollback,
            "post-rollback" => HookEvent::PostRollback,
            // `test-success` is Helm 2's name, still accepted by Helm 3 and 4.
            "test" | "test-success" => HookEvent::Test,
            _ => return Err(()),
        })
    }
}

/// `helm.sh/hook-delete-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

/// A hook object's annotations, parsed once for every crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub key: ObjectKey,
    pub events: Vec<HookEvent>,
    /// Helm's weight is a Go `int` (64 bits).
    pub weight: i64,
    /// As written; empty means Helm's default, before-hook-creation.
    pub delete_policies: Vec<DeletePolicy>,
}

/// Helm's install order of kinds (its `InstallOrder`): it breaks ties between hooks of equal weight and name.
pub const KIND_INSTALL_ORDER: [&str; 38] = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|e| !e.is_empty())
}

impl Hook {
    /// The hook an object declares (None without `helm.sh/hook`). Unknown events, weights that are not
    /// integers and unknown delete policies are errors naming the object.
    pub fn of(value: &Value) -> Result<Option<Hook>, Error> {
        let annotation =
            |key: &str| value.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str);
        let Some(events) = annotation("helm.sh/hook") else { return Ok(None) };
        let key = ObjectKey::of(value)?;
        let bad = |annotation: &'static str, value: &str, reason: &str| Error::BadHook {
            object: key.to_string(),
            annotation,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let events = list(events)
            .map(|e| e.parse().map_err(|()| bad("helm.sh/hook", e, "is not a Helm hook event")))
            .collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            return Err(bad("helm.sh/hook", "", "names no event"));
        }
        let weight = match annotation("helm.sh/hook-weight") {
            None => 0,
            Some(w) => w.trim().parse().map_err(|_| bad("helm.sh/hook-weight", w, "is not an integer"))?,
        };
        let delete_policies = list(annotation("helm.sh/hook-delete-policy").unwrap_or_default())
            .map(|p| match p {
                "before-hook-creation" => Ok(DeletePolicy::BeforeHookCreation),
                "hook-succeeded" => Ok(DeletePolicy::HookSucceeded),
                "hook-failed" => Ok(DeletePolicy::HookFailed),
                other => Err(bad("helm.sh/hook-delete-policy", other, "is not a Helm delete policy")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Hook { key, events, weight, delete_policies }))
    }

    pub fn runs_on(&self, event: HookEvent) -> bool {
        self.events.contains(&event)
    }

    /// Deleted before a new one is created: explicitly, or by Helm's default when no policy is given.
    pub fn delete_before_creation(&self) -> bool {
        self.delete_policies.is_empty() || self.delete_policies.contains(&DeletePolicy::BeforeHookCreation)
    }

    pub fn delete_on_success(&self) -> bool {
        self.delete_policies.contains(&DeletePolicy::HookSucceeded)
    }

    pub fn delete_on_failure(&self) -> bool {
        self.delete_policies.contains(&DeletePolicy::HookFailed)
    }
}

/// Helm's execution order of the hooks of one event: weight, then name, then kind install order.
pub fn sort_hooks(hooks: &mut [Hook]) {
    let rank = |kind: &str| KIND_INSTALL_ORDER.iter().position(|k| *k == kind).unwrap_or(KIND_INSTALL_ORDER.len());
    hooks.sort_by(|a, b| (a.weight, &a.key.name, rank(&a.key.kind)).cmp(&(b.weight, &b.key.name, rank(&b.key.kind))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, name: &str, annotations: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "annotations": annotations}})
    }

    fn hook(kind: &str, name: &str, annotations: Value) -> Hook {
        Hook::of(&object(kind, name, annotations)).expect("valid").expect("a hook")
    }

    #[test]
    fn hooks_sort_by_weight_then_name_then_kind() {
        let mut hooks = vec![
            hook("Job", "b-job", json!({"helm.sh/hook": "pre-upgrade"})),
            hook("ConfigMap", "scripts", json!({"helm.sh/hook": "pre-upgrade", "helm.sh/hook-weight": "-10"})),
            hook("Job", "a", json!({"helm.sh/hook": "pre-upgrade, post-upgrade"})),
            hook("ConfigMap", "a", json!({"helm.sh/hook": "pre-upgrade"})),
        ];
        sort_hooks(&mut hooks);
        let order: Vec<_> = hooks.iter().map(|h| h.key.to_string()).collect();
        assert_eq!(order, ["ConfigMap scripts", "ConfigMap a", "Job a", "Job b-job"]);
        assert!(hooks[2].runs_on(HookEvent::PostUpgrade) && !hooks[2].runs_on(HookEvent::PreInstall));
    }

    #[test]
    fn delete_policies_default_to_before_hook_creation() {
        let default = hook("Job", "j", json!({"helm.sh/hook": "test"}));
        assert!(default.delete_before_creation() && !default.delete_on_success() && !default.delete_on_failure());
        let explicit = hook(
            "Job",
            "j",
            json!({"helm.sh/hook": "test-success", "helm.sh/hook-delete-policy": "hook-succeeded,hook-failed"}),
        );
        assert!(!explicit.delete_before_creation() && explicit.delete_on_success() && explicit.delete_on_failure());
        assert!(explicit.runs_on(HookEvent::Test));
    }

    #[test]
    fn annotations_helm_would_misread_are_errors_naming_the_object() {
        let cases = [
            (
                json!({"helm.sh/hook": "post-install", "helm.sh/hook-weight": "ten"}),
                "Job j: annotation helm.sh/hook-weight=\"ten\" is not an integer",
            ),
            (
                json!({"helm.sh/hook": "post-instal"}),
                "Job j: annotation helm.sh/hook=\"post-instal\" is not a Helm hook event",
            ),
            (
                json!({"helm.sh/hook": "test", "helm.sh/hook-delete-policy": "always"}),
                "Job j: annotation helm.sh/hook-delete-policy=\"always\" is not a Helm delete policy",
            ),
        ];
        for (annotations, message) in cases {
            assert_eq!(Hook::of(&object("Job", "j", annotations)).map_err(|e| e.to_string()), Err(message.to_owned()));
        }
        assert_eq!(Hook::of(&json!({"kind": "Job", "metadata": {"name": "plain"}})), Ok(None));
    }
}
