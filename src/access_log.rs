//! Owns: the access log line (one per HTTP request) in its two documented formats, and a
//! per-shard sink that batches lines and writes them once per loop turn.
//! Must not: be shared between shards. Each shard opens its own file descriptor (O_APPEND, so
//! whole-line writes from several shards never interleave inside a line).
//!
//! Field names and order are documented API (docs/logging.md).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;

use crate::config::{AccessLog, AccessLogFormat};

/// Lines are flushed when the batch grows past this, and at the end of every loop turn.
const BATCH_BYTES_MAX: usize = 64 * 1024;

/// One request as the access log sees it.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version_minor: u8,
    pub status: u16,
    /// Bytes of the response sent to the client (head and body).
    pub bytes_sent: u64,
    /// Bytes of the request body received from the client.
    pub bytes_received: u64,
    /// From the first byte of the request head to the end of the response.
    pub duration_ms: u64,
    pub backend: &'a str,
    pub server: &'a str,
    pub shard: usize,
    pub referer: &'a str,
    pub user_agent: &'a str,
    /// Who ended the exchange: done, client_closed, client_error, server_error, timeout, drain,
    /// local (ringway answered itself).
    pub term: &'a str,
    /// `duration_ms` in microseconds.
    pub request_us: u64,
    /// Waited in the backend queue (`None`: did not queue).
    pub queue_us: Option<u64>,
    /// Connect to the server, to connected (with upstream TLS, handshake done); `None` when a
    /// pooled connection was used or no connect succeeded.
    pub connect_us: Option<u64>,
    /// Request handed to the server to its first response head; `None` without one.
    pub response_us: Option<u64>,
    /// Attempts beyond the first (connect retries, replays on a new connection).
    pub retries: u32,
    /// Server name (as configured), `-` when none.
    pub server_name: &'a str,
    /// TLS termination: the negotiated version and the client's SNI.
    pub tls_version: Option<&'a str>,
    pub sni: Option<&'a str>,
    /// The client's protocol: `h1` or `h2`.
    pub proto: &'a str,
}

impl Line<'_> {
    /// The request line's version: `HTTP/1.x` as received, `HTTP/2.0` for HTTP/2 (as nginx
    /// logs it).
    fn version(&self) -> String {
        if self.proto == "h2" {
            "HTTP/2.0".to_string()
        } else {
            format!("HTTP/1.{}", self.version_minor)
        }
    }
}

/// `value` or `-`, for the combined format's `key=value` fields.
struct Opt<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Formats `line` (without the trailing newline) into `out`. `now_unix_ms` is the wall clock.
pub fn format(line: &Line<'_>, format: AccessLogFormat, now_unix_ms: u64, out: &mut String) {
    match format {
        AccessLogFormat::Combined => {
            // NCSA combined, then ringway's fields as key=value.
            let _ = write!(
                out,
                "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" backend={} server={} shard={} duration_ms={} bytes_received={} term={} \
                 request_us={} queue_us={} connect_us={} response_us={} retries={} server_name={} tls_version={} sni={} proto={}",
                line.client.ip(),
                clf_time(now_unix_ms),
                sanitize(line.method),
                sanitize(line.target),
                line.version(),
                line.status,
                line.bytes_sent,
                dash_if_empty(&sanitize(line.referer)),
                dash_if_empty(&sanitize(line.user_agent)),
                line.backend,
                line.server,
                line.shard,
                line.duration_ms,
                line.bytes_received,
                line.term,
                line.request_us,
                Opt(line.queue_us),
                Opt(line.connect_us),
                Opt(line.response_us),
                line.retries,
                line.server_name,
                Opt(line.tls_version),
                // The SNI is the client's text: escaped like the quoted fields, never empty.
                Opt(line
                    .sni
                    .map(sanitize)
                    .filter(|s| !s.is_empty() && !s.contains(' '))),
                line.proto,
            );
        }
        AccessLogFormat::Json => {
            let value = serde_json::json!({
                "time_unix_ms": now_unix_ms,
                "client": line.client.ip().to_string(),
                "client_port": line.client.port(),
                "method": line.method,
                "target": line.target,
                "version": line.version(),
                "status": line.status,
                "bytes_sent": line.bytes_sent,
                "bytes_received": line.bytes_received,
                "duration_ms": line.duration_ms,
                "backend": line.backend,
                "server": line.server,
                "shard": line.shard,
                "referer": line.referer,
                "user_agent": line.user_agent,
                "term": line.term,
                "request_us": line.request_us,
                "queue_us": line.queue_us,
                "connect_us": line.connect_us,
                "response_us": line.response_us,
                "retries": line.retries,
                "server_name": line.server_name,
                "tls_version": line.tls_version,
                "sni": line.sni,
                "proto": line.proto,
            });
            let _ = write!(out, "{value}");
        }
    }
}

