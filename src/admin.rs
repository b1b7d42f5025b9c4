//! Owns: the admin HTTP listeners on the control thread (`[admin] bind` on TCP, loopback by
//! default, and `[admin] socket`, a unix socket of mode 0600): `GET /stats` (JSON, merged from
//! every shard on demand), `GET /healthz`, the routes of `dashboard.rs` (`GET /metrics`, the stats
//! page at `GET /` and `GET /dashboard`), `POST /reload`, the runtime API under `/api/v1`
//! ([`crate::api`]), and who may use them ([`authorize`]: writes over TCP need the bearer token
//! of `[admin] token_file`, compared in constant time).
//! Must not: read shard state except through messages (`Shards::report`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::bus::Shards;

/// How a request reached the admin listener: that decides what it may do without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// TCP; `loopback` when the listener is bound to a loopback address (reads need no token).
    Tcp { loopback: bool },
    /// The unix socket (mode 0600: only its owner and root can connect): everything allowed.
    Unix,
}

/// The admin listeners `[admin]` asks for, bound (a bind failure fails the start).
pub struct Listeners {
    tcp: Option<tokio::net::TcpListener>,
    unix: Option<(tokio::net::UnixListener, std::path::PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin listener {addr}: {source}")]
    Tcp {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {}: {source}", path.display())]
    Unix {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {}: a file that is not a socket is in the way", .0.display())]
    NotASocket(std::path::PathBuf),
    #[error("admin socket {}: another process answers on it (a ringway still running?)", .0.display())]
    InUse(std::path::PathBuf),
}

impl Listeners {
    pub async fn bind(global: &crate::config::Global) -> Result<Listeners, AdminError> {
        let tcp = match global.admin {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| AdminError::Tcp { addr, source })?,
            ),
            None => None,
        };
        Listeners::with_tcp(global, tcp, false)
    }

    /// With a TCP listener bound (or adopted from an old process) by the caller. `take_over`:
    /// a binary upgrade, whose old process still has the unix socket: replace its file.
    pub fn with_tcp(
        global: &crate::config::Global,
        tcp: Option<tokio::net::TcpListener>,
        take_over: bool,
    ) -> Result<Listeners, AdminError> {
        let unix = match &global.admin_socket {
            Some(path) => Some((bind_unix(path, take_over)?, path.clone())),
            None => None,
        };
        Ok(Listeners { tcp, unix })
    }

    /// What the ready line prints: `127.0.0.1:9900`, `unix:/run/…`, both, or `off`.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if let Some(a) = self.tcp.as_ref().and_then(|t| t.local_addr().ok()) {
            out.push(a.to_string());
        }
        if let Some((_, p)) = &self.unix {
            out.push(format!("unix:{}", p.display()));
        }
        if out.is_empty() {
            "off".into()
        } else {
            out.join(",")
        }
    }

    /// Serves every listener until the tasks are aborted.
    pub fn spawn(
        self,
        shards: &Arc<Shards>,
        changes: &crate::live::Changes,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(l) = self.tcp {
            let loopback = l.local_addr().is_ok_and(|a| a.ip().is_loopback());
            let (shards, changes) = (Arc::clone(shards), changes.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => connection(s, Via::Tcp { loopback }, &shards, &changes),
                        Err(e) => accept_failed(&e).await,
                    }
                }
            }));
        }
        if let Some((l, path)) = self.unix {
            let (shards, changes) = (Arc::clone(shards), changes.clone());
            let ino = inode(&path);
            tasks.push(tokio::spawn(async move {
                let _remove = RemoveOnDrop(path, ino);
                loop {
                    match l.accept().await {
                        Ok((s, _)) => connection(s, Via::Unix, &shards, &changes),
                        Err(e) => accept_failed(&e).await,
                    }
                }
            }));
        }
        tasks
    }
}

/// Removes the unix socket's file when its task ends (stop, or abort), unless the file is no
/// longer the one this process made (a binary upgrade's new process replaced it).
struct RemoveOnDrop(std::path::PathBuf, Option<(u64, u64)>);

