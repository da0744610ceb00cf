//! Drives headless Chromium (Debian's `chromium-headless-shell`) over the DevTools protocol, for tests that check what
//! a browser does with our shaders (WebGPU on SwiftShader: no GPU needed): a tiny HTTP server for the page (WebGPU
//! needs a secure context, and http://127.0.0.1 is one), start the browser, open a URL, read an element's text, take a
//! screenshot. The browser runs in a process group of its own with a fresh profile; dropping `Browser` kills the whole
//! group (also when the test panics) and removes the profile.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

const PROGRAM: &str = "chromium-headless-shell";
/// The browser's stderr, in its profile directory.
const LOG: &str = "stderr.log";

/// The browser, or None with a visible "skipped" line. With `GPU_CNN_REQUIRE_BROWSER=1` a missing browser fails.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(PROGRAM))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("GPU_CNN_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("{test}: GPU_CNN_REQUIRE_BROWSER=1 but {PROGRAM} not installed");
        }
        eprintln!("{test}: skipped: {PROGRAM} not installed");
    }
    found
}

/// Serves fixed files (path → content type and body) on http://127.0.0.1:port until dropped.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(files: Vec<(&'static str, &'static str, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let port = listener.local_addr().expect("page server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &files); // a client that went away is no concern of ours
                }
            }
        });
        Server { port, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(mut conn: TcpStream, files: &[(&str, &str, Vec<u8>)]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, kind, body): (&str, &str, &[u8]) = match files.iter().find(|f| f.0 == path) {
        Some((_, kind, body)) => ("200 OK", kind, body),
        None => ("404 Not Found", "text/plain", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop so that it sees `stop`
    }
}

/// One headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    child: Child,
    ws: Option<WebSocket<TcpStream>>,
    next_id: u64,
    /// The fresh profile, removed on drop (after the browser is gone).
    profile: tempfile::TempDir,
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Browser {
    /// Starts `program` with WebGPU enabled (`--enable-unsafe-webgpu`, SwiftShader where there is no GPU) plus `extra`
    /// flags and those of `GPU_CNN_BROWSER_FLAGS` (space-separated, e.g. `--disable-gpu-watchdog`), on a port of its
    /// choosing (`--remote-debugging-port=0`, read back from the profile's DevToolsActivePort: no race with another
    /// browser for a port), and attaches to its first page.
    pub fn start(program: &Path, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().expect("browser profile directory");
        let log = std::fs::File::create(profile.path().join(LOG)).expect("browser log");
        let from_env = std::env::var("GPU_CNN_BROWSER_FLAGS").unwrap_or_default();
        let child = Command::new(program)
            .args([
                "--no-sandbox",
                "--enable-unsafe-webgpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .args(from_env.split_whitespace())
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0) // its own group, which Drop kills whole: the wrapper script, the browser, its helpers
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut browser = Browser { child, ws: None, next_id: 0, profile };
        let port = browser.devtools_port();
        let ws_url = browser.page_socket(port);
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        let (ws, _) = tungstenite::client(ws_url.as_str(), stream).expect("DevTools WebSocket handshake");
        // A browser that stops answering fails the call that waits on it instead of hanging the test.
        ws.get_ref().set_read_timeout(Some(Duration::from_secs(120))).expect("socket timeout");
        browser.ws = Some(ws);
        browser
    }

    fn devtools_port(&mut self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let t0 = Instant::now();
        loop {
            if let Some(port) = std::fs::read_to_string(&file).ok().and_then(|s| s.lines().next()?.parse().ok()) {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the browser exited at start ({status})");
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "the browser did not open its DevTools port in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The DevTools WebSocket URL of the browser's first page, from http://127.0.0.1:port/json.
    fn page_socket(&self, port: u16) -> String {
        let t0 = Instant::now();
        loop {
            let targets = http_get(port, "/json").ok().and_then(|body| serde_json::from_str::<Value>(&body).ok());
            let page = targets.as_ref().and_then(|t| t.as_array()?.iter().find(|t| t["type"] == "page"));
            if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                return url.to_string();
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "the browser listed no page in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one DevTools command and returns its result (events that arrive meanwhile are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let ws = self.ws.as_mut().expect("DevTools connection");
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        ws.send(Message::text(request)).unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let msg = ws.read().unwrap_or_else(|e| panic!("{method}: no answer: {e}"));
            let Message::Text(text) = msg else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools reply is JSON");
            if reply["id"] == id {
                if let Some(err) = reply.get("error") {
                    panic!("{method}: {err}");
                }
                return reply["result"].clone();
            }
        }
    }

    pub fn open(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        if let Some(err) = r.get("errorText") {
            panic!("open {url}: {err}");
        }
    }

    /// The value of a JavaScript expression in the page (JSON-serializable values only).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// The text of the element with this id, or None while there is no such element.
    pub fn text(&mut self, id: &str) -> Option<String> {
        let expr = format!("(e => e && e.textContent)(document.getElementById({}))", json!(id));
        self.eval(&expr).as_str().map(str::to_string)
    }

    /// Polls the element's text until it holds a JSON value and returns it. Every `every` the element `progress`
    /// (if any) is passed to `report`. Panics after `limit`.
    pub fn wait_for_json(
        &mut self,
        id: &str,
        limit: Duration,
        progress: &str,
        every: Duration,
        mut report: impl FnMut(Duration, &str),
    ) -> Value {
        let t0 = Instant::now();
        let mut last_report = Instant::now();
        loop {
            if let Some(v) = self.text(id).and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
                return v;
            }
            if last_report.elapsed() >= every {
                last_report = Instant::now();
                let p = self.text(progress).unwrap_or_default();
                report(t0.elapsed(), &p);
            }
            if t0.elapsed() >= limit {
                let so_far = self.text(progress).unwrap_or_default();
                panic!("no JSON in #{id} after {limit:?}; #{progress}: {so_far}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last `lines` lines the browser wrote to stderr (printed by Drop when a test panics).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.profile.path().join(LOG)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A PNG of the page as it stands.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }));
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.ws = None;
        if std::thread::panicking() {
            eprintln!("the browser's stderr, last lines:\n{}", self.log_tail(40));
        }
        // SAFETY: kill(2) with a negative pid signals the process group the child leads (process_group(0)).
        unsafe { kill(-(self.child.id() as i32), 9) };
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    // The DevTools server may keep the connection open: read the body by its Content-Length.
    let mut reader = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