/// Escapes `"` and `\` and replaces control bytes, so one request is always one line that a
/// log parser can split on quotes.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn dash_if_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `24/Nov/2026:08:45:47 +0000` (UTC).
fn clf_time(unix_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let month = MONTHS.get((m as usize).saturating_sub(1)).unwrap_or(&"Jan");
    format!(
        "{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A shard's writer for one listener's access log.
pub struct Sink {
    file: std::fs::File,
    format: AccessLogFormat,
    batch: String,
}

impl Sink {
    /// Opens the sink for `target`; `None` when logging is off.
    pub fn open(target: &AccessLog, format: AccessLogFormat) -> std::io::Result<Option<Sink>> {
        let file = match target {
            AccessLog::Off => return Ok(None),
            AccessLog::Stdout => {
                // SAFETY: dup(2) of stdout; the new fd is owned by the File below.
                let fd = unsafe { libc::dup(libc::STDOUT_FILENO) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: `fd` is a fresh descriptor nothing else owns.
                unsafe { std::fs::File::from_raw_fd(fd) }
            }
            AccessLog::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        };
        Ok(Some(Sink {
            file,
            format,
            batch: String::with_capacity(4096),
        }))
    }

    pub fn write(&mut self, line: &Line<'_>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        format(line, self.format, now, &mut self.batch);
        self.batch.push('\n');
        if self.batch.len() >= BATCH_BYTES_MAX {
            self.flush();
        }
    }

    /// Writes the batch (whole lines only). A failed write drops the batch rather than blocking
    /// or growing without bound.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(self.batch.as_bytes()) {
            tracing::warn!(error = %e, "access log write failed; lines dropped");
        }
        self.batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line<'static> {
        Line {
            client: "192.0.2.7:5555".parse().unwrap_or_else(|_| unreachable!()),
            method: "GET",
            target: "/a?b=\"c\"",
            version_minor: 1,
            status: 200,
            bytes_sent: 123,
            bytes_received: 0,
            duration_ms: 4,
            backend: "app",
            server: "127.0.0.1:9001",
            shard: 1,
            referer: "",
            user_agent: "curl/8",
            term: "done",
            request_us: 4_210,
            queue_us: None,
            connect_us: Some(180),
            response_us: Some(3_900),
            retries: 1,
            server_name: "a",
            tls_version: Some("TLSv1.3"),
            sni: Some("example.test"),
            proto: "h1",
        }
    }

    #[test]
    fn combined_line_is_ncsa_plus_fields() {
        let mut out = String::new();
        format(
            &line(),
            AccessLogFormat::Combined,
            1_795_510_000_000,
            &mut out,
        );
        assert_eq!(
            out,
            "192.0.2.7 - - [24/Nov/2026:08:46:40 +0000] \"GET /a?b=\\\"c\\\" HTTP/1.1\" 200 123 \"-\" \"curl/8\" backend=app server=127.0.0.1:9001 shard=1 duration_ms=4 bytes_received=0 term=done \
             request_us=4210 queue_us=- connect_us=180 response_us=3900 retries=1 server_name=a tls_version=TLSv1.3 sni=example.test proto=h1"
        );
        // Absent values are `-`; an SNI that would break the key=value split is left out.
        let mut out = String::new();
        let plain = Line {
            connect_us: None,
            tls_version: None,
            sni: Some("a b"),
            ..line()
        };
        format(&plain, AccessLogFormat::Combined, 0, &mut out);
        assert!(
            out.ends_with(
                "connect_us=- response_us=3900 retries=1 server_name=a tls_version=- sni=- proto=h1"
            ),
            "{out}"
        );
    }

    #[test]
    fn json_line_has_every_field() {
        let mut out = String::new();
        format(&line(), AccessLogFormat::Json, 5, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v["status"], 200);
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["target"], "/a?b=\"c\"");
        assert_eq!(v["server"], "127.0.0.1:9001");
        assert_eq!(v["term"], "done");
        assert_eq!(v["time_unix_ms"], 5);
        assert_eq!(v["request_us"], 4_210);
        assert_eq!(v["queue_us"], serde_json::Value::Null);
        assert_eq!(v["connect_us"], 180);
        assert_eq!(v["response_us"], 3_900);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["server_name"], "a");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert_eq!(v["sni"], "example.test");
        assert_eq!(v["proto"], "h1");
        assert_eq!(v["version"], "HTTP/1.1");
        let mut out = String::new();
        format(
            &Line {
                proto: "h2",
                ..line()
            },
            AccessLogFormat::Json,
            5,
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["proto"], "h2");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
