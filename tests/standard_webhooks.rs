//! A receiver written with the Python `standardwebhooks` library verifies the daemon's requests: the
//! signature scheme is the standard one, not merely one that agrees with our own `verify`.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{authed, fast_delivery, Backend, TestServer};
use kit_webhooks::proto;

on_both_databases!(python_standardwebhooks_verifies_deliveries);

struct PythonReceiver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl PythonReceiver {
    fn start(port: u16, secret: &str) -> PythonReceiver {
        let mut child = Command::new(common::python::python())
            .arg(common::root().join("tests/python/standardwebhooks_receiver.py"))
            .arg(port.to_string())
            .arg(secret)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python receiver");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let receiver = PythonReceiver { child, lines };
        assert!(receiver.next_line().contains("listening"));
        receiver
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from the Python receiver")
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn python_standardwebhooks_verifies_deliveries(backend: Backend) {
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    let port = free_port();
    let (hook, secret) = server
        .create_webhook(
            &format!("http://127.0.0.1:{port}/hooks"),
            &["application.*"],
        )
        .await;
    let receiver = PythonReceiver::start(port, &secret);

    let event = server
        .publish("application.submitted", r#"{"application_id": 7}"#)
        .await
        .event
        .expect("event");
    assert_eq!(
        receiver.next_line(),
        format!("VERIFIED {} application.submitted", event.id)
    );

    // During a rotation grace the request carries two signatures; the library accepts the one it can check.
    server
        .webhooks()
        .await
        .rotate_secret(authed(
            &server.admin_key,
            proto::RotateSecretRequest {
                id: hook.id.clone(),
                grace_period_seconds: Some(60),
            },
        ))
        .await
        .expect("rotate");
    let event = server
        .publish("application.advanced", "{}")
        .await
        .event
        .expect("event");
    assert_eq!(
        receiver.next_line(),
        format!("VERIFIED {} application.advanced", event.id)
    );

    // A tampered body is rejected by the library.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = r#"{"id":"evt_x","type":"offer.accepted","data":{}}"#;
    write!(
        stream,
        "POST /hooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nwebhook-id: evt_x\r\n\
         webhook-timestamp: {}\r\nwebhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        kit_webhooks::signature::unix_now(),
        body.len()
    )
    .expect("send");
    assert!(receiver.next_line().starts_with("REJECTED"));
    server.stop().await;
}
