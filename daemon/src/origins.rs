//! What the daemon knows of each origin (scheme, host and port) it sends to, and the connections it keeps
//! there: for an endpoint that speaks HTTP/2, one connection whose streams all of the origin's requests share;
//! for one that speaks HTTP/1.1 (and every plain `http` one), keep-alive connections, each lent to one request
//! at a time and kept idle between requests.
//!
//! An origin's first request connects here, through the vetted connector and the daemon's TLS configuration,
//! and the endpoint's ALPN answer routes the origin's requests from then on. The daemon keeps its connections
//! itself rather than through hyper-util's pooled client because that client boxes a future of several
//! kilobytes for every request (checking out, connecting, sending), where a request on a connection at hand
//! needs a few hundred bytes, and a daemon holding thousands of requests holds thousands of them
//! (docs/PERFORMANCE.md, steps 57 and 62).
//!
//! Requests that arrive while an origin's first connection is being made wait for it and share its outcome,
//! so that a burst to a new origin learns its protocol once. A connection that has closed, a first connection
//! that failed, an HTTP/1.1 connection idle for [`IDLE_TIMEOUT`] and an origin unused that long are
//! forgotten: the next request finds out again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{FutureExt as _, TryFutureExt as _};
use http::uri::{Authority, Scheme};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::{
    client::legacy::connect::Connection as _,
    rt::{TokioExecutor, TokioTimer},
};
use tower_service::Service as _;

use crate::{
    connector::{Connection, GuardedConnector},
    sender::{classify, Failure},
};

/// How long an origin and its idle connections are kept with no request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest head of a response read over HTTP/2 (its headers as HPACK counts them), about what hyper reads
/// of one over HTTP/1.1: an endpoint's `2xx` is a success whichever protocol it answers in. hyper's default
/// (16 KiB) failed the whole connection on a larger head.
const MAX_HTTP2_RESPONSE_HEAD: u32 = 256 * 1024;

