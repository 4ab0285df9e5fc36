//! gRPC-Web from outside a browser, as a browser sends it: a plain HTTP/1.1 POST of
//! `application/grpc-web+proto` to the server's one listener. A read and a write with a key, the same calls
//! without one, and CORS: a preflight from an origin the server does not list gets no permission, one from a
//! listed origin (`--cors-origin`) does.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use bytes::Bytes;
use common::{Backend, TestServer};
use http_body_util::{BodyExt, Full};
use kit_webhooks::proto;
use prost::Message;

on_both_databases!(grpc_web_calls_are_served_with_the_same_key_check);

/// What a gRPC-Web call came back with.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    /// The message frames' payloads.
    messages: Vec<Vec<u8>>,
    /// The trailers frame, as text (`grpc-status:0\r\n…`), if the answer had one.
    trailers: String,
}

impl Answer {
    /// The call's gRPC status: from the trailers frame, or from the headers of a trailers-only answer.
    fn grpc_status(&self) -> String {
        let in_trailers = self
            .trailers
            .lines()
            .find_map(|line| line.trim().strip_prefix("grpc-status:"))
            .map(|code| code.trim().to_owned());
        in_trailers
            .or_else(|| {
                self.headers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 request to the server, on a connection of its own.
async fn send(server: &TestServer, request: http::Request<Full<Bytes>>) -> http::Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(server.server.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("answered");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    http::Response::from_parts(parts, body)
}

/// Calls `method` of `service` with `message`, framed as gRPC-Web does.
async fn call(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    message: &impl Message,
) -> Answer {
    let payload = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    let mut request = http::Request::post(path)
        .header("host", server.server.addr.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = send(
        server,
        request.body(Full::new(Bytes::from(body))).expect("request"),
    )
    .await;
    let (parts, body) = response.into_parts();
    let mut messages = Vec::new();
    let mut trailers = String::new();
    let mut rest: &[u8] = &body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            trailers = String::from_utf8_lossy(frame).into_owned();
        } else {
            messages.push(frame.to_vec());
        }
        rest = &rest[5 + len..];
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        messages,
        trailers,
    }
}

/// A browser's CORS preflight for a gRPC-Web call from `origin`.
async fn preflight(server: &TestServer, origin: &str) -> http::Response<Bytes> {
    let request = http::Request::builder()
        .method("OPTIONS")
        .uri("/kit.webhooks.v1.WebhookService/ListWebhooks")
        .header("host", server.server.addr.to_string())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web",
        )
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(server, request).await
}

async fn grpc_web_calls_are_served_with_the_same_key_check(backend: Backend) {
    const LISTED: &str = "https://console.kit.example";
    let server = TestServer::start_with(backend, |config| {
        config.cors_origins = vec![LISTED.to_owned()];
    })
    .await;

    // A read with the admin key.
    let read = call(
        &server,
        "/kit.webhooks.v1.EventService/ListEventTypes",
        Some(&server.admin_key),
        &proto::ListEventTypesRequest {},
    )
    .await;
    assert_eq!(read.status, http::StatusCode::OK);
    assert!(
        read.headers["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("application/grpc-web"),
        "{:?}",
        read.headers
    );
    assert_eq!(read.grpc_status(), "0", "trailers: {}", read.trailers);
    let types = proto::ListEventTypesResponse::decode(read.messages[0].as_slice()).expect("decode");
    assert_eq!(
        types.event_types.len(),
        kit_webhooks::definitions::types().count()
    );

    // A write with the admin key: the webhook is there for gRPC clients too.
    let created = call(
        &server,
        "/kit.webhooks.v1.WebhookService/CreateWebhook",
        Some(&server.admin_key),
        &proto::CreateWebhookRequest {
            url: "https://hooks.example.com/kit".into(),
            events: vec!["offer.*".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created.grpc_status(), "0", "trailers: {}", created.trailers);
    let created =
        proto::CreateWebhookResponse::decode(created.messages[0].as_slice()).expect("decode");
    let webhook = created.webhook.expect("webhook");
    assert_eq!(server.get_webhook(&webhook.id).await.url, webhook.url);

    // Without a key, or with a wrong one: UNAUTHENTICATED (16), and nothing written.
    for key in [None, Some("kit_wrong")] {
        let refused = call(
            &server,
            "/kit.webhooks.v1.WebhookService/CreateWebhook",
            key,
            &proto::CreateWebhookRequest {
                url: "https://hooks.example.com/other".into(),
                events: vec!["offer.*".into()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(refused.grpc_status(), "16", "{:?}", refused.headers);
        assert!(refused.messages.is_empty());
    }
    let read = call(
        &server,
        "/kit.webhooks.v1.EventService/ListEventTypes",
        None,
        &proto::ListEventTypesRequest {},
    )
    .await;
    assert_eq!(read.grpc_status(), "16");

    // CORS: an origin the server does not list gets no permission; a listed one does.
    let refused = preflight(&server, "https://evil.example").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        refused.headers()
    );
    let allowed = preflight(&server, LISTED).await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        LISTED,
        "{:?}",
        allowed.headers()
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    server.stop().await;
}
