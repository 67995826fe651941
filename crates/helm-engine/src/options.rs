use serde::Serialize;

/// What `helm template` / `helm install --dry-run` would be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub release_name: String,
    pub namespace: String,
    /// `v1.23.0`; Helm's own default when `None`.
    pub kube_version: Option<String>,
    /// Extra API versions the cluster is said to serve, e.g. `monitoring.coreos.com/v1`.
    pub api_versions: Vec<String>,
    pub is_upgrade: bool,
    pub revision: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            release_name: "my-citus".into(),
            namespace: "citus".into(),
            kube_version: None,
            api_versions: Vec::new(),
            is_upgrade: false,
            revision: 1,
        }
    }
}

/// The JSON options object of `helm_render`; unknown keys are rejected by the library.
#[derive(Serialize)]
pub(crate) struct RenderOptionsJson<'a> {
    name: &'a str,
    namespace: &'a str,
    revision: u32,
    is_install: bool,
    is_upgrade: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_version: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    api_versions: &'a [String],
}

impl<'a> From<&'a RenderOptions> for RenderOptionsJson<'a> {
    fn from(o: &'a RenderOptions) -> Self {
        RenderOptionsJson {
            name: &o.release_name,
            namespace: &o.namespace,
            revision: o.revision,
            is_install: !o.is_upgrade,
            is_upgrade: o.is_upgrade,
            kube_version: o.kube_version.as_deref(),
            api_versions: &o.api_versions,
        }
    }
}

/// What `helm lint` would be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintOptions {
    pub strict: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    pub namespace: String,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions { strict: true, kube_version: None, namespace: "citus".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Unknown,
    Info,
    Warning,
    Error,
}

impl Severity {
    /// Helm's `support.Severity` numbering.
    pub(crate) fn from_helm(level: i64) -> Severity {
        match level {
            1 => Severity::Info,
            2 => Severity::Warning,
            3 => Severity::Error,
            _ => Severity::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintMessage {
    pub severity: Severity,
    pub path: String,
    pub text: String,
}

/// The findings of one lint run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintReport {
    pub messages: Vec<LintMessage>,
}

impl LintReport {
    pub fn errors(&self) -> impl Iterator<Item = &LintMessage> {
        self.messages.iter().filter(|m| m.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &LintMessage> {
        self.messages.iter().filter(|m| m.severity == Severity::Warning)
    }
}
