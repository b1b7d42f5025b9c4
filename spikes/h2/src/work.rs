//! The exchange every case runs: browser-like GET requests (Chrome's header set, ~650 bytes of
//! fields), a small response (5 fields, 100-byte body), and the translation a proxy does with
//! every request whatever the codec: an HTTP/1.1 head for the backend, built into a reused Vec.

pub const STREAMS: usize = 100;
pub const BODY: &[u8; 100] = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqr";

pub const AUTHORITY: &str = "www.example.com";

/// Regular request fields, in the order Chrome 131 sends them.
pub const REQUEST_FIELDS: &[(&str, &str)] = &[
    (
        "sec-ch-ua",
        "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("accept", "*/*"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "no-cors"),
    ("sec-fetch-dest", "script"),
    ("referer", "https://www.example.com/"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"),
    (
        "cookie",
        "session=4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e; _ga=GA1.1.123456789.1733200000; theme=dark",
    ),
    ("priority", "u=1"),
];

pub fn path(i: usize) -> String {
    format!("/static/js/chunk-{:04}.js", i % 1000)
}

/// Response fields after `:status: 200`.
pub const RESPONSE_FIELDS: &[(&str, &str)] = &[
    ("content-type", "application/javascript"),
    ("content-length", "100"),
    ("date", "Thu, 03 Dec 2026 12:00:00 GMT"),
    ("server", "ringway"),
];

/// Builds the HTTP/1.1 request head a backend would get. Returns its length (kept so the
/// optimiser cannot drop the work).
pub struct H1Head {
    pub buf: Vec<u8>,
}

impl H1Head {
    pub fn new() -> H1Head {
        H1Head {
            buf: Vec::with_capacity(2048),
        }
    }
    pub fn start(&mut self, method: &[u8], path: &[u8], authority: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(method);
        self.buf.push(b' ');
        self.buf.extend_from_slice(path);
        self.buf.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        self.buf.extend_from_slice(authority);
        self.buf.extend_from_slice(b"\r\n");
    }
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }
    pub fn finish(&mut self) -> usize {
        self.buf.extend_from_slice(b"\r\n");
        std::hint::black_box(self.buf.len())
    }
}

/// Collects one request's pseudo-header fields and regular fields as they are decoded, in a
/// per-connection scratch area (no allocation per request once warm), then writes the H1 head.
/// RFC 9113 §8.3: pseudo-header fields come first; here they are only gathered.
pub struct Fields {
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub authority: Vec<u8>,
    pub regular: Vec<u8>,
    pub bytes: usize,
    pub bad: bool,
}

impl Fields {
    pub fn new() -> Fields {
        Fields {
            method: Vec::with_capacity(16),
            path: Vec::with_capacity(256),
            authority: Vec::with_capacity(256),
            regular: Vec::with_capacity(2048),
            bytes: 0,
            bad: false,
        }
    }
    pub fn clear(&mut self) {
        self.method.clear();
        self.path.clear();
        self.authority.clear();
        self.regular.clear();
        self.bytes = 0;
        self.bad = false;
    }
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        // RFC 9113 §6.5.2: header list size counts name + value + 32 per field.
        self.bytes += name.len() + value.len() + 32;
        match name {
            b":method" => self.method.extend_from_slice(value),
            b":path" => self.path.extend_from_slice(value),
            b":authority" => self.authority.extend_from_slice(value),
            b":scheme" => {}
            // RFC 9113 §8.2.1: uppercase names are malformed; §8.2.2: connection-specific fields.
            _ if name.iter().any(u8::is_ascii_uppercase) => self.bad = true,
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => self.bad = true,
            _ => {
                self.regular.extend_from_slice(name);
                self.regular.extend_from_slice(b": ");
                self.regular.extend_from_slice(value);
                self.regular.extend_from_slice(b"\r\n");
            }
        }
    }
    pub fn write_h1(&self, h1: &mut H1Head) -> usize {
        h1.start(&self.method, &self.path, &self.authority);
        h1.buf.extend_from_slice(&self.regular);
        h1.finish()
    }
}
