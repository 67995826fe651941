//! The control plane's certificates: one CA signs the API server's serving certificate and every client
//! certificate (the user name is the CN, the group is O), as kubeadm lays them out; a separate key pair
//! signs service-account tokens.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// The files of the PKI, under one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

/// A client identity: a certificate and key pair in the PKI directory.
#[derive(Debug, Clone)]
pub struct Client {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
}

impl Pki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub fn service_account_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    pub fn client(&self, name: &str) -> Client {
        Client { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) }
    }

    /// Makes the CA, the API server's certificate (valid for 127.0.0.1, localhost, `service_ip` and the
    /// `kubernetes` Service's names), the service-account key pair and one client certificate per
    /// `(file name, user, group)`.
    pub fn create(dir: &Path, service_ip: Ipv4Addr, clients: &[(&str, &str, Option<&str>)]) -> Result<Pki> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { what: "creating", path: dir.into(), source })?;
        let pki = Pki { dir: dir.to_owned() };
        let ca = Ca::new()?;
        write(&pki.ca(), &ca.params.clone().self_signed(&ca.key)?.pem())?;
        write(&pki.ca_key(), &ca.key.serialize_pem())?;

        let mut serving = leaf("kube-apiserver", None, ExtendedKeyUsagePurpose::ServerAuth);
        serving.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V4(service_ip)),
            SanType::DnsName("localhost".try_into()?),
        ];
        for name in
            ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
        {
            serving.subject_alt_names.push(SanType::DnsName(name.try_into()?));
        }
        ca.sign(serving, &pki.serving_cert(), &pki.serving_key())?;

        let sa = KeyPair::generate()?;
        write(&pki.service_account_key(), &sa.serialize_pem())?;
        write(&pki.service_account_pub(), &sa.public_key_pem())?;

        for (file, user, group) in clients {
            let client = pki.client(file);
            ca.sign(leaf(user, *group, ExtendedKeyUsagePurpose::ClientAuth), &client.cert, &client.key)?;
        }
        Ok(pki)
    }
}

impl Ca {
    fn new() -> Result<Ca> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("local-control-plane-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        Ok(Ca { params, key: KeyPair::generate()? })
    }

    fn sign(&self, params: CertificateParams, cert: &Path, key: &Path) -> Result<()> {
        let pair = KeyPair::generate()?;
        let issuer = self.params.clone().self_signed(&self.key)?;
        let signed = params.signed_by(&pair, &issuer, &self.key)?;
        write(cert, &signed.pem())?;
        write(key, &pair.serialize_pem())
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn leaf(common_name: &str, organization: Option<&str>, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, organization);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io { what: "writing", path: path.into(), source })
}
