//! `kit-webhooks listen`: a local endpoint for trying webhooks out. It checks each request as a customer's
//! endpoint should (signature and timestamp, with the same `verify` receivers use), answers `204` to valid
//! requests and `401` to the rest, and prints what arrived.
//!
//! The secret is either given (`--secret`), as a real endpoint has it, or looked up on the server with the
//! admin key: the webhook of the request's `kit-delivery-id`, and that webhook's current secret. The lookup
//! only chooses which secret to check; a request still verifies only if it was signed with it.

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kit_webhooks::signature;
use kit_webhooks_client::Client;
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::Mutex};

use super::output::Format;

/// Request bodies larger than this are refused (the server never sends more than 256 KiB of data).
const MAX_BODY_BYTES: usize = 1024 * 1024;

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

pub async fn run(address: SocketAddr, secrets: Secrets, format: Format) -> anyhow::Result<()> {
    if let Secrets::Fixed(secret) = &secrets {
        signature::secret_key(secret)
            .map_err(|_| anyhow::anyhow!("--secret must be the webhook's `whsec_…` secret"))?;
    }
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    eprintln!("listening on http://{address}/ — verifying signatures; Ctrl-C to stop");
    let secret = Arc::new(secrets);
    loop {
        let (stream, _) = listener.accept().await?;
        let secret = secret.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let secret = secret.clone();
                async move { Ok::<_, Infallible>(handle(request, &secret, format).await) }
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
    match format {
        Format::Json => {
            let line = json!({
                "verified": verdict.is_ok(),
                "error": verdict.as_ref().err(),
                "event_type": event_type,
                "event_id": signed.id,
                "delivery_id": delivery,
                "attempt": attempt,
                "body": parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned())),
            });
            println!("{line}");
        }
        Format::Table => {
            let outcome = match &verdict {
                Ok(()) => "verified".to_string(),
                Err(err) => format!("REJECTED ({err})"),
            };
            println!(
                "{event_type} {}  delivery {delivery}  attempt {attempt}  {outcome}",
                signed.id
            );
            let pretty = parsed
                .as_ref()
                .and_then(|v| serde_json::to_string_pretty(v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            println!("{pretty}\n");
        }
    }
    match verdict {
        Ok(()) => reply(StatusCode::NO_CONTENT, ""),
        Err(err) => reply(StatusCode::UNAUTHORIZED, &err),
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