/// Where a request goes.
pub enum Route {
    /// A stream of the origin's HTTP/2 connection.
    Http2(http2::SendRequest<Full<Bytes>>),
    /// An HTTP/1.1 connection of the origin's, lent to this request.
    Http1(Lent),
    /// The origin's connection failed, with this error kind and text.
    Unreachable(&'static str, String),
}

pub struct Origins {
    connector: HttpsConnector<GuardedConnector>,
    http2: http2::Builder<TokioExecutor>,
    /// The most idle HTTP/1.1 connections kept to one origin.
    idle_per_origin: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// An origin: its scheme decides the port its authority leaves out, and whether TLS is spoken.
type Key = (Scheme, Authority);

struct Entry {
    origin: Arc<Origin>,
    last_used: Instant,
}

/// What an origin speaks, set by its first connection; the requests that arrive meanwhile wait for it.
type Origin = tokio::sync::OnceCell<Protocol>;

enum Protocol {
    Http2(http2::SendRequest<Full<Bytes>>),
    Http1(Arc<Idle>),
    Unreachable(&'static str, String),
}

/// A connection just made, in the protocol its endpoint chose.
enum Opened {
    Http2(http2::SendRequest<Full<Bytes>>),
    Http1(http1::SendRequest<Full<Bytes>>),
}

impl Origins {
    /// Origins reached through `connector`, each keeping up to `idle_per_origin` idle HTTP/1.1 connections.
    pub fn new(connector: HttpsConnector<GuardedConnector>, idle_per_origin: usize) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HTTP2_RESPONSE_HEAD);
        Origins {
            connector,
            http2,
            idle_per_origin,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The route of a request to `uri` if one is at hand, as it is for nearly every request: a stream of the
    /// origin's HTTP/2 connection, or an idle HTTP/1.1 connection. `None` leaves it to [`Origins::route`].
    pub fn known(&self, uri: &http::Uri) -> Option<Route> {
        let key = key(uri)?;
        let mut entries = self.lock();
        let entry = entries.get_mut(&key)?;
        entry.last_used = Instant::now();
        match entry.origin.get()? {
            Protocol::Http2(sender) if !sender.is_closed() => Some(Route::Http2(sender.clone())),
            Protocol::Http1(idle) => idle.take().map(Route::Http1),
            Protocol::Http2(_) | Protocol::Unreachable(..) => None,
        }
    }

    /// The route of a request to `uri`: connects if its origin is new, or speaks HTTP/1.1 and has no idle
    /// connection.
    pub async fn route(&self, uri: &http::Uri) -> Route {
        let Some(key) = key(uri) else {
            return Route::Unreachable("invalid_url", format!("`{uri}` names no origin"));
        };
        // Twice at most: once more if the origin's connection has closed since it was last used.
        for _ in 0..2 {
            let origin = self.origin(&key);
            let mut made = None;
            // Boxed: the connecting's state is allocated by the one request that connects, not carried by all.
            let protocol = origin
                .get_or_init(|| {
                    Box::pin(async {
                        match self.open(uri).await {
                            Ok(Opened::Http2(sender)) => Protocol::Http2(sender),
                            Ok(Opened::Http1(sender)) => {
                                made = Some(sender);
                                Protocol::Http1(Arc::new(Idle::new(self.idle_per_origin)))
                            }
                            Err((kind, text)) => Protocol::Unreachable(kind, text),
                        }
                    })
                })
                .await;
            match protocol {
                Protocol::Http2(sender) if sender.is_closed() => self.forget(&key, &origin),
                Protocol::Http2(sender) => return Route::Http2(sender.clone()),
                Protocol::Http1(idle) => {
                    if let Some(lent) = made
                        .map(|sender| Lent::new(sender, idle))
                        .or_else(|| idle.take())
                    {
                        return Route::Http1(lent);
                    }
                    return match self.open(uri).await {
                        Ok(Opened::Http1(sender)) => Route::Http1(Lent::new(sender, idle)),
                        // The endpoint has moved to HTTP/2: this request uses the connection, and the
                        // origin's next request finds out what it speaks again.
                        Ok(Opened::Http2(sender)) => {
                            self.forget(&key, &origin);
                            Route::Http2(sender)
                        }
                        Err((kind, text)) => Route::Unreachable(kind, text),
                    };
                }
                Protocol::Unreachable(kind, text) => {
                    self.forget(&key, &origin);
                    return Route::Unreachable(kind, text.clone());
                }
            }
        }
        Route::Unreachable(
            "protocol",
            format!("the HTTP/2 connection to {uri} closed as it was opened"),
        )
    }

    /// Forgets the origins idle for [`IDLE_TIMEOUT`], closing their connections once their requests are
    /// done, and the HTTP/1.1 connections idle that long (the daemon's periodic sweep).
    pub fn prune(&self) {
        let now = Instant::now();
        self.lock().retain(|_, entry| {
            if let Some(Protocol::Http1(idle)) = entry.origin.get() {
                idle.prune(now);
            }
            now.duration_since(entry.last_used) < IDLE_TIMEOUT
        });
    }

    /// The origin of `key`, known or new, marked as used now.
    fn origin(&self, key: &Key) -> Arc<Origin> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            origin: Arc::default(),
            last_used: now,
        });
        entry.last_used = now;
        entry.origin.clone()
    }

    /// Forgets `origin`, if it is still what `key` is known by.
    fn forget(&self, key: &Key, origin: &Arc<Origin>) {
        let mut entries = self.lock();
        if entries
            .get(key)
            .is_some_and(|entry| Arc::ptr_eq(&entry.origin, origin))
        {
            entries.remove(key);
        }
    }

    /// Connects to `uri`'s origin in the protocol its endpoint chooses; the connection's task runs until it
    /// closes.
    ///
    /// Each request that connects holds this future while its TCP and TLS handshakes are under way (often
    /// thousands at once in a burst), so it is a chain rather than an `async fn`, which would make room for
    /// the stream and hyper's handshake (kilobytes) in every one of them: the handshake, which completes
    /// at once, is boxed when it is reached.
    fn open(
        &self,
        uri: &http::Uri,
    ) -> impl std::future::Future<Output = Result<Opened, Failure>> + Send + '_ {
        self.connector
            .clone()
            .call(uri.clone())
            .map_err(|err| classify(&*err, true))
            .and_then(|stream| Box::pin(self.handshake(stream)))
    }

    /// Starts a connection on `stream`, in the protocol its endpoint chose.
    async fn handshake(&self, stream: MaybeHttpsStream<Connection>) -> Result<Opened, Failure> {
        if stream.connected().is_negotiated_h2() {
            // Boxed: hyper spawns two tasks per request, each as large as the connection's own, which holds
            // the stream (kilobytes of TLS state) unless it is behind a pointer.
            let (sender, connection) = self
                .http2
                .handshake(Box::new(stream))
                .await
                .map_err(|err| classify(&err, false))?;
            drive(connection, "HTTP/2");
            return Ok(Opened::Http2(sender));
        }
        let (sender, connection) = http1::handshake(stream)
            .await
            .map_err(|err| classify(&err, false))?;
        drive(connection, "HTTP/1.1");
        Ok(Opened::Http1(sender))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        lock(&self.entries)
    }
}

