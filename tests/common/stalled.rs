//! Calls that stall: HTTP/2 streams to `PublishEvent` that declare a 4 MB message, send its first 32 KiB and
//! then nothing more, as a client trying to make the server hold memory would. Used by `tests/admission.rs`
//! and the memory flood (`server/tests/admission_load.rs`), each as a module of its own (`#[path]`).

use bytes::Bytes;

/// Stalled streams on one connection: their answers, and their bodies, open until this is dropped.
pub struct Stalled {
    pub responses: Vec<h2::client::ResponseFuture>,
    _bodies: Vec<h2::SendStream<Bytes>>,
}

/// Opens `n` stalled `PublishEvent` streams to `addr` (`host:port`) on one connection, with `authorization`
/// as given (none: keyless).
pub async fn stalled_publishes(addr: &str, n: usize, authorization: Option<&str>) -> Stalled {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut stalled = Stalled {
        responses: Vec::new(),
        _bodies: Vec::new(),
    };
    for _ in 0..n {
        // A server that closes the connection (or refuses more streams) ends the opening here.
        let Ok(mut client) = client.clone().ready().await else {
            break;
        };
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{addr}/kit.webhooks.v1.EventService/PublishEvent"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let Ok((response, mut body)) =
            client.send_request(request.body(()).expect("request"), false)
        else {
            break;
        };
        let mut first = vec![0u8; 5 + 32 * 1024];
        first[1..5].copy_from_slice(&4_000_000u32.to_be_bytes());
        // Refused fast enough, the stream may be closed already: nothing more to send then.
        let _ = body.send_data(Bytes::from(first), false);
        stalled.responses.push(response);
        stalled._bodies.push(body);
    }
    stalled
}
