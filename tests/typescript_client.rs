//! A TypeScript client, generated from `proto/` as the README tells a TypeScript user to (`buf generate` with
//! protobuf-es), compiled with `tsc`, calls a real server over gRPC with Connect: the contract stays usable
//! from the other language Kit's front end is written in. The Node.js packages are installed from
//! `clients/typescript/package-lock.json` on first use if `.ci/run` has not installed them already.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::Command;

use common::{node, Backend, TestServer};
use serde_json::Value;

#[tokio::test]
async fn a_generated_typescript_client_calls_the_server() {
    let server = TestServer::start(Backend::Sqlite).await;
    let package = common::root().join("clients/typescript");
    let (url, key) = (server.server.url(), server.admin_key.clone());
    let output = tokio::task::spawn_blocking(move || {
        node::install(&package, &["tsc", "buf"]);
        // A copy of the package's sources, so the generated code and the build stay out of the repository.
        let work = tempfile::tempdir().expect("temp dir");
        for file in [
            "package.json",
            "tsconfig.json",
            "buf.gen.yaml",
            "src/call.ts",
        ] {
            let to = work.path().join(file);
            std::fs::create_dir_all(to.parent().expect("dir")).expect("mkdir");
            std::fs::copy(package.join(file), &to).expect("copy");
        }
        std::os::unix::fs::symlink(
            package.join("node_modules"),
            work.path().join("node_modules"),
        )
        .expect("link node_modules");
        let proto = common::root().join("proto");
        // buf runs protoc-gen-es from the package's binaries, as `npm run generate` would.
        let mut path = vec![package.join("node_modules/.bin")];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        node::run(
            Command::new(node::bin(&package, "buf"))
                .current_dir(work.path())
                .env("PATH", std::env::join_paths(path).expect("PATH"))
                .args(["generate", "--template", "buf.gen.yaml"])
                .arg(&proto),
            "buf generate",
        );
        node::run(
            Command::new(node::bin(&package, "tsc"))
                .current_dir(work.path())
                .args(["-p", "tsconfig.json"]),
            "tsc",
        );
        node::run(
            Command::new("node").current_dir(work.path()).args([
                "dist/call.js",
                "--server",
                &url,
                "--key",
                &key,
            ]),
            "node dist/call.js",
        )
    })
    .await
    .expect("join");
    let reply: Value = serde_json::from_slice(&output).expect("one JSON object");
    let catalogue = kit_webhooks::catalogue::EVENT_TYPES;
    // The 22 publishable types, the 2 operational ones, and `test.ping`.
    let all = catalogue.len() + kit_webhooks::catalogue::OPERATIONAL_TYPES.len() + 1;
    assert_eq!(reply["event_types"], all, "{reply}");
    assert_eq!(reply["first"]["name"], catalogue[0].name, "{reply}");
    server.stop().await;
}
