//! A small HTTP/1.1 file server for the storage tests: HEAD and range GETs (206 with
//! Content-Range) over a folder, with injected faults (503 answers, bodies cut short, added
//! latency) so retries can be tested against real sockets. One request per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Faults {
    /// Every Nth request is answered 503 (0: never).
    pub fail_every: u64,
    /// Every Nth GET sends half its body, then closes (0: never).
    pub cut_every: u64,
    /// Added to every answer.
    pub delay: Duration,
}

pub struct FileServer {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    pub failures: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

pub fn serve(root: PathBuf, faults: Faults) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(faults);
    let (r, f, s) = (requests.clone(), failures.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (root, faults, r, f) = (root.clone(), faults.clone(), r.clone(), f.clone());
            std::thread::spawn(move || {
                let _ = answer(conn, &root, &faults, &r, &f);
            });
        }
    });
    FileServer {
        url,
        requests,
        failures,
        stop,
    }
}

fn answer(
    mut conn: TcpStream,
    root: &std::path::Path,
    faults: &Faults,
    requests: &AtomicU64,
    failures: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
        }
    }
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    std::thread::sleep(faults.delay);
    if faults.fail_every > 0 && n.is_multiple_of(faults.fail_every) {
        failures.fetch_add(1, Ordering::SeqCst);
        return conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let path = root.join(target.trim_start_matches('/'));
    let Ok(data) = std::fs::read(&path) else {
        return conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let etag = format!("\"{:x}\"", data.len());
    if method == "HEAD" {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
            data.len()
        );
        return conn.write_all(head.as_bytes());
    }
    let (status, body, extra) = match range {
        Some((a, b)) => {
            let b = b.min(data.len() as u64 - 1);
            let range = format!("Content-Range: bytes {a}-{b}/{}\r\n", data.len());
            ("206 Partial Content", &data[a as usize..=b as usize], range)
        }
        None => ("200 OK", &data[..], String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if faults.cut_every > 0 && n.is_multiple_of(faults.cut_every) && body.len() > 1 {
        failures.fetch_add(1, Ordering::SeqCst);
        conn.write_all(&body[..body.len() / 2])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(body)
}
