//! Test certificates made with rcgen: a CA, server certificates for `localhost` and
//! `127.0.0.1`, client certificates, and the same from a second, untrusted CA; written
//! as PEM files into a temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate's PEM file.
    pub pem: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

impl Ca {
    /// A new CA, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem = write(dir, &format!("{name}.pem"), &cert.pem());
        Ca { cert, key, pem }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), for a server or a
    /// client, optionally expired; returns (certificate PEM file, key PEM file).
    pub fn leaf(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        client: bool,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            write(dir, &format!("{file}.pem"), &cert.pem()),
            write(dir, &format!("{file}.key"), &key.serialize_pem()),
        )
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, dir: &Path, file: &str) -> (PathBuf, PathBuf) {
        self.leaf(dir, file, &["localhost", "127.0.0.1"], false, false)
    }

    /// A client certificate named `user`.
    pub fn client(&self, dir: &Path, file: &str) -> (PathBuf, PathBuf) {
        self.leaf(dir, file, &[file], true, false)
    }
}
