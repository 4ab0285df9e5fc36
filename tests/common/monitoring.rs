//! Reading a process's monitoring listener (`--metrics-listen`) as Prometheus and a kubelet would: plain
//! HTTP/1.1 GETs on a real socket, and the text exposition format read line by line.

// Included on its own by some test crates, which use part of it.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on `addr`: the status code and the body, or `None` if nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Waits until `GET path` answers `status` (at most `timeout`), and returns the body.
pub fn wait_for_status(addr: SocketAddr, path: &str, status: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = get(addr, path);
        if let Some((got, body)) = &answer {
            if *got == status {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} on {addr} never answered {status}; last: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scrape of `addr`'s `/metrics`.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    Scrape(body)
}

/// One scrape's text.
#[derive(Debug)]
pub struct Scrape(pub String);

impl Scrape {
    /// The value of the sample written exactly `series` (`name` or `name{label="value",…}`), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// The sum of every sample of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Each metric family's name and type, from its `# TYPE` line.
    pub fn families(&self) -> Vec<(String, String)> {
        self.0
            .lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("# TYPE ")?.split(' ');
                Some((words.next()?.to_owned(), words.next()?.to_owned()))
            })
            .collect()
    }
}
