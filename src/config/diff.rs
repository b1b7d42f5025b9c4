//! Owns: comparing two validated [`Config`]s into the list of [`Change`]s a hot reload (SIGHUP)
//! or the runtime API would apply, in an order that is safe to apply front to back.
//! Must not: do I/O, read the clock, or decide how a change is applied; it only says what differs.
//!
//! Identity is by name, never by position: listeners and backends by `name`, servers by `name`
//! within their backend. Every backend index in a [`Config`] (a listener's backend, route rules,
//! detect backends) is resolved to the backend's name before comparing, so reordering the file is
//! not a change. Each comparison destructures the config struct it reads, so a field added to
//! [`Config`] does not compile here until it is classified as a change (STYLE §4).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::{
    Backend, Balance, Config, Detect, Global, HashKey, HttpListener, Listener, Mode, Server,
    Shards, SniRouting, SpliceMode, Timeouts, TlsListener,
};
use crate::proxy_protocol::ProxyVersion;
use crate::router::{HeaderMatch, HostMatch, PathMatch, Router};

/// What differs between two configs, in the order it can be applied (see [`diff`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ConfigDiff {
    pub changes: Vec<Change>,
}

/// One difference. Value changes carry `(old, new)`; durations are in milliseconds (`..Ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A global setting that only a restart applies (see [`RestartReason`]).
    RestartNeeded(RestartReason),
    /// Global settings that can be applied at run time.
    GlobalChanged {
        what: Vec<GlobalWhat>,
    },
    ListenerAdded(String),
    /// Also the first half of a changed `bind` (the socket must be re-created), followed by
    /// `ListenerAdded` of the same name.
    ListenerRemoved(String),
    /// Same name and `bind`: the socket stays, new connections get the new settings.
    ListenerChanged {
        name: String,
        what: Vec<ListenerWhat>,
    },
    BackendAdded(String),
    BackendRemoved(String),
    /// Backend-level settings; its servers' changes are `Server*` changes.
    BackendChanged {
        name: String,
        what: Vec<BackendWhat>,
    },
    ServerAdded {
        backend: String,
        server: String,
    },
    ServerRemoved {
        backend: String,
        server: String,
    },
    ServerChanged {
        backend: String,
        server: String,
        what: Vec<ServerWhat>,
    },
}

/// A `[global]` setting the running shards cannot change: rings, buffer pools and pipe pools are
/// sized at boot, threads are pinned at boot, privileges are dropped after binding, and the admin
/// listener lives in the control thread that would carry out the reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// `"auto"` or the count.
    Shards(String, String),
    RecvBufferBytes(u32, u32),
    RecvBufferCount(u16, u16),
    PipePoolMax(u32, u32),
    PipeBytes(u32, u32),
    ConnsPerShardMax(u32, u32),
    User(Option<String>, Option<String>),
    Group(Option<String>, Option<String>),
    Admin(Option<SocketAddr>, Option<SocketAddr>),
    AdminSocket(Option<std::path::PathBuf>, Option<std::path::PathBuf>),
    /// Any `[provider.redis]` setting.
    Provider,
}

/// A global setting applicable at run time (to new connections and new deadlines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalWhat {
    DrainTimeoutMs(u64, u64),
    TimeoutMs(TimeoutName, u64, u64),
}

/// A key of `[timeouts]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutName {
    Connect,
    ClientIdle,
    ServerIdle,
    HttpRequest,
    HttpKeepAlive,
    ServerResponse,
    Tunnel,
}

/// What changed on a listener that keeps its name and `bind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerWhat {
    /// `tcp`, `http` or `detect`. The HTTP settings that appear or vanish with the mode are not
    /// listed separately.
    Mode(&'static str, &'static str),
    /// The listener's `backend` (TCP target, HTTP/SNI default), by name.
    DefaultBackend(Option<String>, Option<String>),
    /// The ordered HTTP or SNI route rules (first match wins, so their order counts), with
    /// backends by name.
    Routes,
    /// `x_forwarded_for`, `x_real_ip`, `x_forwarded_proto` or `forwarded`.
    ForwardingHeaders,
    HeadBytesMax(u32, u32),
    BodyBytesMax(Option<u64>, Option<u64>),
    /// `http2` on or off.
    Http2(bool, bool),
    /// `http2_streams_max`: new HTTP/2 connections announce it; open ones keep theirs.
    Http2StreamsMax(u32, u32),
    /// `access_log` destination or `access_log_format`.
    AccessLog,
    Splice(&'static str, &'static str),
    /// Linux applies a new backlog when listen(2) is called again on the bound socket.
    Backlog(u32, u32),
    AcceptProxy(bool, bool),
    PeekTimeoutMs(u64, u64),
    Tls(TlsChange),
    /// Detect listeners: where clients that are neither HTTP nor TLS go, by name.
    DetectTcpBackend(Option<String>, Option<String>),
    /// Detect listeners: where TLS clients are passed through, by name.
    DetectTlsBackend(Option<String>, Option<String>),
}

/// `[listener.tls]` of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsChange {
    /// Termination turned on.
    Added,
    /// Termination turned off.
    Removed,
    /// `certificates`: the certificate list (paths, names) or the default one; `other`: version,
    /// ALPN, handshake timeout, session cache or tickets. At least one is true.
    Changed { certificates: bool, other: bool },
}

/// What changed in a backend's own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendWhat {
    Balance(&'static str, &'static str),
    /// `source`, `path`, `header:NAME` or `cookie:NAME`.
    HashKey(String, String),
    Retries(u32, u32),
    Redispatch(bool, bool),
    HealthCheck(SectionChange),
    StickyCookie(Option<String>, Option<String>),
    QueueMax(u32, u32),
    QueueTimeoutMs(u64, u64),
    Passive(SectionChange),
    Tls(SectionChange),
    IdleConnsMax(u32, u32),
    IdleTimeoutMs(u64, u64),
}

/// An optional table (`health_check`, `passive`, `[backend.tls]`) that appeared, vanished or
/// differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionChange {
    Added,
    Removed,
    Changed,
}

/// What changed on a server that keeps its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerWhat {
    Weight(u32, u32),
    Address(SocketAddr, SocketAddr),
    Flags(ServerFlag),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFlag {
    /// `ready`, `drain` or `maint` (runtime API).
    State(&'static str, &'static str),
    Backup(bool, bool),
    Maxconn(u32, u32),
    /// `v1`, `v2` or off.
    SendProxy(Option<&'static str>, Option<&'static str>),
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The `[global]` keys whose change needs a restart; empty when a hot reload can apply all.
    pub fn needs_restart(&self) -> Vec<&str> {
        self.changes
            .iter()
            .filter_map(|c| match c {
                Change::RestartNeeded(reason) => Some(reason.key()),
                Change::GlobalChanged { .. }
                | Change::ListenerAdded(_)
                | Change::ListenerRemoved(_)
                | Change::ListenerChanged { .. }
                | Change::BackendAdded(_)
                | Change::BackendRemoved(_)
                | Change::BackendChanged { .. }
                | Change::ServerAdded { .. }
                | Change::ServerRemoved { .. }
                | Change::ServerChanged { .. } => None,
            })
            .collect()
    }
}

impl RestartReason {
    /// The key in `[global]`, as written in the TOML file.
    pub fn key(&self) -> &'static str {
        match self {
            RestartReason::Shards(..) => "shards",
            RestartReason::RecvBufferBytes(..) => "recv_buffer_size",
            RestartReason::RecvBufferCount(..) => "recv_buffer_count",
            RestartReason::PipePoolMax(..) => "pipe_pool_max",
            RestartReason::PipeBytes(..) => "pipe_size",
            RestartReason::ConnsPerShardMax(..) => "conns_per_shard_max",
            RestartReason::User(..) => "user",
            RestartReason::Group(..) => "group",
            RestartReason::Admin(..) => "admin",
            RestartReason::AdminSocket(..) => "admin socket",
            RestartReason::Provider => "provider.redis",
        }
    }
}

impl TimeoutName {
    /// The key in `[timeouts]`.
    pub fn key(self) -> &'static str {
        match self {
            TimeoutName::Connect => "connect",
            TimeoutName::ClientIdle => "client_idle",
            TimeoutName::ServerIdle => "server_idle",
            TimeoutName::HttpRequest => "http_request",
            TimeoutName::HttpKeepAlive => "http_keep_alive",
            TimeoutName::ServerResponse => "server_response",
            TimeoutName::Tunnel => "tunnel",
        }
    }
}

