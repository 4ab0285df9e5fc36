//! `bench --tls`: the receivers serve HTTPS with a certificate from a CA the bench makes for the run, which
//! the started daemon trusts (`--ca-file`) and the raw-ceiling client trusts too, so that the ratio compares
//! HTTPS with HTTPS. Every handshake a receiver completes is counted (`Tally::tls_handshakes`). With `--http2`
//! the receivers offer HTTP/2 before HTTP/1.1, and a client that offers it too gets it.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, sync::Arc};

use anyhow::Context;

/// The run's CA and what each side needs of it.
pub struct BenchTls {
    /// The CA certificate (PEM), for the daemon's `--ca-file`.
    pub ca_file: PathBuf,
    /// The receivers' side: for each host, a certificate of its own that the CA signed.
    servers: HashMap<IpAddr, Arc<rustls::ServerConfig>>,
    /// The raw-ceiling client's side: trusts the CA only.
    pub client: rustls::ClientConfig,
}

impl BenchTls {
    /// A new CA, and for each of `hosts` a certificate it signed for that host and `localhost`; the CA's PEM
    /// is written into `dir`; the receivers offer HTTP/2 by ALPN when `http2`. One certificate per host, as each customer's endpoint has its own: a client
    /// keeps the certificate chain of every connection, so one certificate naming all 2,000 hosts of a run
    /// (12 KB) would have weighed on the daemon's memory as no endpoint's does. The hosts share one key,
    /// which only the receivers see.
    pub fn new(dir: &std::path::Path, hosts: &[IpAddr], http2: bool) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kit-webhooks bench CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let ca_file = dir.join("bench-ca.pem");
        std::fs::write(&ca_file, ca.pem())
            .with_context(|| format!("writing {}", ca_file.display()))?;

        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf_key_der = leaf_key.serialize_der();
        let mut servers = HashMap::new();
        for host in hosts {
            if servers.contains_key(host) {
                continue;
            }
            let names = vec![host.to_string(), "localhost".to_owned()];
            let leaf = rcgen::CertificateParams::new(names)?.signed_by(&leaf_key, &ca)?;
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key_der.clone().into());
            let mut server = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)?;
            // HTTP/1.1, as the plain receivers speak; HTTP/2 first when offered.
            server.alpn_protocols = match http2 {
                true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                false => vec![b"http/1.1".to_vec()],
            };
            servers.insert(*host, Arc::new(server));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(BenchTls {
            ca_file,
            servers,
            client,
        })
    }

    /// The receiver's side for `host`, one of the hosts the certificates were made for.
    pub fn server(&self, host: IpAddr) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        self.servers
            .get(&host)
            .cloned()
            .with_context(|| format!("no certificate was made for {host}"))
    }
}
