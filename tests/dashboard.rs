//! The stats page (`GET /` of the admin listener) in a real headless Chromium (Debian `chromium`,
//! installed by .ci/run): the page loads, refreshes itself from /stats, shows every server with
//! its state in colour, turns a server DOWN and red once its health check fails after the
//! backend process is killed, and fits a 390 px wide phone screen. Screenshots are saved as test
//! artifacts (`target/test-artifacts/`, or `$RINGWAY_TEST_ARTIFACTS`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::httpd::{Httpd, Reply, ok};
use common::*;

/// `rgb()` of the page's state colours (COLOURS in src/dashboard.html).
const GREEN: &str = "rgb(192, 255, 192)";
const RED: &str = "rgb(255, 144, 144)";

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Debian's chromium (.ci/run installs it)"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("RINGWAY_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Headless Chromium driven over the DevTools protocol (a WebSocket, spoken with tungstenite):
/// a real viewport of any size (a plain `--window-size` cannot go below 500 px wide), scripts
/// evaluated in the page, screenshots. Killed on drop.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    session: String,
    next_id: u64,
    _profile: TempDir,
}

impl Browser {
    fn start(binary: &str) -> Browser {
        use std::io::BufRead;
        let profile = TempDir::new("rw-chromium");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                // Tests run as root on CI machines, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("chromium stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent && let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools URL");
        let hostport = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .expect("ws:// URL")
            .to_string();
        let stream = std::net::TcpStream::connect(&hostport).expect("connect DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = b.call(
            "Target.createTarget",
            serde_json::json!({ "url": "about:blank" }),
        );
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b
    }