/// The changes that turn `old` into `new`, ordered so that applying them front to back never
/// leaves a reference to a missing backend or two listeners on one address:
///
/// 1. `RestartNeeded` (a caller may refuse the hot reload on any of them), then `GlobalChanged`;
/// 2. `ListenerRemoved`, including the removal half of a changed `bind`, which frees addresses
///    before any listener binds them;
/// 3. `BackendAdded`, so that listeners and routes can refer to them;
/// 4. per kept backend: `BackendChanged`, then `ServerAdded`, `ServerChanged`, `ServerRemoved`
///    (adding before removing keeps a backend from ever being without servers);
/// 5. `ListenerChanged`, then `ListenerAdded`, which may use the new backends;
/// 6. `BackendRemoved`, once nothing refers to them.
///
/// Within each step, names are in byte order, so the result does not depend on file order.
/// Servers of an added or removed backend are not listed. Names are unique in a validated
/// config; if a hand-built one repeats a name, the last entry wins.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let Config {
        provider,
        global,
        timeouts,
        listeners: _,
        backends: _,
    } = old;
    let mut changes: Vec<Change> = restart_reasons(global, &new.global)
        .into_iter()
        .map(Change::RestartNeeded)
        .collect();
    // The provider runs from start to stop with the settings it started with.
    if *provider != new.provider {
        changes.push(Change::RestartNeeded(RestartReason::Provider));
    }
    let global_what = global_what(global, timeouts, &new.global, &new.timeouts);
    if !global_what.is_empty() {
        changes.push(Change::GlobalChanged { what: global_what });
    }

    let old_listeners = by_name(&old.listeners, |l| &l.name);
    let new_listeners = by_name(&new.listeners, |l| &l.name);
    let old_backends = by_name(&old.backends, |b| &b.name);
    let new_backends = by_name(&new.backends, |b| &b.name);

    let mut listeners_changed = Vec::new();
    let mut listeners_added = Vec::new();
    for (name, l_new) in &new_listeners {
        match old_listeners.get(name) {
            None => listeners_added.push(Change::ListenerAdded(name.to_string())),
            Some(l_old) if l_old.bind != l_new.bind => {
                listeners_added.push(Change::ListenerAdded(name.to_string()));
            }
            Some(l_old) => {
                let what = listener_what(old, l_old, new, l_new);
                if !what.is_empty() {
                    listeners_changed.push(Change::ListenerChanged {
                        name: name.to_string(),
                        what,
                    });
                }
            }
        }
    }
    for (name, l_old) in &old_listeners {
        let rebound = new_listeners
            .get(name)
            .is_some_and(|l| l.bind != l_old.bind);
        if rebound || !new_listeners.contains_key(name) {
            changes.push(Change::ListenerRemoved(name.to_string()));
        }
    }

    for name in new_backends.keys() {
        if !old_backends.contains_key(name) {
            changes.push(Change::BackendAdded(name.to_string()));
        }
    }
    for (name, b_new) in &new_backends {
        if let Some(b_old) = old_backends.get(name) {
            backend_changes(b_old, b_new, &mut changes);
        }
    }
    changes.append(&mut listeners_changed);
    changes.append(&mut listeners_added);
    for name in old_backends.keys() {
        if !new_backends.contains_key(name) {
            changes.push(Change::BackendRemoved(name.to_string()));
        }
    }
    ConfigDiff { changes }
}

fn by_name<'c, T>(items: &'c [T], name: impl Fn(&'c T) -> &'c str) -> BTreeMap<&'c str, &'c T> {
    items.iter().map(|item| (name(item), item)).collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Pushes `make(old, new)` when the two differ.
fn push_if<T: PartialEq, W>(out: &mut Vec<W>, old: T, new: T, make: impl FnOnce(T, T) -> W) {
    if old != new {
        out.push(make(old, new));
    }
}

fn section<T: PartialEq>(old: &Option<T>, new: &Option<T>) -> Option<SectionChange> {
    match (old, new) {
        (None, None) => None,
        (None, Some(_)) => Some(SectionChange::Added),
        (Some(_), None) => Some(SectionChange::Removed),
        (Some(a), Some(b)) => (a != b).then_some(SectionChange::Changed),
    }
}

fn shards_text(s: Shards) -> String {
    match s {
        Shards::Auto => "auto".to_string(),
        Shards::Count(n) => n.to_string(),
    }
}

fn restart_reasons(old: &Global, new: &Global) -> Vec<RestartReason> {
    let Global {
        shards,
        drain_timeout: _, // applicable at run time: see `global_what`
        admin,
        admin_socket,
        // The token is read again by every reload and used at once by the admin listener: no
        // shard sees it (`live::Live::apply` publishes it).
        admin_token_file: _,
        admin_token: _,
        recv_buffer_bytes,
        recv_buffer_count,
        pipe_pool_max,
        pipe_bytes,
        conns_per_shard_max,
        user,
        group,
    } = old;
    let mut out = Vec::new();
    push_if(&mut out, *shards, new.shards, |a, b| {
        RestartReason::Shards(shards_text(a), shards_text(b))
    });
    push_if(
        &mut out,
        *recv_buffer_bytes,
        new.recv_buffer_bytes,
        RestartReason::RecvBufferBytes,
    );
    push_if(
        &mut out,
        *recv_buffer_count,
        new.recv_buffer_count,
        RestartReason::RecvBufferCount,
    );
    push_if(
        &mut out,
        *pipe_pool_max,
        new.pipe_pool_max,
        RestartReason::PipePoolMax,
    );
    push_if(
        &mut out,
        *pipe_bytes,
        new.pipe_bytes,
        RestartReason::PipeBytes,
    );
    push_if(
        &mut out,
        *conns_per_shard_max,
        new.conns_per_shard_max,
        RestartReason::ConnsPerShardMax,
    );
    push_if(&mut out, user, &new.user, |a, b| {
        RestartReason::User(a.clone(), b.clone())
    });
    push_if(&mut out, group, &new.group, |a, b| {
        RestartReason::Group(a.clone(), b.clone())
    });
    push_if(&mut out, *admin, new.admin, RestartReason::Admin);
    push_if(&mut out, admin_socket, &new.admin_socket, |a, b| {
        RestartReason::AdminSocket(a.clone(), b.clone())
    });
    out
}

fn global_what(
    old: &Global,
    old_timeouts: &Timeouts,
    new: &Global,
    new_timeouts: &Timeouts,
) -> Vec<GlobalWhat> {
    let mut out = Vec::new();
    push_if(
        &mut out,
        ms(old.drain_timeout),
        ms(new.drain_timeout),
        GlobalWhat::DrainTimeoutMs,
    );
    let Timeouts {
        connect,
        client_idle,
        server_idle,
        http_request,
        http_keep_alive,
        server_response,
        tunnel,
    } = old_timeouts;
    let n = new_timeouts;
    for (name, a, b) in [
        (TimeoutName::Connect, connect, n.connect),
        (TimeoutName::ClientIdle, client_idle, n.client_idle),
        (TimeoutName::ServerIdle, server_idle, n.server_idle),
        (TimeoutName::HttpRequest, http_request, n.http_request),
        (
            TimeoutName::HttpKeepAlive,
            http_keep_alive,
            n.http_keep_alive,
        ),
        (
            TimeoutName::ServerResponse,
            server_response,
            n.server_response,
        ),
        (TimeoutName::Tunnel, tunnel, n.tunnel),
    ] {
        push_if(&mut out, ms(*a), ms(b), |a, b| {
            GlobalWhat::TimeoutMs(name, a, b)
        });
    }
    out
}

/// The name of backend `index` in `config`; `None` for an index a validated config never holds.
fn backend_name(config: &Config, index: Option<usize>) -> Option<&str> {
    index
        .and_then(|i| config.backends.get(i))
        .map(|b| b.name.as_str())
}

/// A route rule with its backend resolved to a name, so that rules compare across configs.
#[derive(PartialEq)]
struct NamedRule<'c> {
    host: &'c Option<HostMatch>,
    path: &'c Option<PathMatch>,
    method: &'c Option<String>,
    headers: &'c [HeaderMatch],
    backend: Option<&'c str>,
}

fn named_rules<'c>(config: &'c Config, router: Option<&'c Router>) -> Vec<NamedRule<'c>> {
    router
        .map(|r| r.rules.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|rule| NamedRule {
            host: &rule.host,
            path: &rule.path,
            method: &rule.method,
            headers: &rule.headers,
            backend: backend_name(config, Some(rule.backend)),
        })
        .collect()
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Tcp => "tcp",
        Mode::Http => "http",
        Mode::Detect => "detect",
    }
}