fn inode(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.1.is_some() && inode(&self.0) == self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Binds the unix socket with mode 0600. A stale socket file left by a ringway that died is
/// removed; a live one (something answers) or any other file is left alone and refused, unless
/// `take_over` (the old process of a binary upgrade answers there).
fn bind_unix(
    path: &std::path::Path,
    take_over: bool,
) -> Result<tokio::net::UnixListener, AdminError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |source| AdminError::Unix {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(AdminError::NotASocket(path.to_path_buf()));
        }
        if !take_over && std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // The socket is created by bind with the umask applied; tighten it before anyone can
    // connect (listen has not been called yet, so no connection can be made in between).
    let sock =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(err)?;
    let addr = socket2::SockAddr::unix(path).map_err(err)?;
    sock.bind(&addr).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    sock.listen(64).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    let std_listener: std::os::unix::net::UnixListener = sock.into();
    tokio::net::UnixListener::from_std(std_listener).map_err(err)
}

async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "admin accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

fn connection<S>(stream: S, via: Via, shards: &Arc<Shards>, changes: &crate::live::Changes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shards = Arc::clone(shards);
    let changes = changes.clone();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            handle(req, via, Arc::clone(&shards), changes.clone())
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(std::time::Duration::from_secs(5))
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        // A client that sends its head and then never reads is dropped with the connection.
        match tokio::time::timeout(std::time::Duration::from_secs(60), conn).await {
            Ok(Err(e)) => tracing::debug!(error = %e, "admin connection error"),
            Ok(Ok(())) => {}
            Err(_) => tracing::debug!("admin connection closed after 60 s"),
        }
    });
}

/// Who may do what: on the unix socket, everything; over TCP, a valid `Authorization: Bearer`
/// token allows everything, reads need none on a loopback listener, and writes always need one.
pub fn authorize(
    headers: &hyper::HeaderMap,
    via: Via,
    token: Option<&crate::config::AdminToken>,
    write: bool,
) -> Result<(), (StatusCode, &'static str)> {
    let Via::Tcp { loopback } = via else {
        return Ok(());
    };
    let presented = headers.get(hyper::header::AUTHORIZATION).map(|v| {
        v.as_bytes()
            .strip_prefix(b"Bearer ")
            .unwrap_or(b"")
            .trim_ascii()
    });
    if let (Some(t), Some(p)) = (token, presented) {
        return if t.matches(p) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "the bearer token is not valid\n"))
        };
    }
    if !write && loopback {
        return Ok(());
    }
    match token {
        Some(_) => Err((
            StatusCode::UNAUTHORIZED,
            "this needs `Authorization: Bearer <token>` (the token in [admin] token_file)\n",
        )),
        None => Err((
            StatusCode::FORBIDDEN,
            "admin writes over TCP need [admin] token_file; or use the [admin] socket\n",
        )),
    }
}

/// Largest request body the admin listener reads.
const BODY_BYTES_MAX: usize = 1 << 20;

async fn handle(
    req: Request<Incoming>,
    via: Via,
    shards: Arc<Shards>,
    changes: crate::live::Changes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let token = changes.current().global.admin_token.clone();
    if let Err((status, why)) = authorize(req.headers(), via, token.as_ref(), write) {
        let mut r = text(status, why.to_string());
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"ringway\""),
            );
        }
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        let method = req.method().clone();
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        return Ok(crate::api::handle(
            &method,
            rest.trim_end_matches('/'),
            &body,
            &changes,
            &shards,
        )
        .await);
    }
    let response = match (req.method(), path.as_str()) {
        (&Method::POST, "/reload") => reload(req, &changes).await,
        (&Method::POST, "/upgrade") => upgrade(req).await,
        (&Method::GET, "/stats") => {
            // Compact unless asked: with thousands of backends (Redis routes) the indented form
            // is three times the bytes for the stats page to fetch every refresh.
            let pretty = req.uri().query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv == "pretty" || kv.starts_with("pretty="))
            });
            let report = shards.report().await;
            // Serialized straight from the report (no intermediate `Value`: with 10,000
            // backends that copy doubled the scrape's memory).
            #[derive(serde::Serialize)]
            struct StatsBody<'a> {
                #[serde(flatten)]
                report: &'a crate::stats::StatsReport,
                #[serde(skip_serializing_if = "Option::is_none")]
                provider: Option<crate::provider::ProviderStats>,
            }
            let value = StatsBody {
                report: &report,
                provider: changes.provider.get().map(|p| p.stats()),
            };
            let body = if pretty {
                serde_json::to_vec_pretty(&value)
            } else {
                serde_json::to_vec(&value)
            };
            match body {
                Ok(mut body) => {
                    body.push(b'\n');
                    reply(StatusCode::OK, "application/json", body)
                }
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("cannot encode stats: {e}\n").into_bytes(),
                ),
            }
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        (&Method::GET, "/metrics") => {
            crate::dashboard::metrics(req.headers().get(hyper::header::ACCEPT), &shards).await
        }
        (&Method::GET, "/" | "/dashboard") => crate::dashboard::page(),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found; try GET /stats or GET /api/v1/backends\n".to_vec(),
        ),
    };
    Ok(response)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(req.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}\n"),
        )),
    }
}

