//! Test certificates made with rcgen: one CA per test, leaf certificates signed by it, written
//! as PEM files that ringway loads and clients (curl, openssl, rustls) verify against the CA.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

use super::TempDir;

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub dir: TempDir,
    /// The CA certificate (PEM file) clients trust.
    pub ca_file: PathBuf,
    pub ca_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ringway test CA");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).expect("CA cert");
        let dir = TempDir::new("certs");
        let ca_file = dir.write("ca.pem", &cert.pem());
        TestCa {
            issuer: Issuer::new(params, key),
            dir,
            ca_file,
            ca_der: cert.der().to_vec(),
        }
    }

    /// A leaf certificate for `names` with subject CN `cn`: (chain file, key file).
    pub fn leaf(&self, file_stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let cert_file = self.dir.write(&format!("{file_stem}.pem"), &cert.pem());
        let key_file = self
            .dir
            .write(&format!("{file_stem}.key"), &key.serialize_pem());
        (cert_file, key_file)
    }
}