fn splice_name(s: SpliceMode) -> &'static str {
    match s {
        SpliceMode::Auto => "auto",
        SpliceMode::Always => "always",
        SpliceMode::Off => "off",
    }
}

fn owned(name: Option<&str>) -> Option<String> {
    name.map(str::to_string)
}

/// Whether the default backends the HTTP and SNI routers repeat from the listener's `backend`
/// differ, where both sides have that router (one appearing with a mode change is not a change).
fn router_defaults_differ(oc: &Config, old: &Listener, nc: &Config, new: &Listener) -> bool {
    let http = match (&old.http, &new.http) {
        (Some(a), Some(b)) => {
            backend_name(oc, a.router.default_backend) != backend_name(nc, b.router.default_backend)
        }
        _ => false,
    };
    let sni = match (&old.sni, &new.sni) {
        (Some(a), Some(b)) => {
            backend_name(oc, a.router.default_backend) != backend_name(nc, b.router.default_backend)
        }
        _ => false,
    };
    http || sni
}

/// The HTTP rules, then the SNI rules (a listener has at most one of the two).
fn listener_rules<'c>(
    config: &'c Config,
    http: &'c Option<HttpListener>,
    sni: &'c Option<SniRouting>,
) -> Vec<NamedRule<'c>> {
    let mut rules = named_rules(config, http.as_ref().map(|h| &h.router));
    rules.extend(named_rules(config, sni.as_ref().map(|s| &s.router)));
    rules
}

/// `(tcp_backend, tls_backend)` by name; both `None` on a listener that is not detect.
fn detect_names<'c>(
    config: &'c Config,
    detect: &Option<Detect>,
) -> (Option<&'c str>, Option<&'c str>) {
    detect.as_ref().map_or((None, None), |d| {
        let Detect {
            tcp_backend,
            tls_backend,
        } = d;
        (
            backend_name(config, *tcp_backend),
            backend_name(config, *tls_backend),
        )
    })
}

/// Differences of two listeners with the same name and `bind`.
fn listener_what(oc: &Config, old: &Listener, nc: &Config, new: &Listener) -> Vec<ListenerWhat> {
    let Listener {
        name: _,
        bind: _, // a changed bind is remove + add, decided by the caller
        mode,
        backend,
        splice,
        backlog,
        http,
        sni,
        accept_proxy,
        peek_timeout,
        tls,
        detect,
    } = old;
    let mut out = Vec::new();
    push_if(
        &mut out,
        mode_name(*mode),
        mode_name(new.mode),
        ListenerWhat::Mode,
    );

    let (old_default, new_default) = (backend_name(oc, *backend), backend_name(nc, new.backend));
    if old_default != new_default || router_defaults_differ(oc, old, nc, new) {
        out.push(ListenerWhat::DefaultBackend(
            owned(old_default),
            owned(new_default),
        ));
    }
    if listener_rules(oc, http, sni) != listener_rules(nc, &new.http, &new.sni) {
        out.push(ListenerWhat::Routes);
    }
    if let (Some(a), Some(b)) = (http, &new.http) {
        http_what(a, b, &mut out);
    }
    push_if(
        &mut out,
        splice_name(*splice),
        splice_name(new.splice),
        ListenerWhat::Splice,
    );
    push_if(&mut out, *backlog, new.backlog, ListenerWhat::Backlog);
    // `HttpListener::accept_proxy` repeats the listener's; either differing is one change.
    let http_accept_proxy = |h: &Option<HttpListener>| h.as_ref().map(|h| h.accept_proxy);
    if *accept_proxy != new.accept_proxy
        || (http.is_some()
            && new.http.is_some()
            && http_accept_proxy(http) != http_accept_proxy(&new.http))
    {
        out.push(ListenerWhat::AcceptProxy(*accept_proxy, new.accept_proxy));
    }
    // `SniRouting::peek_timeout` is reported with the listener's own, the one connections use.
    let sni_peek = |s: &Option<SniRouting>| s.as_ref().map(|s| ms(s.peek_timeout));
    if ms(*peek_timeout) != ms(new.peek_timeout) || sni_peek(sni) != sni_peek(&new.sni) {
        out.push(ListenerWhat::PeekTimeoutMs(
            ms(*peek_timeout),
            ms(new.peek_timeout),
        ));
    }
    if let Some(t) = tls_change(tls, &new.tls) {
        out.push(ListenerWhat::Tls(t));
    }
    let (old_tcp, old_tls) = detect_names(oc, detect);
    let (new_tcp, new_tls) = detect_names(nc, &new.detect);
    push_if(&mut out, old_tcp, new_tcp, |a, b| {
        ListenerWhat::DetectTcpBackend(owned(a), owned(b))
    });
    push_if(&mut out, old_tls, new_tls, |a, b| {
        ListenerWhat::DetectTlsBackend(owned(a), owned(b))
    });
    out
}

/// HTTP settings of a listener that is HTTP (or detect) on both sides; `router` and
/// `accept_proxy` are compared by the caller.
fn http_what(old: &HttpListener, new: &HttpListener, out: &mut Vec<ListenerWhat>) {
    let HttpListener {
        router: _,
        x_forwarded_for,
        x_real_ip,
        x_forwarded_proto,
        forwarded,
        head_bytes_max,
        body_bytes_max,
        access_log,
        access_log_format,
        accept_proxy: _,
        http2,
        http2_streams_max,
    } = old;
    if (*x_forwarded_for, *x_real_ip, *x_forwarded_proto, *forwarded)
        != (
            new.x_forwarded_for,
            new.x_real_ip,
            new.x_forwarded_proto,
            new.forwarded,
        )
    {
        out.push(ListenerWhat::ForwardingHeaders);
    }
    push_if(
        out,
        *head_bytes_max,
        new.head_bytes_max,
        ListenerWhat::HeadBytesMax,
    );
    push_if(
        out,
        *body_bytes_max,
        new.body_bytes_max,
        ListenerWhat::BodyBytesMax,
    );
    if access_log != &new.access_log || access_log_format != &new.access_log_format {
        out.push(ListenerWhat::AccessLog);
    }
    push_if(out, *http2, new.http2, ListenerWhat::Http2);
    push_if(
        out,
        *http2_streams_max,
        new.http2_streams_max,
        ListenerWhat::Http2StreamsMax,
    );
}

fn tls_change(old: &Option<TlsListener>, new: &Option<TlsListener>) -> Option<TlsChange> {
    let (old, new) = match (old, new) {
        (None, None) => return None,
        (None, Some(_)) => return Some(TlsChange::Added),
        (Some(_), None) => return Some(TlsChange::Removed),
        (Some(a), Some(b)) => (a, b),
    };
    let TlsListener {
        certificates,
        default_cert,
        min_version,
        alpn,
        handshake_timeout,
        session_cache,
        tickets,
        ticket_rotate,
        ticket_key_file,
    } = old;
    let certificates_changed =
        certificates != &new.certificates || default_cert != &new.default_cert;
    let other = min_version != &new.min_version
        || alpn != &new.alpn
        || handshake_timeout != &new.handshake_timeout
        || session_cache != &new.session_cache
        || tickets != &new.tickets
        || ticket_rotate != &new.ticket_rotate
        || ticket_key_file != &new.ticket_key_file;
    (certificates_changed || other).then_some(TlsChange::Changed {
        certificates: certificates_changed,
        other,
    })
}

fn balance_name(b: Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConn => "least_conn",
        Balance::PowerOfTwo => "p2c",
        Balance::Maglev => "maglev",
    }
}

fn hash_key_text(k: &HashKey) -> String {
    match k {
        HashKey::Source => "source".to_string(),
        HashKey::Path => "path".to_string(),
        HashKey::Header(name) => format!("header:{name}"),
        HashKey::Cookie(name) => format!("cookie:{name}"),
    }
}

