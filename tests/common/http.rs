//! Small HTTP/1.1 servers for the storage tests, with injected faults (503 answers, bodies cut
//! short, added latency) so retries can be tested against real sockets. One request per
//! connection. Two handlers sit behind the same fault layer: a file server (HEAD and range
//! GETs, 206 with Content-Range, over a folder) and a proxy that forwards to another server
//! (an S3 server, so faults hit the S3 client's requests too).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone, Copy)]
pub struct Faults {
    /// Every Nth request is answered 503 (0: never).
    pub fail_every: u64,
    /// Every Nth answer sends half its body, then closes (0: never).
    pub cut_every: u64,
    /// Added to every answer.
    pub delay: Duration,
}

pub struct FileServer {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    pub failures: Arc<AtomicU64>,
    faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    /// Change the faults injected from the next request on.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// One request as received: its request line's method and target, its header lines (without
/// the blank line) and its body.
struct Request {
    method: String,
    target: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An answer: the status line and headers (each ending in CRLF, without the blank line), then
/// the body.
struct Answer {
    head: String,
    body: Vec<u8>,
}

/// Serve `root`'s files (HEAD, GET, range GET).
pub fn serve(root: PathBuf, faults: Faults) -> FileServer {
    serve_with(faults, move |request| file(&root, request))
}

/// Forward every request to `upstream` (`http://host:port`).
pub fn proxy(upstream: &str, faults: Faults) -> FileServer {
    let upstream = upstream.trim_start_matches("http://").to_string();
    serve_with(faults, move |request| forward(&upstream, request))
}

fn serve_with(
    faults: Faults,
    handler: impl Fn(&Request) -> std::io::Result<Answer> + Send + Sync + 'static,
) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(faults));
    let handler = Arc::new(handler);
    let (r, f, s, fs) = (
        requests.clone(),
        failures.clone(),
        stop.clone(),
        faults.clone(),
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (faults, r, f, handler) =
                (*fs.lock().unwrap(), r.clone(), f.clone(), handler.clone());
            std::thread::spawn(move || {
                let _ = answer(conn, &faults, &r, &f, handler.as_ref());
            });
        }
    });
    FileServer {
        url,
        requests,
        failures,
        faults,
        stop,
    }
}

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        request.headers.push(h.trim_end().to_string());
    }
    let length = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(request)
}

/// The fault layer: count the request, wait, maybe fail it, else answer it (maybe cut short).
fn answer(
    mut conn: TcpStream,
    faults: &Faults,
    requests: &AtomicU64,
    failures: &AtomicU64,
    handler: &dyn Fn(&Request) -> std::io::Result<Answer>,
) -> std::io::Result<()> {
    let request = read_request(&conn)?;
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    std::thread::sleep(faults.delay);
    if faults.fail_every > 0 && n.is_multiple_of(faults.fail_every) {
        failures.fetch_add(1, Ordering::SeqCst);
        return conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let Answer { head, body } = handler(&request)?;
    conn.write_all(format!("{head}\r\n").as_bytes())?;
    if faults.cut_every > 0 && n.is_multiple_of(faults.cut_every) && body.len() > 1 {
        failures.fetch_add(1, Ordering::SeqCst);
        conn.write_all(&body[..body.len() / 2])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(&body)
}

fn file(root: &std::path::Path, request: &Request) -> std::io::Result<Answer> {
    let path = root.join(request.target.trim_start_matches('/'));
    let Ok(data) = std::fs::read(&path) else {
        return Ok(Answer {
            head: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n".into(),
            body: Vec::new(),
        });
    };
    let etag = format!("\"{:x}\"", data.len());
    if request.method == "HEAD" {
        return Ok(Answer {
            head: format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n",
                data.len()
            ),
            body: Vec::new(),
        });
    }
    let range = request.header("range").and_then(|v| {
        let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
    });
    let (status, body, extra) = match range {
        Some((a, b)) => {
            let b = b.min(data.len() as u64 - 1);
            let range = format!("Content-Range: bytes {a}-{b}/{}\r\n", data.len());
            ("206 Partial Content", &data[a as usize..=b as usize], range)
        }
        None => ("200 OK", &data[..], String::new()),
    };
    Ok(Answer {
        head: format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\n{extra}Connection: close\r\n",
            body.len()
        ),
        body: body.to_vec(),
    })
}

/// Send `request` to `upstream` (asking it to close the connection after answering) and return
/// its answer, read to the end.
fn forward(upstream: &str, request: &Request) -> std::io::Result<Answer> {
    let mut conn = TcpStream::connect(upstream)?;
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for h in &request.headers {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    conn.write_all(out.as_bytes())?;
    conn.write_all(&request.body)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("upstream answer without a header end"))?;
    let head = String::from_utf8_lossy(&raw[..split + 2]).to_string();
    let head: String = head
        .split_inclusive("\r\n")
        .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
        .chain(["Connection: close\r\n"])
        .collect();
    Ok(Answer {
        head,
        body: raw[split + 4..].to_vec(),
    })
}
