//! `kit-webhooks listen`: a local endpoint for trying webhooks out. It checks each request as a customer's
//! endpoint should (signature and timestamp, with the same `verify` receivers use), answers `204` to valid
//! requests and `401` to the rest, and prints what arrived. With `--forward-to URL` it passes each verified
//! request on to a local application, headers and body unchanged, and answers the sender with the
//! application's status and body, as `stripe listen --forward-to` does: the application under development
//! sees real, signed deliveries, and the server records what it answered.
//!
//! The secret is either given (`--secret`), as a real endpoint has it, or looked up on the server with the
//! admin key: the webhook of the request's `kit-delivery-id`, and that webhook's current secret. The lookup
//! only chooses which secret to check; a request still verifies only if it was signed with it.

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, service::service_fn, HeaderMap, Request, Response, StatusCode};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HttpClient},
    rt::{TokioExecutor, TokioIo},
};
use kit_webhooks::signature;
use kit_webhooks_client::Client;
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::Mutex};

use super::output::Format;

/// Request bodies larger than this are refused (the server never sends more than 256 KiB of data).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long the application behind `--forward-to` has to answer: less than the server's request timeout, so
/// that the sender sees the application's answer rather than its own timeout.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where verified requests go on to, with `--forward-to`.
pub struct Forward {
    url: hyper::Uri,
    client: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Forward {
    /// Forwarding to `url`, an `http://` address of a local application.
    pub fn to(url: &str) -> anyhow::Result<Forward> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|err| anyhow::anyhow!("--forward-to `{url}`: {err}"))?;
        if url.scheme_str() != Some("http") || url.host().is_none() {
            anyhow::bail!(
                "--forward-to must be an http:// URL of a local application (http://127.0.0.1:3000/webhooks)"
            );
        }
        let client = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Forward { url, client })
    }

    /// Sends the request on; the application's answer, or `502` saying why there is none.
    async fn send(&self, headers: &HeaderMap, body: Bytes) -> (StatusCode, Bytes) {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = self.url.clone();
        for (name, value) in headers {
            // The connection's own headers are the forwarding connection's to set.
            if !matches!(
                name.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding"
            ) {
                request.headers_mut().append(name, value.clone());
            }
        }
        let answered = tokio::time::timeout(FORWARD_TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        let why = match answered {
            Ok(Ok(answer)) => return answer,
            Ok(Err(err)) => err,
            Err(_) => format!("no answer within {FORWARD_TIMEOUT:?}"),
        };
        let text = format!("forwarding to {} failed: {why}", self.url);
        (StatusCode::BAD_GATEWAY, Bytes::from(text))
    }
}

/// Where the secret to verify with comes from.
pub enum Secrets {
    /// The one secret given with `--secret`.
    Fixed(String),
    /// Each delivery's webhook's secret, from the server (cached per webhook).
    Server {
        client: Box<Client>,
        cache: Mutex<HashMap<String, String>>,
    },
}

impl Secrets {
    pub fn from_server(client: Client) -> Self {
        Secrets::Server {
            client: Box::new(client),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn for_delivery(&self, delivery_id: &str) -> Result<String, String> {
        match self {
            Secrets::Fixed(secret) => Ok(secret.clone()),
            Secrets::Server { client, cache } => {
                if delivery_id.is_empty() {
                    return Err("no kit-delivery-id header to find the webhook's secret by".into());
                }
                let delivery = client.get_delivery(delivery_id).await.map_err(|e| {
                    format!("delivery `{delivery_id}` is not known to the server: {e}")
                })?;
                if let Some(secret) = cache.lock().await.get(&delivery.webhook_id) {
                    return Ok(secret.clone());
                }
                let secret = client
                    .webhook_secret(&delivery.webhook_id)
                    .await
                    .map_err(|e| e.to_string())?;
                cache
                    .lock()
                    .await
                    .insert(delivery.webhook_id, secret.clone());
                Ok(secret)
            }
        }
    }
}

pub async fn run(
    address: SocketAddr,
    secrets: Secrets,
    forward: Option<Forward>,
    format: Format,
) -> anyhow::Result<()> {
    if let Secrets::Fixed(secret) = &secrets {
        signature::secret_key(secret)
            .map_err(|_| anyhow::anyhow!("--secret must be the webhook's `whsec_…` secret"))?;
    }
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    match &forward {
        Some(forward) => eprintln!(
            "listening on http://{address}/ — verifying signatures, forwarding to {}; Ctrl-C to stop",
            forward.url
        ),
        None => eprintln!("listening on http://{address}/ — verifying signatures; Ctrl-C to stop"),
    }
    let shared = Arc::new((secrets, forward));
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move {
                    let (secrets, forward) = &*shared;
                    Ok::<_, Infallible>(handle(request, secrets, forward.as_ref(), format).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    secrets: &Secrets,
    forward: Option<&Forward>,
    format: Format,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signed = signature::SignedHeaders::read(|name| {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    });
    let (event_type, delivery, attempt) = (
        header("kit-event-type"),
        header("kit-delivery-id"),
        header("kit-attempt"),
    );
    let headers = forward.map(|_| request.headers().clone());
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let verdict = match secrets.for_delivery(&delivery).await {
        Ok(secret) => signed.verify(&secret, &body).map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    // Only a verified request reaches the application, as only those would in production.
    let forwarded = match (forward, &verdict, headers) {
        (Some(forward), Ok(()), Some(headers)) => Some(forward.send(&headers, body.clone()).await),
        _ => None,
    };
    let forwarded_status = forwarded.as_ref().map(|(status, _)| status.as_u16());
    match format {
        Format::Json => {
            let line = json!({
                "verified": verdict.is_ok(),
                "error": verdict.as_ref().err(),
                "event_type": event_type,
                "event_id": signed.id,
                "delivery_id": delivery,
                "attempt": attempt,
                "forwarded_status": forwarded_status,
                "body": parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned())),
            });
            println!("{line}");
        }
        Format::Table => {
            let outcome = match &verdict {
                Ok(()) => "verified".to_string(),
                Err(err) => format!("REJECTED ({err})"),
            };
            let forwarded =
                forwarded_status.map_or(String::new(), |s| format!("  → application {s}"));
            println!(
                "{event_type} {}  delivery {delivery}  attempt {attempt}  {outcome}{forwarded}",
                signed.id
            );
            let pretty = parsed
                .as_ref()
                .and_then(|v| serde_json::to_string_pretty(v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            println!("{pretty}\n");
        }
    }
    match (verdict, forwarded) {
        (Ok(()), Some((status, body))) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = status;
            response
        }
        (Ok(()), None) => reply(StatusCode::NO_CONTENT, ""),
        (Err(err), _) => reply(StatusCode::UNAUTHORIZED, &err),
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