/// `BackendChanged`, then `ServerAdded`, `ServerChanged`, `ServerRemoved` of one kept backend.
fn backend_changes(old: &Backend, new: &Backend, out: &mut Vec<Change>) {
    let Backend {
        name,
        servers,
        idle_conns_max,
        idle_timeout,
        balance,
        hash_key,
        retries,
        redispatch,
        health_check,
        sticky_cookie,
        queue_max,
        queue_timeout,
        passive,
        tls,
    } = old;
    let mut what = Vec::new();
    push_if(
        &mut what,
        balance_name(*balance),
        balance_name(new.balance),
        BackendWhat::Balance,
    );
    push_if(
        &mut what,
        hash_key_text(hash_key),
        hash_key_text(&new.hash_key),
        BackendWhat::HashKey,
    );
    push_if(&mut what, *retries, new.retries, BackendWhat::Retries);
    push_if(
        &mut what,
        *redispatch,
        new.redispatch,
        BackendWhat::Redispatch,
    );
    if let Some(s) = section(health_check, &new.health_check) {
        what.push(BackendWhat::HealthCheck(s));
    }
    push_if(&mut what, sticky_cookie, &new.sticky_cookie, |a, b| {
        BackendWhat::StickyCookie(a.clone(), b.clone())
    });
    push_if(&mut what, *queue_max, new.queue_max, BackendWhat::QueueMax);
    push_if(
        &mut what,
        ms(*queue_timeout),
        ms(new.queue_timeout),
        BackendWhat::QueueTimeoutMs,
    );
    if let Some(s) = section(passive, &new.passive) {
        what.push(BackendWhat::Passive(s));
    }
    if let Some(s) = section(tls, &new.tls) {
        what.push(BackendWhat::Tls(s));
    }
    push_if(
        &mut what,
        *idle_conns_max,
        new.idle_conns_max,
        BackendWhat::IdleConnsMax,
    );
    push_if(
        &mut what,
        ms(*idle_timeout),
        ms(new.idle_timeout),
        BackendWhat::IdleTimeoutMs,
    );
    if !what.is_empty() {
        out.push(Change::BackendChanged {
            name: name.clone(),
            what,
        });
    }

    let old_servers = by_name(servers, |s| &s.name);
    let new_servers = by_name(&new.servers, |s| &s.name);
    for server in new_servers.keys() {
        if !old_servers.contains_key(server) {
            out.push(Change::ServerAdded {
                backend: name.clone(),
                server: server.to_string(),
            });
        }
    }
    for (server, s_new) in &new_servers {
        if let Some(s_old) = old_servers.get(server) {
            let what = server_what(s_old, s_new);
            if !what.is_empty() {
                out.push(Change::ServerChanged {
                    backend: name.clone(),
                    server: server.to_string(),
                    what,
                });
            }
        }
    }
    for server in old_servers.keys() {
        if !new_servers.contains_key(server) {
            out.push(Change::ServerRemoved {
                backend: name.clone(),
                server: server.to_string(),
            });
        }
    }
}

fn proxy_name(v: Option<ProxyVersion>) -> Option<&'static str> {
    v.map(|v| match v {
        ProxyVersion::V1 => "v1",
        ProxyVersion::V2 => "v2",
    })
}

fn server_what(old: &Server, new: &Server) -> Vec<ServerWhat> {
    let Server {
        address,
        weight,
        name: _,
        backup,
        maxconn,
        send_proxy,
        admin,
    } = old;
    let mut out = Vec::new();
    push_if(&mut out, *admin, new.admin, |a, b| {
        ServerWhat::Flags(ServerFlag::State(a.as_str(), b.as_str()))
    });
    push_if(&mut out, *weight, new.weight, ServerWhat::Weight);
    push_if(&mut out, *address, new.address, ServerWhat::Address);
    push_if(&mut out, *backup, new.backup, |a, b| {
        ServerWhat::Flags(ServerFlag::Backup(a, b))
    });
    push_if(&mut out, *maxconn, new.maxconn, |a, b| {
        ServerWhat::Flags(ServerFlag::Maxconn(a, b))
    });
    push_if(
        &mut out,
        proxy_name(*send_proxy),
        proxy_name(new.send_proxy),
        |a, b| ServerWhat::Flags(ServerFlag::SendProxy(a, b)),
    );
    out
}

// ---- Display: one human line per change, values as the TOML file writes them ----

/// A duration the way the config file writes it: `500ms`, `5s`, `2m`, `1h`.
struct Human(u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if !ms.is_multiple_of(1000) || ms == 0 {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        if s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// An optional value; `none` when absent.
struct Opt<'a, T>(&'a Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// `a, b, c` of a list of `what`s.
fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item.fmt(f)?;
    }
    Ok(())
}

impl fmt::Display for ConfigDiff {
    /// One line per change, in apply order; nothing for an empty diff.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::RestartNeeded(reason) => write!(f, "restart needed: {reason}"),
            Change::GlobalChanged { what } => {
                f.write_str("global: ")?;
                write_list(f, what)
            }
            Change::ListenerAdded(name) => write!(f, "listener {name} added"),
            Change::ListenerRemoved(name) => write!(f, "listener {name} removed"),
            Change::ListenerChanged { name, what } => {
                write!(f, "listener {name}: ")?;
                write_list(f, what)
            }
            Change::BackendAdded(name) => write!(f, "backend {name} added"),
            Change::BackendRemoved(name) => write!(f, "backend {name} removed"),
            Change::BackendChanged { name, what } => {
                write!(f, "backend {name}: ")?;
                write_list(f, what)
            }
            Change::ServerAdded { backend, server } => {
                write!(f, "backend {backend}: server {server} added")
            }
            Change::ServerRemoved { backend, server } => {
                write!(f, "backend {backend}: server {server} removed")
            }
            Change::ServerChanged {
                backend,
                server,
                what,
            } => {
                write!(f, "backend {backend}: server {server} ")?;
                write_list(f, what)
            }
        }
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key();
        match self {
            RestartReason::Shards(a, b) => write!(f, "{key} {a} -> {b}"),
            RestartReason::RecvBufferBytes(a, b)
            | RestartReason::PipePoolMax(a, b)
            | RestartReason::PipeBytes(a, b)
            | RestartReason::ConnsPerShardMax(a, b) => write!(f, "{key} {a} -> {b}"),
            RestartReason::RecvBufferCount(a, b) => write!(f, "{key} {a} -> {b}"),
            RestartReason::User(a, b) | RestartReason::Group(a, b) => {
                write!(f, "{key} {} -> {}", Opt(a), Opt(b))
            }
            RestartReason::Admin(a, b) => write!(f, "{key} {} -> {}", Opt(a), Opt(b)),
            RestartReason::Provider => write!(f, "{key} settings changed"),
            RestartReason::AdminSocket(a, b) => write!(
                f,
                "{key} {} -> {}",
                Opt(&a.as_ref().map(|p| p.display().to_string())),
                Opt(&b.as_ref().map(|p| p.display().to_string()))
            ),
        }
    }
}

impl fmt::Display for GlobalWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalWhat::DrainTimeoutMs(a, b) => {
                write!(f, "drain_timeout {} -> {}", Human(*a), Human(*b))
            }
            GlobalWhat::TimeoutMs(name, a, b) => {
                write!(f, "timeouts.{} {} -> {}", name.key(), Human(*a), Human(*b))
            }
        }
    }
}

impl fmt::Display for ListenerWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerWhat::Mode(a, b) => write!(f, "mode {a} -> {b}"),
            ListenerWhat::DefaultBackend(a, b) => {
                write!(f, "backend {} -> {}", Opt(a), Opt(b))
            }
            ListenerWhat::Routes => f.write_str("routes"),
            ListenerWhat::ForwardingHeaders => f.write_str("forwarding headers"),
            ListenerWhat::HeadBytesMax(a, b) => write!(f, "head_size_max {a} -> {b}"),
            ListenerWhat::Http2(a, b) => write!(f, "http2 {a} -> {b}"),
            ListenerWhat::Http2StreamsMax(a, b) => write!(f, "http2_streams_max {a} -> {b}"),
            ListenerWhat::BodyBytesMax(a, b) => {
                write!(f, "body_size_max {} -> {}", Opt(a), Opt(b))
            }
            ListenerWhat::AccessLog => f.write_str("access log"),
            ListenerWhat::Splice(a, b) => write!(f, "splice {a} -> {b}"),
            ListenerWhat::Backlog(a, b) => write!(f, "backlog {a} -> {b}"),
            ListenerWhat::AcceptProxy(a, b) => write!(f, "accept_proxy {a} -> {b}"),
            ListenerWhat::PeekTimeoutMs(a, b) => {
                write!(f, "peek_timeout {} -> {}", Human(*a), Human(*b))
            }
            ListenerWhat::Tls(t) => match t {
                TlsChange::Added => f.write_str("tls added"),
                TlsChange::Removed => f.write_str("tls removed"),
                TlsChange::Changed {
                    certificates: true,
                    other: true,
                } => f.write_str("tls certificates and settings"),
                TlsChange::Changed {
                    certificates: true,
                    other: false,
                } => f.write_str("tls certificates"),
                TlsChange::Changed {
                    certificates: false,
                    other: _,
                } => f.write_str("tls settings"),
            },
            ListenerWhat::DetectTcpBackend(a, b) => {
                write!(f, "tcp_backend {} -> {}", Opt(a), Opt(b))
            }
            ListenerWhat::DetectTlsBackend(a, b) => {
                write!(f, "tls_backend {} -> {}", Opt(a), Opt(b))
            }
        }
    }
}