    /// Sends one command (to the page once attached) and returns its `result`.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = serde_json::Value::String(self.session.clone());
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send to DevTools");
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let Ok(text) = m.into_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a `width` x `height` viewport (mobile below 500 px).
    fn open(&mut self, url: &str, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1,
                                "mobile": width < 500 }),
        );
        self.call("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Waits until the page has refreshed itself from /stats `n` more times than `from`.
    fn wait_refreshes(&mut self, from: u64, n: u64) -> u64 {
        let mut seen = 0;
        let got = poll(Duration::from_secs(20), || {
            seen = self
                .eval("Number(document.body.dataset.refreshes || 0)")
                .as_u64()
                .unwrap_or(0);
            (seen >= from + n).then_some(seen)
        });
        got.unwrap_or_else(|| panic!("page refreshed {seen} times, wanted {}", from + n))
    }

    /// Every server row: (backend, server, data-state, the state cell's computed background).
    fn server_rows(&mut self) -> Vec<(String, String, String, String)> {
        let v = self.eval(
            "JSON.stringify([...document.querySelectorAll('tr.server')].map(r => [r.dataset.backend, \
             r.dataset.server, r.dataset.state, getComputedStyle(r.querySelector('td.state')).backgroundColor, \
             r.querySelector('td.state').textContent]))",
        );
        let rows: Vec<Vec<String>> =
            serde_json::from_str(v.as_str().unwrap_or("[]")).expect("rows JSON");
        rows.into_iter()
            .map(|r| {
                assert_eq!(
                    r.get(2),
                    r.get(4),
                    "data-state and the cell's text differ: {r:?}"
                );
                (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone())
            })
            .collect()
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": false }),
        );
        let png = base64_decode(r["data"].as_str().unwrap_or_default());
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "screenshot"
        );
        std::fs::write(path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the screenshot's encoding), without a crate for it.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A backend server that is its own process, so the test can kill it.
struct ServerProcess(Child, SocketAddr);

impl ServerProcess {
    fn start() -> ServerProcess {
        let port = free_port();
        let dir = TempDir::new("rw-dash-www");
        dir.write("index.html", "python backend\n");
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let up = poll(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        });
        assert!(up.is_some(), "python backend did not start");
        std::mem::forget(dir); // the server serves from it until it is killed
        ServerProcess(child, addr)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(
    listen: u16,
    admin: u16,
    a: SocketAddr,
    b: SocketAddr,
    py: SocketAddr,
    slow: SocketAddr,
) -> String {
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"app\"\n\
         [[listener.route]]\npath_prefix = \"/api/\"\nbackend = \"api\"\n\
         [[backend]]\nname = \"app\"\n\
         health_check = {{ type = \"http\", path = \"/\", interval = \"300ms\", timeout = \"1s\", rise = 1, fall = 1 }}\n\
         servers = [ {{ name = \"alpha\", address = \"{a}\" }}, {{ name = \"bravo\", address = \"{b}\" }}, \
                     {{ name = \"python\", address = \"{py}\" }} ]\n\
         [[backend]]\nname = \"api\"\nservers = [ {{ name = \"slowpoke\", address = \"{slow}\" }} ]\n"
    )
}

fn server_state(rw: &Ringway, server: &str) -> String {
    let stats = rw.stats();
    stats["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["servers"].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == server)
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Keep-alive GETs on one connection, one every few milliseconds, until `stop` (bounded: at most
/// `max` requests).
fn traffic(
    addr: SocketAddr,
    path: &'static str,
    max: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; 4096];
    for _ in 0..max {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .is_err()
        {
            break;
        }
        // Responses are small and come whole; one read each is enough for these backends.
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(4));
    }
}

#[test]
fn stats_page_in_headless_chromium_shows_every_server_and_a_killed_one_turns_red() {
    let Some(browser) = chromium() else {
        return;
    };
    let alpha = Httpd::named("alpha");
    let bravo = Httpd::named("bravo");
    let slow = Httpd::spawn(|_| {
        std::thread::sleep(Duration::from_millis(40));
        Reply::Bytes(ok("slow"))
    });
    let mut python = ServerProcess::start();
    let (a, b, py, sl) = (alpha.addr, bravo.addr, python.1, slow.addr);
    let rw = Ringway::start_text(|l, adm| config(l, adm, a, b, py, sl));
    let url = format!("http://{}/", rw.admin);
    let up = poll(Duration::from_secs(10), || {
        (["alpha", "bravo", "python"]
            .iter()
            .all(|s| server_state(&rw, s) == "UP"))
        .then_some(())
    });
    assert!(up.is_some(), "servers not UP: {}", rw.stats());

    // Some traffic, so the tables and the chart have numbers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = [("/", 15_000), ("/", 15_000), ("/api/orders", 1_500)]
        .into_iter()
        .map(|(path, max)| {
            let (addr, stop) = (rw.listen, std::sync::Arc::clone(&stop));
            std::thread::spawn(move || traffic(addr, path, max, stop))
        })
        .collect();

    // Loaded, and refreshed by itself from /stats at least twice.
    let mut page = Browser::start(browser);
    page.open(&url, 1280, 900);
    let seen = page.wait_refreshes(0, 2);
    let rows = page.server_rows();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        names,
        [
            ("app", "alpha"),
            ("app", "bravo"),
            ("app", "python"),
            ("api", "slowpoke")
        ]
    );
    for (backend, server, state, colour) in &rows {
        assert_eq!(
            (state.as_str(), colour.as_str()),
            ("UP", GREEN),
            "{backend}/{server}"
        );
    }
    let listener =
        page.eval("document.querySelector('tr.listener[data-listener=\"web\"]') !== null");
    assert_eq!(listener, serde_json::Value::Bool(true), "listener row");
    // A minute of history on the chart and numbers in the tables before the picture.
    let seen = page.wait_refreshes(seen, 6);
    page.screenshot(&artifacts().join("dashboard.png"));

    // The backend process dies; its health check fails; the page shows it DOWN, in red, at its
    // next refresh.
    python.kill();
    let down = poll(Duration::from_secs(10), || {
        (server_state(&rw, "python") == "DOWN").then_some(())
    });
    assert!(down.is_some(), "python not DOWN: {}", rw.stats());
    let seen = page.wait_refreshes(seen, 1);
    let _ = seen;
    let rows = page.server_rows();
    let python_row = rows.iter().find(|r| r.1 == "python").expect("python row");
    assert_eq!(
        (python_row.2.as_str(), python_row.3.as_str()),
        ("DOWN", RED)
    );
    for r in rows.iter().filter(|r| r.1 != "python") {
        assert_eq!((r.2.as_str(), r.3.as_str()), ("UP", GREEN), "{r:?}");
    }
    page.screenshot(&artifacts().join("dashboard-down.png"));

    // A phone: 390 px wide. Every row is there and the page is no wider than the screen (the
    // tables scroll inside their own boxes).
    page.open(&url, 390, 844);
    page.wait_refreshes(0, 2);
    assert_eq!(page.server_rows().len(), 4);
    let width = page.eval("[window.innerWidth, document.documentElement.scrollWidth]");
    assert_eq!(width[0], 390, "viewport {width}");
    assert!(
        width[1].as_u64().unwrap_or(u64::MAX) <= 390,
        "page wider than a 390 px screen: {width}"
    );
    page.screenshot(&artifacts().join("dashboard-390.png"));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
}
