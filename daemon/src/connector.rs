//! The vetted connector: resolves a webhook's host once, drops every address the [`AddressGuard`] refuses,
//! and connects to a remaining address directly, so the address checked is the address used (no second
//! lookup for a DNS rebinding to exploit). IP-literal hosts go through the same check, which a filtering
//! resolver alone would miss: hyper-util's `HttpConnector` skips its resolver for them. Each connection
//! made is counted while it is open (`kit_webhooks_daemon_connections_open`): the size of the pool.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper::{rt::ReadBufCursor, Uri};
use hyper_util::{client::legacy::connect::Connected, rt::TokioIo};
use metrics::Gauge;
use tokio::net::TcpStream;

use crate::address::AddressGuard;

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the URL has no host")]
    NoHost,
    #[error("could not resolve `{host}`: {source}")]
    Dns {
        host: String,
        source: std::io::Error,
    },
    /// Every address of the host is refused by the SSRF guard. The addresses are not named: the attempt is
    /// shown to the webhook's admin, who must not learn what internal names resolve to.
    #[error("refused to connect to `{host}`: it resolves to no globally routable address (and none in --allow-network)")]
    Blocked { host: String },
    #[error("connecting to {address} timed out after {timeout:?}")]
    Timeout {
        address: SocketAddr,
        timeout: Duration,
    },
    #[error("connecting to {address}: {source}")]
    Io {
        address: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct GuardedConnector {
    guard: Arc<AddressGuard>,
    connect_timeout: Duration,
    open: Gauge,
}

impl GuardedConnector {
    /// Connects to addresses `guard` permits, counting the connections open in `open`.
    pub fn new(guard: AddressGuard, connect_timeout: Duration, open: Gauge) -> Self {
        GuardedConnector {
            guard: Arc::new(guard),
            connect_timeout,
            open,
        }
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = Connection;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let guard = self.guard.clone();
        let timeout = self.connect_timeout;
        let open = self.open.clone();
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectError::NoHost)?;
            // `[::1]` in a URL is `::1` to the resolver.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("http") {
                    80
                } else {
                    443
                });
            let resolved: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|source| ConnectError::Dns {
                        host: host.clone(),
                        source,
                    })?
                    .map(|addr| addr.ip())
                    .collect(),
            };
            let permitted: Vec<IpAddr> = resolved
                .iter()
                .copied()
                .filter(|ip| guard.permits(*ip))
                .collect();
            if permitted.is_empty() {
                return Err(ConnectError::Blocked { host });
            }
            let mut last = None;
            for ip in permitted {
                let address = SocketAddr::new(ip, port);
                match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(Connection::new(TokioIo::new(stream), open));
                    }
                    Ok(Err(source)) => last = Some(ConnectError::Io { address, source }),
                    Err(_) => last = Some(ConnectError::Timeout { address, timeout }),
                }
            }
            Err(last.unwrap_or(ConnectError::NoHost))
        })
    }
}

/// A connection to an endpoint, counted in its gauge while it is open.
pub struct Connection {
    io: TokioIo<TcpStream>,
    open: Gauge,
}

impl Connection {
    fn new(io: TokioIo<TcpStream>, open: Gauge) -> Self {
        open.increment(1.0);
        Connection { io, open }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

impl hyper_util::client::legacy::connect::Connection for Connection {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl hyper::rt::Read for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