impl fmt::Display for SectionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SectionChange::Added => "added",
            SectionChange::Removed => "removed",
            SectionChange::Changed => "changed",
        })
    }
}

impl fmt::Display for BackendWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendWhat::Balance(a, b) => write!(f, "balance {a} -> {b}"),
            BackendWhat::HashKey(a, b) => write!(f, "hash_key {a} -> {b}"),
            BackendWhat::Retries(a, b) => write!(f, "retries {a} -> {b}"),
            BackendWhat::Redispatch(a, b) => write!(f, "redispatch {a} -> {b}"),
            BackendWhat::HealthCheck(s) => write!(f, "health_check {s}"),
            BackendWhat::StickyCookie(a, b) => {
                write!(f, "sticky_cookie {} -> {}", Opt(a), Opt(b))
            }
            BackendWhat::QueueMax(a, b) => write!(f, "queue_max {a} -> {b}"),
            BackendWhat::QueueTimeoutMs(a, b) => {
                write!(f, "queue_timeout {} -> {}", Human(*a), Human(*b))
            }
            BackendWhat::Passive(s) => write!(f, "passive {s}"),
            BackendWhat::Tls(s) => write!(f, "tls {s}"),
            BackendWhat::IdleConnsMax(a, b) => write!(f, "idle_conns_max {a} -> {b}"),
            BackendWhat::IdleTimeoutMs(a, b) => {
                write!(f, "idle_timeout {} -> {}", Human(*a), Human(*b))
            }
        }
    }
}

