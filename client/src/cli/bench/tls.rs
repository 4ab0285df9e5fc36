//! `bench --tls`: the receivers serve HTTPS with a certificate from a CA the bench makes for the run, which
//! the started daemon trusts (`--ca-file`) and the raw-ceiling client trusts too, so that the ratio compares
//! HTTPS with HTTPS. Every handshake a receiver completes is counted (`Tally::tls_handshakes`).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;

/// The run's CA and what each side needs of it.
pub struct BenchTls {
    /// The CA certificate (PEM), for the daemon's `--ca-file`.
    pub ca_file: PathBuf,
    /// The receivers' side: the loopback certificate the CA signed.
    pub server: Arc<rustls::ServerConfig>,
    /// The raw-ceiling client's side: trusts the CA only.
    pub client: rustls::ClientConfig,
}

impl BenchTls {
    /// A new CA, and a certificate it signed for `localhost` and each of `hosts`; the CA's PEM is written
    /// into `dir`.
    pub fn new(dir: &std::path::Path, hosts: &[std::net::IpAddr]) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kit-webhooks bench CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let leaf_key = rcgen::KeyPair::generate()?;
        let mut names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        names.sort_unstable();
        names.dedup();
        names.push("localhost".to_owned());
        let leaf = rcgen::CertificateParams::new(names)?.signed_by(&leaf_key, &ca)?;
        let ca_file = dir.join("bench-ca.pem");
        std::fs::write(&ca_file, ca.pem())
            .with_context(|| format!("writing {}", ca_file.display()))?;

        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)?;
        // HTTP/1.1, as the plain receivers speak and the daemon sends.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(BenchTls {
            ca_file,
            server: Arc::new(server),
            client,
        })
    }
}
