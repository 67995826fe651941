use serde_json::Value;

/// The pod template of a workload object: where it is and what it holds. A Pod is its own template.
#[derive(Debug, Clone, Copy)]
pub struct PodTemplate<'a> {
    /// JSON pointer of the template in the object ("" for a Pod).
    pub pointer: &'static str,
    /// The template (`metadata` + `spec`).
    pub value: &'a Value,
}

impl<'a> PodTemplate<'a> {
    /// The template of every workload kind; None for other kinds.
    pub fn of(object: &'a Value) -> Option<Self> {
        let pointer = match object["kind"].as_str()? {
            "Pod" => "",
            "StatefulSet" | "Deployment" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
                "/spec/template"
            }
            "CronJob" => "/spec/jobTemplate/spec/template",
            _ => return None,
        };
        Some(PodTemplate { pointer, value: object.pointer(pointer)? })
    }

    /// JSON pointer of the pod spec in the object.
    pub fn spec_pointer(&self) -> String {
        format!("{}/spec", self.pointer)
    }

    pub fn spec(&self) -> &'a Value {
        &self.value["spec"]
    }

    pub fn labels(&self) -> &'a Value {
        &self.value["metadata"]["labels"]
    }
}

/// Every container of a pod spec, init containers first.
pub fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"].into_iter().flat_map(move |k| spec[k].as_array().into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_workload_kind_has_its_template() {
        let spec = json!({"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]});
        let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": spec});
        for kind in ["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"] {
            let object = json!({"kind": kind, "spec": {"template": template}});
            let t = PodTemplate::of(&object).expect(kind);
            assert_eq!((t.spec_pointer().as_str(), t.labels()), ("/spec/template/spec", &json!({"a": "b"})));
        }
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}});
        assert_eq!(
            PodTemplate::of(&cron).map(|t| t.spec_pointer()),
            Some("/spec/jobTemplate/spec/template/spec".into())
        );
        let pod = json!({"kind": "Pod", "metadata": {"labels": {"p": "q"}}, "spec": spec});
        let t = PodTemplate::of(&pod).expect("pod");
        assert_eq!((t.spec_pointer().as_str(), t.labels()), ("/spec", &json!({"p": "q"})));
        let names: Vec<_> = containers(t.spec()).map(|c| c["name"].as_str()).collect();
        assert_eq!(names, [Some("i"), Some("c")]);
        assert!(PodTemplate::of(&json!({"kind": "Service"})).is_none());
    }
}
