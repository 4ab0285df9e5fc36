//! Real HTTP(S) receivers on loopback for the delivery tests: each records every request it gets and answers
//! as the test scripts it (status, headers, body, delay). HTTPS receivers present a certificate from a CA made
//! for the test run, which the daemon trusts through `--ca-file`.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::Notify};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// HTTP/1.1 or HTTP/2, as the connection negotiated.
    pub version: hyper::Version,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// Checks the request's signature with `secret`, as a receiver does.
    pub fn verify(&self, secret: &str) -> Result<(), kit_webhooks::signature::SignatureError> {
        use kit_webhooks::signature;
        signature::verify(
            secret,
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
            &self.body,
            signature::unix_now(),
            signature::DEFAULT_TOLERANCE_SECONDS,
        )
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Decides the reply to the `n`th request (0-based) the receiver has seen.
pub type Script = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

pub fn always(reply: Reply) -> Script {
    Arc::new(move |_, _| reply.clone())
}

/// A CA for the test run and a loopback certificate it signed.
pub struct TestCa {
    pub ca_file: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Kit Webhooks test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut server_config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server TLS config");
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestCa {
            ca_file,
            server_config: Arc::new(server_config),
            _dir: dir,
        }
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    concurrency: Arc<Concurrency>,
    task: tokio::task::JoinHandle<()>,
}

/// What every connection of a receiver shares.
#[derive(Clone)]
struct Connections {
    seen: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    concurrency: Arc<Concurrency>,
    script: Script,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// After how many requests a connection is ended (`usize::MAX`: never).
    requests_per_connection: usize,
}

/// A connection's byte stream, TLS or not.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Serves every connection `listener` accepts.
async fn accept(listener: TcpListener, connections: Connections) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections
            .concurrency
            .connections
            .fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connections.clone().serve(stream));
    }
}

impl Connections {
    /// Answers the requests of one connection, ending it gracefully once it has taken its share.
    async fn serve(self, stream: tokio::net::TcpStream) {
        let io: Box<dyn Io> = match &self.tls {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => Box::new(stream),
                Err(_) => return,
            },
            None => Box::new(stream),
        };
        let limit = self.requests_per_connection;
        let taken = AtomicUsize::new(0);
        let enough = Arc::new(Notify::new());
        let service_enough = enough.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let this = self.clone();
            let last = taken.fetch_add(1, Ordering::SeqCst) + 1 == limit;
            if last {
                service_enough.notify_one();
            }
            // Over HTTP/1.1 the last response says so, as servers do; a graceful shutdown alone could close the
            // connection idle, racing the client's next request on it.
            let closing = last && request.version() == hyper::Version::HTTP_11;
            async move {
                let _open = Open::new(&this.concurrency);
                let mut response = answer(request, &this.seen, &this.arrived, &this.script).await;
                if closing {
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = enough.notified() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// Requests being answered at once: now, and the most seen; and the connections accepted.
#[derive(Default)]
struct Concurrency {
    open: AtomicUsize,
    busiest: AtomicUsize,
    connections: AtomicUsize,
}

/// Counts one request as open until dropped.
struct Open<'a>(&'a Concurrency);

impl<'a> Open<'a> {
    fn new(concurrency: &'a Concurrency) -> Self {
        let now = concurrency.open.fetch_add(1, Ordering::SeqCst) + 1;
        concurrency.busiest.fetch_max(now, Ordering::SeqCst);
        Open(concurrency)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn http(script: Script) -> Receiver {
        Self::start(script, None).await
    }

    pub async fn https(ca: &TestCa, script: Script) -> Receiver {
        Self::start(
            script,
            Some(tokio_rustls::TlsAcceptor::from(ca.server_config.clone())),
        )
        .await
    }

    /// An HTTPS receiver that speaks HTTP/1.1 only, as an endpoint that offers no HTTP/2 by ALPN.
    pub async fn https_http1_only(ca: &TestCa, script: Script) -> Receiver {
        let mut config = (*ca.server_config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start(
            script,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    /// A plain HTTP receiver that closes each connection once it has taken `requests` requests on it (its
    /// last response says `Connection: close`), as servers do (nginx's `keepalive_requests`).
    pub async fn http_ending_connections_after(requests: usize, script: Script) -> Receiver {
        Self::start_ending_connections(script, None, requests).await
    }

    /// An HTTPS receiver that ends each connection gracefully once it has taken `requests` requests on it
    /// (GOAWAY over HTTP/2), as load balancers do (nginx's `keepalive_requests`).
    pub async fn https_ending_connections_after(
        ca: &TestCa,
        requests: usize,
        script: Script,
    ) -> Receiver {
        let tls = tokio_rustls::TlsAcceptor::from(ca.server_config.clone());
        Self::start_ending_connections(script, Some(tls), requests).await
    }

    async fn start(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        Self::start_ending_connections(script, tls, usize::MAX).await
    }

    async fn start_ending_connections(
        script: Script,
        tls: Option<tokio_rustls::TlsAcceptor>,
        requests_per_connection: usize,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        let base = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let (seen, arrived, concurrency): (_, _, Arc<Concurrency>) = Default::default();
        let task = tokio::spawn(accept(
            listener,
            Connections {
                seen: Arc::clone(&seen),
                arrived: Arc::clone(&arrived),
                concurrency: Arc::clone(&concurrency),
                script,
                tls,
                requests_per_connection,
            },
        ));
        Receiver {
            addr,
            base,
            seen,
            arrived,
            concurrency,
            task,
        }
    }

    /// A URL on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The most requests this receiver was answering at once.
    pub fn busiest(&self) -> usize {
        self.concurrency.busiest.load(Ordering::SeqCst)
    }

    /// The connections this receiver has accepted.
    pub fn connections(&self) -> usize {
        self.concurrency.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests have arrived, failing the test after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {n} requests within {timeout:?}, got {}",
                    self.requests().len()
                );
            }
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    seen: &Mutex<Vec<Received>>,
    arrived: &Notify,
    script: &Script,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let version = request.version();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        path,
        headers,
        body,
        at: Instant::now(),
        version,
    };
    let n = {
        let mut seen = seen.lock().expect("lock");
        seen.push(received.clone());
        seen.len() - 1
    };
    arrived.notify_waiters();
    let reply = script(&received, n);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Full::new(Bytes::from(reply.body)))
        .expect("response")
}