/// Runs a connection to an endpoint on a task of its own until it ends.
///
/// Mapped rather than awaited in an `async` block, which holds what it captures for its whole life: the
/// connection would be held twice (captured, and moved into its `.await`), and the task of every HTTP/1.1
/// connection is as large as the connection's state.
fn drive(
    connection: impl std::future::Future<Output = hyper::Result<()>> + Send + 'static,
    protocol: &'static str,
) {
    tokio::spawn(connection.map(move |ended| {
        if let Err(err) = ended {
            tracing::debug!(error = %err, protocol, "a connection to an endpoint ended");
        }
    }));
}

fn key(uri: &http::Uri) -> Option<Key> {
    Some((uri.scheme()?.clone(), uri.authority()?.clone()))
}

/// An HTTP/1.1 origin's connections that have no request, the most recently used last.
struct Idle {
    connections: Mutex<Vec<(http1::SendRequest<Full<Bytes>>, Instant)>>,
    most: usize,
}

impl Idle {
    fn new(most: usize) -> Self {
        Idle {
            connections: Mutex::new(Vec::new()),
            most,
        }
    }

    /// The most recently used connection that can take a request, dropping the closed ones met on the way.
    /// One whose last response has just been read can read as not ready for a moment (its task has not yet
    /// asked for the next request): it is passed over and kept.
    fn take(self: &Arc<Self>) -> Option<Lent> {
        let mut connections = lock(&self.connections);
        let mut at = connections.len();
        while at > 0 {
            at -= 1;
            let (sender, _) = &connections[at];
            if sender.is_closed() {
                connections.remove(at);
            } else if sender.is_ready() {
                let (sender, _) = connections.remove(at);
                return Some(Lent::new(sender, self));
            }
        }
        None
    }

    /// Keeps `sender`'s connection for the origin's next request, unless it has closed or the origin already
    /// keeps as many as it may.
    fn put(&self, sender: http1::SendRequest<Full<Bytes>>) {
        let mut connections = lock(&self.connections);
        if !sender.is_closed() && connections.len() < self.most {
            connections.push((sender, Instant::now()));
        }
    }

    /// Closes the connections idle since before `now` less [`IDLE_TIMEOUT`], and drops the closed ones.
    fn prune(&self, now: Instant) {
        lock(&self.connections).retain(|(sender, since)| {
            !sender.is_closed() && now.duration_since(*since) < IDLE_TIMEOUT
        });
    }
}

/// An HTTP/1.1 connection lent to one request. [`Lent::give_back`] returns it once the response has been read;
/// dropped instead (a request that failed or timed out), it closes.
pub struct Lent {
    sender: http1::SendRequest<Full<Bytes>>,
    idle: Arc<Idle>,
}

impl Lent {
    fn new(sender: http1::SendRequest<Full<Bytes>>, idle: &Arc<Idle>) -> Self {
        Lent {
            sender,
            idle: idle.clone(),
        }
    }

    /// Sends `request`, whose target is in origin form (`/path?query`) with a `Host` header. A request the
    /// connection closed before taking comes back in the error.
    pub fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> impl std::future::Future<
        Output = Result<
            http::Response<hyper::body::Incoming>,
            hyper::client::conn::TrySendError<http::Request<Full<Bytes>>>,
        >,
    > {
        self.sender.try_send_request(request)
    }

    /// Returns the connection to its origin's idle ones, for the next request.
    pub fn give_back(self) {
        self.idle.put(self.sender);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned value is still a valid one.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
