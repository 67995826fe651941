//! The agent's calls to the API server, blocking, on a runtime of its own: as the node (`system:node:<name>`,
//! scoped by the Node authorizer to what its pods use) and, for the volume provisioner, as an identity that
//! may create PersistentVolumes.

use std::path::Path;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// A client and the runtime that drives it; `block_on` works from any thread.
pub struct Clients {
    rt: tokio::runtime::Runtime,
    /// The node's identity: pods, their Secrets/ConfigMaps/claims, its Node and Lease.
    pub node: Client,
    /// Where the API server listens (the host side of the `kubernetes` Service).
    pub api_server: std::net::SocketAddr,
    /// The identity of the node's add-ons, which a node may not act as: the volume provisioner
    /// (PersistentVolumes, the StorageClass) and the name service (EndpointSlices, as CoreDNS reads them).
    pub provisioner: Client,
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

impl Clients {
    pub fn new(node_kubeconfig: &Path, provisioner_kubeconfig: &Path) -> Result<Clients> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| Error::Io { context: "starting the agent's runtime".into(), source })?;
        let config = |path: &Path| -> Result<Config> {
            let what = format!("reading kubeconfig {}", path.display());
            let kc = Kubeconfig::read_from(path).map_err(|e| Error::Manifest(format!("{what}: {e}")))?;
            rt.block_on(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()))
                .map_err(|e| Error::Manifest(format!("{what}: {e}")))
        };
        let client = |config: Config, path: &Path| {
            Client::try_from(config).map_err(api_error(format!("a client from {}", path.display())))
        };
        let node_config = config(node_kubeconfig)?;
        let url = &node_config.cluster_url;
        let api_server = url
            .host()
            .zip(url.port_u16())
            .and_then(|(host, port)| format!("{}:{port}", host.trim_matches(['[', ']'])).parse().ok())
            .ok_or_else(|| Error::Manifest(format!("the API server address {url} is not an IP address and port")))?;
        let node = rt.block_on(async { client(node_config, node_kubeconfig) })?;
        let provisioner_config = config(provisioner_kubeconfig)?;
        // Building a client spawns its buffer task: it needs the runtime's context.
        let provisioner = rt.block_on(async { client(provisioner_config, provisioner_kubeconfig) })?;
        Ok(Clients { rt, node, api_server, provisioner })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs `f` on the runtime in the background (a server); the handle stops it.
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) -> tokio::task::AbortHandle {
        self.rt.spawn(f).abort_handle()
    }

    /// Forwards every connection `listener` accepts to `to` (the API server, from the host's network).
    pub fn forward(
        &self,
        listener: std::net::TcpListener,
        to: std::net::SocketAddr,
    ) -> Result<tokio::task::AbortHandle> {
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Io { context: "a Service's listener".into(), source })?;
        Ok(self.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // A connection that cannot be forwarded is closed: the client sees it refused.
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        }))
    }

    /// A token of service account `account` bound to pod `pod` (uid `uid`), as the kubelet requests one for a
    /// projected volume; no audience means the API server's own.
    pub fn service_account_token(
        &self,
        namespace: &str,
        account: &str,
        (pod, uid): (&str, &str),
        audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Result<String> {
        use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.node.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
                expiration_seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.into()),
                    uid: Some(uid.into()),
                }),
            },
            ..TokenRequest::default()
        };
        let granted = self
            .block_on(api.create_token_request(account, &PostParams::default(), &request))
            .map_err(api_error(format!("requesting a token of service account {namespace}/{account} for pod {pod}")))?;
        granted
            .status
            .map(|s| s.token)
            .ok_or_else(|| Error::Agent(format!("the token request for pod {namespace}/{pod} returned no token")))
    }

    /// Every pod bound to `node`, in every namespace.
    pub fn pods_on(&self, node: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::all(self.node.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        Ok(self.block_on(api.list(&params)).map_err(api_error(format!("listing the pods of node {node}")))?.items)
    }

    pub fn services(&self, namespace: &str) -> Result<Vec<Service>> {
        let api: Api<Service> = Api::namespaced(self.node.clone(), namespace);
        Ok(self
            .block_on(api.list(&ListParams::default()))
            .map_err(api_error(format!("listing the Services of {namespace}")))?
            .items)
    }

    /// The namespace's EndpointSlices, read as the name service.
    pub fn endpoint_slices(&self, namespace: &str) -> Result<Vec<EndpointSlice>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.provisioner.clone(), namespace);
        Ok(self
            .block_on(api.list(&ListParams::default()))
            .map_err(api_error(format!("listing the EndpointSlices of {namespace}")))?
            .items)
    }

    /// A namespaced object read as the node, None when it does not exist.
    pub fn get_opt<K>(&self, namespace: &str, name: &str) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.node.clone(), namespace);
        self.block_on(api.get_opt(name))
            .map_err(api_error(format!("reading {} {namespace}/{name}", K::kind(&K::DynamicType::default()))))
    }

    pub fn get_volume(&self, name: &str) -> Result<Option<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.node.clone());
        self.block_on(api.get_opt(name)).map_err(api_error(format!("reading PersistentVolume {name}")))
    }

    /// Merge-patches a pod's status.
    pub fn patch_pod_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.node.clone(), namespace);
        let patch = serde_json::json!({ "status": status });
        self.block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .map(drop)
            .map_err(api_error(format!("updating the status of pod {namespace}/{name}")))
    }

    /// The kubelet's last word on a pod: deleted for good, only if it is still the pod of that uid.
    pub fn delete_pod_now(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.node.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.block_on(api.delete(name, &params)) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_error(format!("deleting pod {namespace}/{name}"))(e)),
        }
    }

    /// Creates the node's Node object, or leaves the one that exists.
    pub fn register_node(&self, node: &Node) -> Result<()> {
        let api: Api<Node> = Api::all(self.node.clone());
        match self.block_on(api.create(&PostParams::default(), node)) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_error("registering the node")(e)),
        }
    }

    pub fn patch_node_status(&self, name: &str, status: &Value) -> Result<()> {
        let api: Api<Node> = Api::all(self.node.clone());
        let patch = serde_json::json!({ "status": status });
        self.block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .map(drop)
            .map_err(api_error(format!("updating the status of node {name}")))
    }

    /// Server-side apply of the node's Lease.
    pub fn apply_lease(&self, name: &str, lease: &Value) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.node.clone(), "kube-node-lease");
        self.apply(&api, &format!("Lease kube-node-lease/{name}"), name, lease)
    }

    /// Server-side apply of a cluster-scoped object, as the provisioner.
    pub fn apply_cluster<K>(&self, name: &str, object: &Value) -> Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.provisioner.clone());
        self.apply(&api, &format!("{} {name}", K::kind(&K::DynamicType::default())), name, object)
    }

    fn apply<K>(&self, api: &Api<K>, what: &str, name: &str, object: &Value) -> Result<()>
    where
        K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        self.block_on(api.patch(name, &PatchParams::apply("local-cluster-agent").force(), &Patch::Apply(object)))
            .map(drop)
            .map_err(api_error(format!("applying {what}")))
    }

    pub fn claims(&self) -> Result<Vec<PersistentVolumeClaim>> {
        let api: Api<PersistentVolumeClaim> = Api::all(self.provisioner.clone());
        Ok(self.block_on(api.list(&ListParams::default())).map_err(api_error("listing claims"))?.items)
    }

    pub fn volumes(&self) -> Result<Vec<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.provisioner.clone());
        Ok(self.block_on(api.list(&ListParams::default())).map_err(api_error("listing volumes"))?.items)
    }

    pub fn delete_volume(&self, name: &str) -> Result<()> {
        let api: Api<PersistentVolume> = Api::all(self.provisioner.clone());
        match self.block_on(api.delete(name, &DeleteParams::default())) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(format!("deleting PersistentVolume {name}"))(e)),
        }
    }
}