impl fmt::Display for ServerWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerWhat::Weight(a, b) => write!(f, "weight {a} -> {b}"),
            ServerWhat::Address(a, b) => write!(f, "address {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::State(a, b)) => write!(f, "state {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::Backup(a, b)) => write!(f, "backup {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::Maxconn(a, b)) => write!(f, "maxconn {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::SendProxy(a, b)) => {
                write!(f, "send_proxy {} -> {}", Opt(a), Opt(b))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_file, load_str};

    /// Loaded as if it sat in `examples/`, so `certs/...` paths resolve to the test certificates.
    const FILE_NAME: &str = "examples/diff-test.toml";

    const BASE: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
mode = "http"
backend = "www"

[[listener.route]]
path_prefix = "/api/"
backend = "api"

[[listener.route]]
host = "static.example.com"
backend = "www"

[[listener]]
name = "db"
bind = "127.0.0.1:15432"
backend = "pg"

[[backend]]
name = "www"
servers = [ { name = "w1", address = "127.0.0.1:9001" } ]

[[backend]]
name = "api"
servers = [
  { name = "s1", address = "127.0.0.1:9101" },
  { name = "s2", address = "127.0.0.1:9102" },
]

[[backend]]
name = "pg"
servers = [ { address = "127.0.0.1:5432" } ]
"#;

    const TLS_BASE: &str = r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
mode = "http"
backend = "www"

[listener.tls]
cert = "certs/example.com.pem"
key = "certs/example.com.key"

[[backend]]
name = "www"
servers = [ { address = "127.0.0.1:9001" } ]
"#;

    const DETECT_BASE: &str = r#"
[[listener]]
name = "edge"
bind = "127.0.0.1:8000"
mode = "detect"
backend = "www"
tcp_backend = "raw"
tls_backend = "www"

[[backend]]
name = "www"
servers = [ { address = "127.0.0.1:9001" } ]

[[backend]]
name = "raw"
servers = [ { address = "127.0.0.1:9002" } ]

[[backend]]
name = "raw2"
servers = [ { address = "127.0.0.1:9003" } ]
"#;

    fn load(text: &str) -> Config {
        match load_str(text, FILE_NAME) {
            Ok(c) => c,
            Err(e) => panic!("test config does not load:\n{e}\n---\n{text}"),
        }
    }

    /// `text` with `from` replaced by `to`; `from` must occur, so a stale edit cannot pass quietly.
    fn edit(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "`{from}` not in the test config");
        text.replacen(from, to, 1)
    }

    fn changes(old: &str, new: &str) -> Vec<Change> {
        diff(&load(old), &load(new)).changes
    }

    fn lines(old: &str, new: &str) -> Vec<String> {
        changes(old, new).iter().map(ToString::to_string).collect()
    }

    fn listener_changed(name: &str, what: Vec<ListenerWhat>) -> Change {
        Change::ListenerChanged {
            name: name.to_string(),
            what,
        }
    }

    fn backend_changed(name: &str, what: Vec<BackendWhat>) -> Change {
        Change::BackendChanged {
            name: name.to_string(),
            what,
        }
    }

    fn server_changed(backend: &str, server: &str, what: Vec<ServerWhat>) -> Change {
        Change::ServerChanged {
            backend: backend.to_string(),
            server: server.to_string(),
            what,
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn every_shipped_example_diffed_with_itself_is_empty() {
        let mut loaded = 0;
        for entry in std::fs::read_dir("examples").expect("examples/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "bad.toml") {
                assert!(load_file(&path).is_err(), "bad.toml is meant not to load");
                continue;
            }
            let a = load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let b = load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                diff(&a, &a).is_empty(),
                "{}: {}",
                path.display(),
                diff(&a, &a)
            );
            assert!(
                diff(&a, &b).is_empty(),
                "{}: {}",
                path.display(),
                diff(&a, &b)
            );
            loaded += 1;
        }
        assert!(loaded >= 7, "only {loaded} examples found");
    }

    #[test]
    fn same_text_is_no_change() {
        for text in [BASE, TLS_BASE, DETECT_BASE] {
            let d = diff(&load(text), &load(text));
            assert!(d.is_empty(), "{d}");
            assert!(d.needs_restart().is_empty());
            assert_eq!(d.to_string(), "");
        }
    }

    #[test]
    fn reordering_backends_is_not_a_change() {
        // Every index the listener holds (default backend, both route rules) moves.
        let start = BASE.find("[[backend]]").expect("backends");
        let (listeners, backends) = BASE.split_at(start);
        let mut blocks: Vec<&str> = backends.split_inclusive("\n\n").collect();
        blocks.reverse();
        let reordered = format!("{listeners}{}\n", blocks.concat());
        let (a, b) = (load(BASE), load(&reordered));
        assert_ne!(
            a.listeners[0].backend, b.listeners[0].backend,
            "indices moved"
        );
        assert!(diff(&a, &b).is_empty(), "{}", diff(&a, &b));
    }

    #[test]
    fn reordering_detect_backends_is_not_a_change() {
        let moved = edit(
            DETECT_BASE,
            "[[backend]]\nname = \"www\"\nservers = [ { address = \"127.0.0.1:9001\" } ]\n",
            "",
        ) + "\n[[backend]]\nname = \"www\"\nservers = [ { address = \"127.0.0.1:9001\" } ]\n";
        assert_eq!(changes(DETECT_BASE, &moved), vec![]);
    }

    #[test]
    fn reordering_servers_is_not_a_change() {
        let reordered = edit(
            BASE,
            "  { name = \"s1\", address = \"127.0.0.1:9101\" },\n  { name = \"s2\", address = \"127.0.0.1:9102\" },",
            "  { name = \"s2\", address = \"127.0.0.1:9102\" },\n  { name = \"s1\", address = \"127.0.0.1:9101\" },",
        );
        assert_eq!(changes(BASE, &reordered), vec![]);
    }

    #[test]
    fn reordering_listeners_is_not_a_change() {
        let start = BASE.find("[[listener]]\nname = \"db\"").expect("db");
        let end = BASE.find("[[backend]]").expect("backends");
        let db = &BASE[start..end];
        let reordered = format!("{db}{}{}", &BASE[..start], &BASE[end..]);
        assert_eq!(changes(BASE, &reordered), vec![]);
    }

    #[test]
    fn new_listener_is_listener_added() {
        let new = format!(
            "{BASE}\n[[listener]]\nname = \"web2\"\nbind = \"127.0.0.1:8081\"\nbackend = \"www\"\n"
        );
        assert_eq!(
            changes(BASE, &new),
            vec![Change::ListenerAdded("web2".to_string())]
        );
    }

    #[test]
    fn dropped_listener_is_listener_removed() {
        let new = edit(
            BASE,
            "[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:15432\"\nbackend = \"pg\"\n",
            "",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![Change::ListenerRemoved("db".to_string())]
        );
    }

    #[test]
    fn changed_bind_is_remove_then_add_of_that_listener() {
        // Other changes of the re-created listener are not listed: it is built anew.
        let new = edit(
            BASE,
            "127.0.0.1:15432\"",
            "127.0.0.1:15433\"\nsplice = \"off\"",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::ListenerRemoved("db".to_string()),
                Change::ListenerAdded("db".to_string()),
            ]
        );
    }

    #[test]
    fn swapped_binds_free_both_addresses_before_binding_either() {
        let swapped = edit(
            &edit(BASE, "127.0.0.1:8080", "127.0.0.1:TMP"),
            "127.0.0.1:15432",
            "127.0.0.1:8080",
        )
        .replace("127.0.0.1:TMP", "127.0.0.1:15432");
        assert_eq!(
            changes(BASE, &swapped),
            vec![
                Change::ListenerRemoved("db".to_string()),
                Change::ListenerRemoved("web".to_string()),
                Change::ListenerAdded("db".to_string()),
                Change::ListenerAdded("web".to_string()),
            ]
        );
    }

    #[test]
    fn renamed_listener_on_the_same_bind_is_removed_before_added() {
        let new = edit(BASE, "name = \"db\"", "name = \"postgres\"");
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::ListenerRemoved("db".to_string()),
                Change::ListenerAdded("postgres".to_string()),
            ]
        );
    }

    #[test]
    fn each_listener_setting_is_a_precise_listener_change() {
        let cases: Vec<(&str, &str, &str, ListenerWhat)> = vec![
            (
                "route rule",
                "path_prefix = \"/api/\"",
                "path_prefix = \"/v2/\"",
                ListenerWhat::Routes,
            ),
            (
                "route order (first match wins)",
                "path_prefix = \"/api/\"\nbackend = \"api\"\n\n[[listener.route]]\nhost = \"static.example.com\"\nbackend = \"www\"",
                "host = \"static.example.com\"\nbackend = \"www\"\n\n[[listener.route]]\npath_prefix = \"/api/\"\nbackend = \"api\"",
                ListenerWhat::Routes,
            ),
            (
                "route backend",
                "path_prefix = \"/api/\"\nbackend = \"api\"",
                "path_prefix = \"/api/\"\nbackend = \"www\"",
                ListenerWhat::Routes,
            ),
            (
                "default backend",
                "mode = \"http\"\nbackend = \"www\"",
                "mode = \"http\"\nbackend = \"api\"",
                ListenerWhat::DefaultBackend(s("www"), s("api")),
            ),
            (
                "forwarding header",
                "mode = \"http\"",
                "mode = \"http\"\nx_real_ip = true",
                ListenerWhat::ForwardingHeaders,
            ),
            (
                "head limit",
                "mode = \"http\"",
                "mode = \"http\"\nhead_size_max = \"8KiB\"",
                ListenerWhat::HeadBytesMax(64 * 1024, 8 * 1024),
            ),
            (
                "body limit",
                "mode = \"http\"",
                "mode = \"http\"\nbody_size_max = \"1MiB\"",
                ListenerWhat::BodyBytesMax(None, Some(1024 * 1024)),
            ),
            (
                "access log destination",
                "mode = \"http\"",
                "mode = \"http\"\naccess_log = \"stdout\"",
                ListenerWhat::AccessLog,
            ),
            (
                "access log format",
                "mode = \"http\"",
                "mode = \"http\"\naccess_log_format = \"json\"",
                ListenerWhat::AccessLog,
            ),
            (
                "splice",
                "backend = \"pg\"",
                "backend = \"pg\"\nsplice = \"always\"",
                ListenerWhat::Splice("auto", "always"),
            ),
            (
                "backlog",
                "backend = \"pg\"",
                "backend = \"pg\"\nbacklog = 128",
                ListenerWhat::Backlog(4096, 128),
            ),
            (
                "accept_proxy",
                "mode = \"http\"",
                "mode = \"http\"\naccept_proxy = true",
                ListenerWhat::AcceptProxy(false, true),
            ),
            (
                "peek_timeout",
                "backend = \"pg\"",
                "backend = \"pg\"\naccept_proxy = true\npeek_timeout = \"250ms\"",
                ListenerWhat::PeekTimeoutMs(5000, 250),
            ),
        ];
        for (label, from, to, expected) in cases {
            let new = edit(BASE, from, to);
            let got = changes(BASE, &new);
            let name = if from.contains("pg") { "db" } else { "web" };
            let mut want = vec![listener_changed(name, vec![expected])];
            if label == "peek_timeout" {
                want = vec![listener_changed(
                    "db",
                    vec![
                        ListenerWhat::AcceptProxy(false, true),
                        ListenerWhat::PeekTimeoutMs(5000, 250),
                    ],
                )];
            }
            assert_eq!(got, want, "{label}");
        }
    }

    #[test]
    fn http2_streams_max_is_a_precise_listener_change() {
        let old = edit(BASE, "mode = \"http\"", "mode = \"http\"\nhttp2 = true");
        let new = edit(&old, "http2 = true", "http2 = true\nhttp2_streams_max = 8");
        assert_eq!(
            changes(&old, &new),
            vec![listener_changed(
                "web",
                vec![ListenerWhat::Http2StreamsMax(100, 8)]
            )]
        );
        assert_eq!(
            ListenerWhat::Http2StreamsMax(100, 8).to_string(),
            "http2_streams_max 100 -> 8"
        );
    }

    #[test]
    fn several_listener_settings_are_one_change() {
        let new = edit(
            BASE,
            "mode = \"http\"\nbackend = \"www\"",
            "mode = \"http\"\nbackend = \"api\"\nx_forwarded_for = false\nsplice = \"off\"",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![listener_changed(
                "web",
                vec![
                    ListenerWhat::DefaultBackend(s("www"), s("api")),
                    ListenerWhat::ForwardingHeaders,
                    ListenerWhat::Splice("auto", "off"),
                ]
            )]
        );
    }

    #[test]
    fn mode_change_keeps_the_socket_and_says_so_once() {
        let new = edit(
            BASE,
            "backend = \"pg\"",
            "backend = \"pg\"\nmode = \"http\"",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![listener_changed(
                "db",
                vec![ListenerWhat::Mode("tcp", "http")]
            )]
        );
    }

    #[test]
    fn tls_termination_turned_on_and_off() {
        let plain = edit(
            TLS_BASE,
            "[listener.tls]\ncert = \"certs/example.com.pem\"\nkey = \"certs/example.com.key\"\n",
            "",
        );
        assert_eq!(
            changes(&plain, TLS_BASE),
            vec![listener_changed(
                "https",
                vec![ListenerWhat::Tls(TlsChange::Added)]
            )]
        );
        assert_eq!(
            changes(TLS_BASE, &plain),
            vec![listener_changed(
                "https",
                vec![ListenerWhat::Tls(TlsChange::Removed)]
            )]
        );
    }

    #[test]
    fn tls_certificate_and_settings_changes_are_told_apart() {
        let cases = [
            (
                edit(
                    TLS_BASE,
                    "certs/example.com.",
                    "certs/wildcard.example.com.",
                )
                .replacen("certs/example.com.", "certs/wildcard.example.com.", 1),
                true,
                false,
            ),
            (
                edit(
                    TLS_BASE,
                    "[listener.tls]",
                    "[listener.tls]\nmin_version = \"1.3\"",
                ),
                false,
                true,
            ),
            (
                edit(
                    TLS_BASE,
                    "[listener.tls]",
                    "[listener.tls]\nsession_cache = 0",
                ),
                false,
                true,
            ),
            (
                edit(
                    TLS_BASE,
                    "[listener.tls]",
                    "[listener.tls]\ntickets = false\nhandshake_timeout = \"3s\"",
                )
                .replacen("certs/example.com.", "certs/wildcard.example.com.", 2),
                true,
                true,
            ),
        ];
        for (new, certificates, other) in cases {
            assert_eq!(
                changes(TLS_BASE, &new),
                vec![listener_changed(
                    "https",
                    vec![ListenerWhat::Tls(TlsChange::Changed {
                        certificates,
                        other
                    })]
                )],
                "{new}"
            );
        }
    }

    #[test]
    fn detect_backends_are_compared_by_name() {
        let new = edit(
            DETECT_BASE,
            "tcp_backend = \"raw\"",
            "tcp_backend = \"raw2\"",
        );
        assert_eq!(
            changes(DETECT_BASE, &new),
            vec![listener_changed(
                "edge",
                vec![ListenerWhat::DetectTcpBackend(s("raw"), s("raw2"))]
            )]
        );
        let new = edit(DETECT_BASE, "tls_backend = \"www\"\n", "");
        assert_eq!(
            changes(DETECT_BASE, &new),
            vec![listener_changed(
                "edge",
                vec![ListenerWhat::DetectTlsBackend(s("www"), None)]
            )]
        );
    }

    #[test]
    fn new_backend_is_backend_added() {
        let new = format!(
            "{BASE}\n[[backend]]\nname = \"spare\"\nservers = [ {{ address = \"127.0.0.1:7000\" }} ]\n"
        );
        assert_eq!(
            changes(BASE, &new),
            vec![Change::BackendAdded("spare".to_string())]
        );
    }

    #[test]
    fn dropped_backend_is_backend_removed() {
        let new = format!(
            "{BASE}\n[[backend]]\nname = \"spare\"\nservers = [ {{ address = \"127.0.0.1:7000\" }} ]\n"
        );
        assert_eq!(
            changes(&new, BASE),
            vec![Change::BackendRemoved("spare".to_string())]
        );
    }

    #[test]
    fn each_backend_setting_is_a_precise_backend_change() {
        let anchor = "name = \"api\"";
        let cases: Vec<(&str, BackendWhat)> = vec![
            (
                "balance = \"least_conn\"",
                BackendWhat::Balance("round_robin", "least_conn"),
            ),
            (
                "balance = \"maglev\"\nhash_key = \"header:x-user\"",
                BackendWhat::HashKey("source".to_string(), "header:x-user".to_string()),
            ),
            ("retries = 5", BackendWhat::Retries(2, 5)),
            ("redispatch = false", BackendWhat::Redispatch(true, false)),
            (
                "health_check = { type = \"tcp\" }",
                BackendWhat::HealthCheck(SectionChange::Added),
            ),
            (
                "sticky_cookie = \"SERVERID\"",
                BackendWhat::StickyCookie(None, s("SERVERID")),
            ),
            ("queue_max = 10", BackendWhat::QueueMax(1024, 10)),
            (
                "queue_timeout = \"1s\"",
                BackendWhat::QueueTimeoutMs(5000, 1000),
            ),
            (
                "passive = { failures = 3, backoff = \"10s\" }",
                BackendWhat::Passive(SectionChange::Added),
            ),
            ("idle_conns_max = 0", BackendWhat::IdleConnsMax(256, 0)),
            (
                "idle_timeout = \"2s\"",
                BackendWhat::IdleTimeoutMs(15_000, 2000),
            ),
        ];
        for (setting, expected) in cases {
            let new = edit(BASE, anchor, &format!("{anchor}\n{setting}"));
            let mut want = vec![expected];
            if setting.starts_with("balance = \"maglev\"") {
                want.insert(0, BackendWhat::Balance("round_robin", "maglev"));
            }
            assert_eq!(
                changes(BASE, &new),
                vec![backend_changed("api", want)],
                "{setting}"
            );
        }
    }

    #[test]
    fn optional_backend_tables_report_added_changed_removed() {
        let with = |check: &str, tls: &str| {
            edit(
                BASE,
                "name = \"api\"",
                &format!("name = \"api\"\nhealth_check = {{ type = \"tcp\", {check} }}\n{tls}"),
            )
        };
        let tls = "tls = { ca = \"certs/example.com.pem\" }";
        let a = with("rise = 2", tls);
        let b = with(
            "rise = 5",
            "tls = { ca = \"certs/example.com.pem\", verify = false }",
        );
        assert_eq!(
            changes(&a, &b),
            vec![backend_changed(
                "api",
                vec![
                    BackendWhat::HealthCheck(SectionChange::Changed),
                    BackendWhat::Tls(SectionChange::Changed),
                ]
            )]
        );
        assert_eq!(
            changes(&a, BASE),
            vec![backend_changed(
                "api",
                vec![
                    BackendWhat::HealthCheck(SectionChange::Removed),
                    BackendWhat::Tls(SectionChange::Removed),
                ]
            )]
        );
    }

    #[test]
    fn new_server_is_server_added() {
        let new = edit(
            BASE,
            "  { name = \"s2\", address = \"127.0.0.1:9102\" },",
            "  { name = \"s2\", address = \"127.0.0.1:9102\" },\n  { name = \"s3\", address = \"127.0.0.1:9103\" },",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![Change::ServerAdded {
                backend: "api".to_string(),
                server: "s3".to_string()
            }]
        );
    }

    #[test]
    fn dropped_server_is_server_removed() {
        let new = edit(
            BASE,
            "  { name = \"s1\", address = \"127.0.0.1:9101\" },\n",
            "",
        );
        assert_eq!(
            changes(BASE, &new),
            vec![Change::ServerRemoved {
                backend: "api".to_string(),
                server: "s1".to_string()
            }]
        );
    }

    #[test]
    fn each_server_setting_is_a_precise_server_change() {
        let server = "{ name = \"s2\", address = \"127.0.0.1:9102\" }";
        let cases: Vec<(&str, Vec<ServerWhat>)> = vec![
            (
                "{ name = \"s2\", address = \"127.0.0.1:9102\", weight = 3 }",
                vec![ServerWhat::Weight(1, 3)],
            ),
            (
                "{ name = \"s2\", address = \"127.0.0.2:9102\" }",
                vec![ServerWhat::Address(
                    "127.0.0.1:9102".parse().expect("address"),
                    "127.0.0.2:9102".parse().expect("address"),
                )],
            ),
            (
                "{ name = \"s2\", address = \"127.0.0.1:9102\", backup = true }",
                vec![ServerWhat::Flags(ServerFlag::Backup(false, true))],
            ),
            (
                "{ name = \"s2\", address = \"127.0.0.1:9102\", maxconn = 100 }",
                vec![ServerWhat::Flags(ServerFlag::Maxconn(0, 100))],
            ),
            (
                "{ name = \"s2\", address = \"127.0.0.1:9102\", send_proxy = \"v2\" }",
                vec![ServerWhat::Flags(ServerFlag::SendProxy(None, Some("v2")))],
            ),
            (
                "{ name = \"s2\", address = \"127.0.0.1:9109\", weight = 0, maxconn = 5 }",
                vec![
                    ServerWhat::Weight(1, 0),
                    ServerWhat::Address(
                        "127.0.0.1:9102".parse().expect("address"),
                        "127.0.0.1:9109".parse().expect("address"),
                    ),
                    ServerWhat::Flags(ServerFlag::Maxconn(0, 5)),
                ],
            ),
        ];
        for (to, what) in cases {
            let new = edit(BASE, server, to);
            assert_eq!(
                changes(BASE, &new),
                vec![server_changed("api", "s2", what)],
                "{to}"
            );
        }
    }

    #[test]
    fn renamed_server_is_remove_plus_add() {
        let new = edit(BASE, "name = \"s2\"", "name = \"s2b\"");
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::ServerAdded {
                    backend: "api".to_string(),
                    server: "s2b".to_string()
                },
                Change::ServerRemoved {
                    backend: "api".to_string(),
                    server: "s2".to_string()
                },
            ]
        );
    }

    #[test]
    fn unnamed_server_is_named_by_its_address_so_a_new_address_is_remove_plus_add() {
        let new = edit(BASE, "127.0.0.1:5432", "127.0.0.1:5433");
        assert_eq!(
            lines(BASE, &new),
            vec![
                "backend pg: server 127.0.0.1:5433 added",
                "backend pg: server 127.0.0.1:5432 removed",
            ]
        );
    }

    #[test]
    fn each_boot_time_global_needs_a_restart() {
        let cases: Vec<(&str, RestartReason)> = vec![
            (
                "shards = 4",
                RestartReason::Shards("auto".to_string(), "4".to_string()),
            ),
            (
                "recv_buffer_size = \"32KiB\"",
                RestartReason::RecvBufferBytes(16 * 1024, 32 * 1024),
            ),
            (
                "recv_buffer_count = 1024",
                RestartReason::RecvBufferCount(512, 1024),
            ),
            ("pipe_pool_max = 8", RestartReason::PipePoolMax(256, 8)),
            (
                "pipe_size = \"1MiB\"",
                RestartReason::PipeBytes(64 * 1024, 1024 * 1024),
            ),
            (
                "conns_per_shard_max = 100",
                RestartReason::ConnsPerShardMax(65_536, 100),
            ),
            ("user = \"nobody\"", RestartReason::User(None, s("nobody"))),
            (
                "user = \"nobody\"\ngroup = \"nogroup\"",
                RestartReason::Group(None, s("nogroup")),
            ),
            (
                "admin = \"127.0.0.1:9900\"",
                RestartReason::Admin(None, "127.0.0.1:9900".parse().ok()),
            ),
        ];
        for (setting, reason) in cases {
            let new = format!("[global]\n{setting}\n{BASE}");
            let d = diff(&load(BASE), &load(&new));
            let key = reason.key();
            let mut want = vec![Change::RestartNeeded(reason)];
            if key == "group" {
                want.insert(
                    0,
                    Change::RestartNeeded(RestartReason::User(None, s("nobody"))),
                );
            }
            assert_eq!(d.changes, want, "{setting}");
            assert!(d.needs_restart().contains(&key), "{setting}");
        }
    }

    #[test]
    fn timeouts_and_drain_timeout_apply_at_run_time() {
        let new = format!(
            "[global]\ndrain_timeout = \"3s\"\n\n[timeouts]\nconnect = \"500ms\"\nclient_idle = \"1m\"\nserver_idle = \"2m\"\nhttp_request = \"5s\"\nhttp_keep_alive = \"30s\"\nserver_response = \"90s\"\ntunnel = \"24h\"\n{BASE}"
        );
        let d = diff(&load(BASE), &load(&new));
        assert_eq!(
            d.changes,
            vec![Change::GlobalChanged {
                what: vec![
                    GlobalWhat::DrainTimeoutMs(10_000, 3000),
                    GlobalWhat::TimeoutMs(TimeoutName::Connect, 5000, 500),
                    GlobalWhat::TimeoutMs(TimeoutName::ServerIdle, 60_000, 120_000),
                    GlobalWhat::TimeoutMs(TimeoutName::HttpRequest, 10_000, 5000),
                    GlobalWhat::TimeoutMs(TimeoutName::HttpKeepAlive, 60_000, 30_000),
                    GlobalWhat::TimeoutMs(TimeoutName::ServerResponse, 60_000, 90_000),
                    GlobalWhat::TimeoutMs(TimeoutName::Tunnel, 3_600_000, 86_400_000),
                ]
            }]
        );
        assert!(d.needs_restart().is_empty());
        assert_eq!(
            d.changes[0].to_string(),
            "global: drain_timeout 10s -> 3s, timeouts.connect 5s -> 500ms, \
             timeouts.server_idle 1m -> 2m, timeouts.http_request 10s -> 5s, \
             timeouts.http_keep_alive 1m -> 30s, timeouts.server_response 1m -> 90s, \
             timeouts.tunnel 1h -> 24h"
        );
    }

    /// Applying front to back, no step may refer to a backend that does not exist yet or has
    /// already gone, and no listener may bind while an old one still holds its address.
    #[test]
    fn changes_come_in_a_safe_order() {
        // api -> api2 (the route follows), db and pg go, ingest comes with a new backend, www
        // swaps w1 for w2 and loses a setting, and the shard count changes.
        let new = edit(BASE, "backend = \"api\"", "backend = \"api2\"");
        let new = edit(&new, "name = \"api\"", "name = \"api2\"");
        let new = edit(
            &new,
            "[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:15432\"\nbackend = \"pg\"\n",
            "[[listener]]\nname = \"ingest\"\nbind = \"127.0.0.1:15432\"\nbackend = \"queue\"\n",
        );
        let new = edit(&new, "name = \"pg\"", "name = \"queue\"");
        let new = edit(
            &new,
            "name = \"www\"\nservers = [ { name = \"w1\", address = \"127.0.0.1:9001\" } ]",
            "name = \"www\"\nretries = 0\nservers = [ { name = \"w2\", address = \"127.0.0.1:9002\" } ]",
        );
        let new = format!("[global]\nshards = 1\n{new}");
        assert_eq!(
            lines(BASE, &new),
            vec![
                "restart needed: shards auto -> 1",
                "listener db removed",
                "backend api2 added",
                "backend queue added",
                "backend www: retries 2 -> 0",
                "backend www: server w2 added",
                "backend www: server w1 removed",
                "listener web: routes",
                "listener ingest added",
                "backend api removed",
                "backend pg removed",
            ]
        );

        // The same property, checked by replaying the changes over the set of live names.
        let (old_c, new_c) = (load(BASE), load(&new));
        let mut backends: Vec<String> = old_c.backends.iter().map(|b| b.name.clone()).collect();
        let mut binds: Vec<SocketAddr> = old_c.listeners.iter().map(|l| l.bind).collect();
        let uses = |c: &Config, listener: &str| -> Vec<String> {
            let Some(l) = c.listeners.iter().find(|l| l.name == listener) else {
                return Vec::new();
            };
            let mut out: Vec<Option<&str>> = vec![backend_name(c, l.backend)];
            for r in listener_rules(c, &l.http, &l.sni) {
                out.push(r.backend);
            }
            out.into_iter().flatten().map(str::to_string).collect()
        };
        for change in diff(&old_c, &new_c).changes {
            match &change {
                Change::BackendAdded(n) => backends.push(n.clone()),
                Change::BackendRemoved(n) => {
                    backends.retain(|b| b != n);
                    for l in &new_c.listeners {
                        assert!(!uses(&new_c, &l.name).contains(n), "{change}");
                    }
                }
                Change::ListenerAdded(n) | Change::ListenerChanged { name: n, .. } => {
                    for b in uses(&new_c, n) {
                        assert!(backends.contains(&b), "{change}: {b} missing");
                    }
                    if let (Change::ListenerAdded(_), Some(l)) =
                        (&change, new_c.listeners.iter().find(|l| &l.name == n))
                    {
                        assert!(!binds.contains(&l.bind), "{change}: address still bound");
                        binds.push(l.bind);
                    }
                }
                Change::ListenerRemoved(n) => {
                    if let Some(l) = old_c.listeners.iter().find(|l| &l.name == n) {
                        binds.retain(|b| *b != l.bind);
                    }
                }
                Change::RestartNeeded(_)
                | Change::GlobalChanged { .. }
                | Change::BackendChanged { .. }
                | Change::ServerAdded { .. }
                | Change::ServerRemoved { .. }
                | Change::ServerChanged { .. } => {}
            }
        }
    }

    #[test]
    fn each_change_reads_as_one_line() {
        let new = edit(
            BASE,
            "{ name = \"s2\", address = \"127.0.0.1:9102\" }",
            "{ name = \"s2\", address = \"127.0.0.1:9102\", weight = 3, send_proxy = \"v1\" }",
        );
        let new = edit(&new, "path_prefix = \"/api/\"", "path_prefix = \"/v1/\"");
        let new = edit(
            &new,
            "mode = \"http\"",
            "mode = \"http\"\nbody_size_max = \"10MiB\"",
        );
        let new = format!("[global]\nadmin = \"127.0.0.1:9900\"\n{new}");
        let d = diff(&load(BASE), &load(&new));
        assert_eq!(
            d.to_string(),
            "restart needed: admin none -> 127.0.0.1:9900\n\
             backend api: server s2 weight 1 -> 3, send_proxy none -> v1\n\
             listener web: routes, body_size_max none -> 10485760\n"
        );
        assert_eq!(d.needs_restart(), vec!["admin"]);
        for c in &d.changes {
            assert!(!c.to_string().contains('\n'), "{c}");
        }
    }

    #[test]
    fn serializes_for_the_admin_api() {
        let new = edit(
            BASE,
            "name = \"s2\", address = \"127.0.0.1:9102\"",
            "name = \"s2\", address = \"127.0.0.1:9102\", weight = 3",
        );
        let new = edit(
            &new,
            "backend = \"pg\"",
            "backend = \"pg\"\nsplice = \"off\"",
        );
        let d = diff(&load(BASE), &load(&new));
        let json = serde_json::to_value(&d).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "changes": [
                    { "server_changed": { "backend": "api", "server": "s2", "what": [ { "weight": [1, 3] } ] } },
                    { "listener_changed": { "name": "db", "what": [ { "splice": ["auto", "off"] } ] } },
                ]
            })
        );
        let tls = diff(
            &load(TLS_BASE),
            &load(&edit(
                TLS_BASE,
                "[listener.tls]",
                "[listener.tls]\ntickets = false",
            )),
        );
        assert_eq!(
            serde_json::to_value(&tls).expect("serializes"),
            serde_json::json!({
                "changes": [ { "listener_changed": { "name": "https", "what": [
                    { "tls": { "changed": { "certificates": false, "other": true } } }
                ] } } ]
            })
        );
    }
}