/// Body `{"config": "/path"}` (optional): reload that file instead of the one ringway runs.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    config: Option<std::path::PathBuf>,
}

async fn reload(req: Request<Incoming>, changes: &crate::live::Changes) -> Response<Full<Bytes>> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: ReloadBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("body must be {{\"config\": \"/path\"}} or empty: {e}\n"),
                );
            }
        }
    };
    match changes.reload(parsed.config, "POST /reload").await {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) if e.nothing_changed() => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": e.to_string(), "applied": false }),
        ),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": e.to_string(), "applied": "partly" }),
        ),
    }
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            reply(status, "application/json", body)
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}\n"),
        ),
    }
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain", body.into_bytes())
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Where a command-line client reaches the admin listener, with the token it presents.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp {
        addr: std::net::SocketAddr,
        token: Option<String>,
    },
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { addr, .. } => write!(f, "{addr}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

impl Target {
    /// `IP:PORT` or `unix:/path`, with an optional token file.
    pub fn parse(addr: &str, token_file: Option<&std::path::Path>) -> Result<Target, String> {
        if let Some(p) = addr.strip_prefix("unix:") {
            return Ok(Target::Unix(p.into()));
        }
        let addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not IP:PORT or unix:/path"))?;
        let token = token_file.map(read_token_file).transpose()?;
        Ok(Target::Tcp { addr, token })
    }

    /// The `[admin]` of a config file (relative paths from its directory): its socket when it
    /// has one, else its TCP address and token. `None` when the file says nothing usable.
    pub fn from_file(path: &std::path::Path) -> Option<Target> {
        let text = std::fs::read_to_string(path).ok()?;
        let doc = toml::from_str::<toml::Table>(&text).ok()?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let admin = doc.get("admin");
        if let Some(sock) = admin.and_then(|a| a.get("socket")?.as_str()) {
            return Some(Target::Unix(base.join(sock)));
        }
        let addr = admin
            .and_then(|a| a.get("bind")?.as_str())
            .or_else(|| doc.get("global")?.get("admin")?.as_str())?
            .parse()
            .ok()?;
        let token = admin
            .and_then(|a| a.get("token_file")?.as_str())
            .and_then(|f| read_token_file(&base.join(f)).ok());
        Some(Target::Tcp { addr, token })
    }

    /// Sends one request (blocking, 30 s at most) and returns the status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let timeout = std::time::Duration::from_secs(30);
        let auth = match self {
            Target::Tcp { token: Some(t), .. } => format!("Authorization: Bearer {t}\r\n"),
            _ => String::new(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: ringway\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut out = Vec::new();
        match self {
            Target::Tcp { addr, .. } => {
                let mut s =
                    std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(5))?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(head.as_bytes())?;
                s.read_to_end(&mut out)?;
            }
            Target::Unix(p) => {
                let mut s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(head.as_bytes())?;
                s.read_to_end(&mut out)?;
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
        Ok((status, body.to_string()))
    }
}

/// Shortest token accepted: 16 bytes (e.g. `head -c 24 /dev/urandom | base64`).
pub const TOKEN_BYTES_MIN: usize = 16;

/// Reads `[admin] token_file` into `config.global.admin_token`; a problem is the token_file
/// line's fault. The first line is the token (surrounding whitespace removed).
pub fn read_token(config: &mut crate::config::Config) -> Option<crate::config::Diagnostic> {
    use std::os::unix::fs::PermissionsExt;
    let f = config.global.admin_token_file.as_ref()?;
    let meta = match std::fs::metadata(&f.value) {
        Ok(m) => m,
        Err(e) => return Some(f.diagnostic(format!("token_file {}: {e}", f.display()))),
    };
    if meta.permissions().mode() & 0o004 != 0 {
        return Some(f.diagnostic(format!(
            "token_file {} is readable by every user: `chmod 600` it",
            f.display()
        )));
    }
    let text = match std::fs::read(&f.value) {
        Ok(t) => t,
        Err(e) => return Some(f.diagnostic(format!("token_file {}: {e}", f.display()))),
    };
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let token = line.trim_ascii();
    if token.len() < TOKEN_BYTES_MIN {
        return Some(f.diagnostic(format!(
            "token_file {}: the token (its first line) must be at least {TOKEN_BYTES_MIN} bytes, e.g. `head -c 24 /dev/urandom | base64 > FILE`",
            f.display()
        )));
    }
    config.global.admin_token = Some(crate::config::AdminToken(token.to_vec()));
    None
}

/// `POST /upgrade`, body `{"config": "/path", "bin": "/path"}` (both optional): binary upgrade
/// (crate::takeover). 200 `{"old_pid", "new_pid"}` once the new process serves (this one then
/// drains); otherwise `{"error"}` with 409 (busy, stopping), 502 (the new process failed) or 500,
/// and this process keeps serving.
async fn upgrade(req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct UpgradeBody {
        config: Option<std::path::PathBuf>,
        bin: Option<std::path::PathBuf>,
    }
    let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    let parsed: UpgradeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "body must be {{\"config\": \"/path\", \"bin\": \"/path\"}} or empty: {e}\n"
                    ),
                );
            }
        }
    };
    let request = crate::takeover::UpgradeRequest {
        config: parsed.config,
        bin: parsed.bin,
        source: "POST /upgrade",
    };
    match crate::takeover::request(request).await {
        Ok(done) => json(StatusCode::OK, &done),
        Err(e) => json(
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &serde_json::json!({ "error": e.to_string(), "upgraded": false }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminToken;

    fn headers(auth: Option<&str>) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_str(a).expect("value"),
            );
        }
        h
    }

    const LOOP: Via = Via::Tcp { loopback: true };
    const WIDE: Via = Via::Tcp { loopback: false };

    #[test]
    fn the_unix_socket_may_do_everything() {
        assert!(authorize(&headers(None), Via::Unix, None, true).is_ok());
    }

    #[test]
    fn loopback_reads_are_open_writes_need_the_token() {
        let t = AdminToken(b"0123456789abcdef".to_vec());
        assert!(authorize(&headers(None), LOOP, Some(&t), false).is_ok());
        let e = authorize(&headers(None), LOOP, Some(&t), true).unwrap_err();
        assert_eq!(e.0, StatusCode::UNAUTHORIZED);
        let e = authorize(
            &headers(Some("Bearer 0123456789abcdeX")),
            LOOP,
            Some(&t),
            true,
        )
        .unwrap_err();
        assert_eq!(e.0, StatusCode::UNAUTHORIZED);
        let e = authorize(
            &headers(Some("Basic 0123456789abcdef")),
            LOOP,
            Some(&t),
            true,
        )
        .unwrap_err();
        assert_eq!(e.0, StatusCode::UNAUTHORIZED);
        assert!(
            authorize(
                &headers(Some("Bearer 0123456789abcdef")),
                LOOP,
                Some(&t),
                true
            )
            .is_ok()
        );
        // Without a token file there is no way to write over TCP.
        let e = authorize(&headers(Some("Bearer x")), LOOP, None, true).unwrap_err();
        assert_eq!(e.0, StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_wide_listener_needs_the_token_for_reads_too() {
        let t = AdminToken(b"0123456789abcdef".to_vec());
        assert!(authorize(&headers(None), WIDE, Some(&t), false).is_err());
        assert!(
            authorize(
                &headers(Some("Bearer 0123456789abcdef")),
                WIDE,
                Some(&t),
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn tokens_compare_whole() {
        let t = AdminToken(b"secret-token-123".to_vec());
        assert!(t.matches(b"secret-token-123"));
        assert!(!t.matches(b"secret-token-12"));
        assert!(!t.matches(b"secret-token-1234"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
    }
}
