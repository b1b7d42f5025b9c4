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
        global,
        timeouts,
        listeners: _,
        backends: _,
    } = old;
    let mut changes: Vec<Change> = restart_reasons(global, &new.global)
        .into_iter()
        .map(Change::RestartNeeded)
        .collect();
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
    } = old;
    let mut out = Vec::new();
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
            ServerWhat::Flags(ServerFlag::Backup(a, b)) => write!(f, "backup {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::Maxconn(a, b)) => write!(f, "maxconn {a} -> {b}"),
            ServerWhat::Flags(ServerFlag::SendProxy(a, b)) => {
                write!(f, "send_proxy {} -> {}", Opt(a), Opt(b))
            }
        }
    }
}

