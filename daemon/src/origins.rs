//! What the daemon knows of each HTTPS origin (host and port): whether its endpoint speaks HTTP/2, and if it
//! does, the one connection all of its requests share as streams.
//!
//! An origin's first request connects here, through the same vetted connector and TLS configuration as any
//! other, and the endpoint's ALPN answer routes the origin's requests from then on: over HTTP/2, on this
//! module's connection; over HTTP/1.1, through hyper-util's pooled client (`sender`), a connection per
//! outstanding request kept alive between them. HTTP/2 is not left to the pooled client because that client
//! boxes a future of several kilobytes for every request (checking out, connecting, sending), where a stream
//! of a connection at hand needs a few hundred bytes, and a daemon holding thousands of requests holds
//! thousands of them (docs/PERFORMANCE.md, step 57).
//!
//! Requests that arrive while an origin's first connection is being made wait for it and share its outcome,
//! so that a burst to a new origin opens one connection, not one each. A connection that has closed, a first
//! connection that failed, and an origin idle for [`IDLE_TIMEOUT`] are forgotten: the next request finds out
//! again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::uri::Authority;
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::{
    client::legacy::connect::Connection as _,
    rt::{TokioExecutor, TokioTimer},
};
use tower_service::Service as _;

use crate::{
    connector::{Connection, GuardedConnector},
    sender::classify,
};

/// How long an origin's connections are kept with no request (the pooled client's idle timeout too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to an endpoint, TLS negotiated.
pub type Stream = MaybeHttpsStream<Connection>;

/// Where a request to an HTTPS origin goes.
pub enum Route {
    /// A stream of the origin's HTTP/2 connection.
    Http2(http2::SendRequest<Full<Bytes>>),
    /// Over HTTP/1.1: on the connection that found this out, for this request alone (it was made for it), or
    /// else through the pooled client. Boxed: a TLS stream is kilobytes, and every request's future would
    /// carry room for one.
    Http1(Option<Box<Stream>>),
    /// The origin's connection failed, with this error kind and text.
    Unreachable(&'static str, String),
}

/// A route known at once, without waiting or connecting.
pub enum Known {
    /// A stream of the origin's HTTP/2 connection.
    Http2(http2::SendRequest<Full<Bytes>>),
    /// Through the pooled client, over HTTP/1.1.
    Http1,
}

pub struct Origins {
    connector: HttpsConnector<GuardedConnector>,
    http2: http2::Builder<TokioExecutor>,
    entries: Mutex<HashMap<Authority, Entry>>,
}

struct Entry {
    origin: Arc<Origin>,
    last_used: Instant,
}

/// What an origin speaks, set by its first connection; the requests that arrive meanwhile wait for it.
type Origin = tokio::sync::OnceCell<Protocol>;

enum Protocol {
    Http2(http2::SendRequest<Full<Bytes>>),
    Http1,
    Unreachable(&'static str, String),
}

impl Origins {
    /// Origins reached through `connector`.
    pub fn new(connector: HttpsConnector<GuardedConnector>) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Origins {
            connector,
            http2,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The route of a request to `uri`, an `https` URL, if its origin's is known and usable now, as it is for
    /// nearly every request; `None` leaves it to [`Origins::route`].
    pub fn known(&self, uri: &http::Uri) -> Option<Known> {
        let mut entries = self.lock();
        let entry = entries.get_mut(uri.authority()?)?;
        entry.last_used = Instant::now();
        match entry.origin.get()? {
            Protocol::Http2(sender) if !sender.is_closed() => Some(Known::Http2(sender.clone())),
            Protocol::Http1 => Some(Known::Http1),
            Protocol::Http2(_) | Protocol::Unreachable(..) => None,
        }
    }

    /// The route of a request to `uri`, an `https` URL; connects first if its origin is new.
    pub async fn route(&self, uri: &http::Uri) -> Route {
        let Some(authority) = uri.authority() else {
            // The pooled client reports the URL's error as it does for any other.
            return Route::Http1(None);
        };
        // Twice at most: once more if the origin's connection has closed since it was last used.
        for _ in 0..2 {
            let origin = self.origin(authority);
            let mut made = None;
            // Boxed: the connecting's state is allocated by the one request that connects, not carried by all.
            let protocol = origin
                .get_or_init(|| {
                    Box::pin(async {
                        let (protocol, stream) = self.connect(uri).await;
                        made = stream;
                        protocol
                    })
                })
                .await;
            match protocol {
                Protocol::Http2(sender) if sender.is_closed() => self.forget(authority, &origin),
                Protocol::Http2(sender) => return Route::Http2(sender.clone()),
                Protocol::Http1 => return Route::Http1(made),
                Protocol::Unreachable(kind, text) => {
                    self.forget(authority, &origin);
                    return Route::Unreachable(kind, text.clone());
                }
            }
        }
        Route::Unreachable(
            "protocol",
            format!("the HTTP/2 connection to {authority} closed as it was opened"),
        )
    }

    /// Forgets the origins idle for [`IDLE_TIMEOUT`], closing their HTTP/2 connections once their streams
    /// are done (the daemon's periodic sweep).
    pub fn prune(&self) {
        let now = Instant::now();
        self.lock()
            .retain(|_, entry| now.duration_since(entry.last_used) < IDLE_TIMEOUT);
    }

    /// The origin of `authority`, known or new, marked as used now.
    fn origin(&self, authority: &Authority) -> Arc<Origin> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = entries.entry(authority.clone()).or_insert_with(|| Entry {
            origin: Arc::default(),
            last_used: now,
        });
        entry.last_used = now;
        entry.origin.clone()
    }

    /// Forgets `origin`, if it is still what `authority` is known by.
    fn forget(&self, authority: &Authority, origin: &Arc<Origin>) {
        let mut entries = self.lock();
        if entries
            .get(authority)
            .is_some_and(|entry| Arc::ptr_eq(&entry.origin, origin))
        {
            entries.remove(authority);
        }
    }

    /// Connects to `uri`'s origin and finds what it speaks; an HTTP/1.1 connection is handed back for the
    /// request that made it.
    async fn connect(&self, uri: &http::Uri) -> (Protocol, Option<Box<Stream>>) {
        let stream = match self.connector.clone().call(uri.clone()).await {
            Ok(stream) => stream,
            Err(err) => {
                let (kind, text) = classify(&*err, true);
                return (Protocol::Unreachable(kind, text), None);
            }
        };
        if !stream.connected().is_negotiated_h2() {
            return (Protocol::Http1, Some(Box::new(stream)));
        }
        // Boxed: hyper spawns two tasks per request, each as large as the connection's own, which holds the
        // stream (kilobytes of TLS state) unless it is behind a pointer.
        match self.http2.handshake(Box::new(stream)).await {
            Ok((sender, connection)) => {
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "an HTTP/2 connection to an endpoint ended");
                    }
                });
                (Protocol::Http2(sender), None)
            }
            Err(err) => {
                let (kind, text) = classify(&err, false);
                (Protocol::Unreachable(kind, text), None)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Authority, Entry>> {
        // Nothing panics while holding it; a poisoned map is still a valid one.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
