//! Owns: the runtime API under `/api/v1` of the admin listener (JSON): backends and servers with
//! their state, a server's `drain` / `maint` / `ready` state and weight, adding and removing
//! servers, and an HTTP listener's routes. Every write builds a new configuration from the
//! running one and goes through [`crate::live::Changes::edit`], the path a reload takes: same
//! validation (`config::fragment`), same diff, same per-shard apply. A later reload of the file
//! replaces what the API changed (the file stays the source of truth).
//! Must not: change shard state except through `Changes`, or decide who may write (`admin` does).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::admin::json;
use crate::bus::Shards;
use crate::config::fragment::{self, FragmentError};
use crate::config::{AdminState, Config};
use crate::live::{ChangeError, Changes};

type Reply = Response<Full<Bytes>>;

/// `PATCH /api/v1/backends/{backend}/servers/{server}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerPatch {
    state: Option<AdminState>,
    weight: Option<u32>,
}

/// Serves one request under `/api/v1/` (`rest` is the path after it, without a trailing `/`).
pub async fn handle(
    method: &Method,
    rest: &str,
    body: &[u8],
    changes: &Changes,
    shards: &Shards,
) -> Reply {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["backends"]) => {
            let report = shards.report().await;
            let c = changes.current();
            let list: Vec<serde_json::Value> = c
                .backends
                .iter()
                .map(|b| backend_json(b, &report.backends))
                .collect();
            json(StatusCode::OK, &list)
        }
        (&Method::GET, ["backends", b]) => {
            let report = shards.report().await;
            let c = changes.current();
            match c.backends.iter().find(|x| x.name == *b) {
                Some(x) => json(StatusCode::OK, &backend_json(x, &report.backends)),
                None => not_found(format!("no backend `{b}`")),
            }
        }
        (&Method::PATCH, ["backends", b, "servers", s]) => {
            let patch: ServerPatch = match parse(body) {
                Ok(p) => p,
                Err(e) => return bad(e),
            };
            let (b, s) = (b.to_string(), s.to_string());
            write(changes, move |c| patch_server(c, &b, &s, &patch)).await
        }
        (&Method::POST, ["backends", b, "servers"]) => {
            let value: serde_json::Value = match parse(body) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            let b = b.to_string();
            write(changes, move |c| add_server(c, &b, value)).await
        }
        (&Method::DELETE, ["backends", b, "servers", s]) => {
            let (b, s) = (b.to_string(), s.to_string());
            write(changes, move |c| remove_server(c, &b, &s)).await
        }
        (&Method::GET, ["provider"]) => match changes.provider.get() {
            Some(p) => json(StatusCode::OK, &p.stats()),
            None => not_found("no [provider.redis] configured".into()),
        },
        (&Method::GET, ["listeners"]) => {
            let c = changes.current();
            let list: Vec<serde_json::Value> =
                c.listeners.iter().map(|l| listener_json(&c, l)).collect();
            json(StatusCode::OK, &list)
        }
        (&Method::GET, ["listeners", l, "routes"]) => {
            let c = changes.current();
            match c.listeners.iter().find(|x| x.name == *l) {
                Some(x) => json(StatusCode::OK, &listener_json(&c, x)["routes"]),
                None => not_found(format!("no listener `{l}`")),
            }
        }
        (&Method::POST, ["listeners", l, "routes"]) => {
            let value: serde_json::Value = match parse(body) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            let l = l.to_string();
            write(changes, move |c| {
                edit_routes(c, &l, RouteEdit::Append(value))
            })
            .await
        }
        (&Method::PUT, ["listeners", l, "routes"]) => {
            let value: Vec<serde_json::Value> = match parse(body) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            let l = l.to_string();
            write(changes, move |c| {
                edit_routes(c, &l, RouteEdit::Replace(value))
            })
            .await
        }
        (&Method::DELETE, ["listeners", l, "routes", n]) => {
            let Ok(n) = n.parse::<usize>() else {
                return bad(format!(
                    "route number `{n}` is not a number (routes count from 1)"
                ));
            };
            let l = l.to_string();
            write(changes, move |c| edit_routes(c, &l, RouteEdit::Remove(n))).await
        }
        _ => not_found(format!(
            "no {method} /api/v1/{rest}; see docs/admin.md for the runtime API"
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("body is not valid: {e}"))
}

fn bad(message: String) -> Reply {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": message, "applied": false }),
    )
}

fn not_found(message: String) -> Reply {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": message, "applied": false }),
    )
}

/// Applies `edit` the way a reload is applied and answers with what changed.
async fn write(
    changes: &Changes,
    edit: impl FnOnce(&Config) -> Result<Config, ChangeError> + Send + 'static,
) -> Reply {
    match changes.edit(edit).await {
        Ok(report) => json(StatusCode::OK, &report),
        Err(ChangeError::NotFound(m)) => not_found(m),
        Err(e) if e.nothing_changed() => bad(e.to_string()),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": e.to_string(), "applied": "partly" }),
        ),
    }
}

fn refused(e: FragmentError) -> ChangeError {
    ChangeError::Refused(e.to_string())
}

fn backend_mut<'c>(
    c: &'c mut Config,
    b: &str,
) -> Result<&'c mut crate::config::Backend, ChangeError> {
    c.backends
        .iter_mut()
        .find(|x| x.name == b)
        .ok_or_else(|| ChangeError::NotFound(format!("no backend `{b}`")))
}

/// The file refuses a backend whose servers all have weight 0; so does the API.
fn check_weights(b: &crate::config::Backend) -> Result<(), ChangeError> {
    if !b.servers.is_empty() && b.servers.iter().all(|s| s.weight == 0) {
        return Err(ChangeError::Refused(format!(
            "backend `{}`: every server would have weight 0, nothing could be picked (drain a server with its state instead)",
            b.name
        )));
    }
    Ok(())
}

fn patch_server(c: &Config, b: &str, s: &str, patch: &ServerPatch) -> Result<Config, ChangeError> {
    let mut new = c.clone();
    let backend = backend_mut(&mut new, b)?;
    let server = backend
        .servers
        .iter_mut()
        .find(|x| x.name == s)
        .ok_or_else(|| ChangeError::NotFound(format!("no server `{s}` in backend `{b}`")))?;
    if let Some(w) = patch.weight {
        let max = crate::config::validate::WEIGHT_MAX;
        if i64::from(w) > max {
            return Err(ChangeError::Refused(format!(
                "weight: {w} is out of range 0..={max}"
            )));
        }
        server.weight = w;
    }
    if let Some(state) = patch.state {
        server.admin = state;
    }
    check_weights(backend)?;
    Ok(new)
}

fn add_server(c: &Config, b: &str, mut value: serde_json::Value) -> Result<Config, ChangeError> {
    // `state` is the API's own key; the rest are the file's.
    let state = match value.as_object_mut().and_then(|o| o.remove("state")) {
        None => AdminState::Ready,
        Some(v) => serde_json::from_value(v).map_err(|e| {
            ChangeError::Refused(format!("state: {e}; use \"ready\", \"drain\" or \"maint\""))
        })?,
    };
    let mut server = fragment::server(&value).map_err(refused)?;
    server.admin = state;
    let mut new = c.clone();
    let backend = backend_mut(&mut new, b)?;
    if let Some(x) = backend.servers.iter().find(|x| x.name == server.name) {
        return Err(ChangeError::Refused(format!(
            "backend `{b}` already has a server named `{}` ({})",
            x.name, x.address
        )));
    }
    if backend.servers.iter().any(|x| x.address == server.address) {
        return Err(ChangeError::Refused(format!(
            "duplicate server address {} in backend `{b}`",
            server.address
        )));
    }
    backend.servers.push(server);
    check_weights(backend)?;
    Ok(new)
}

fn remove_server(c: &Config, b: &str, s: &str) -> Result<Config, ChangeError> {
    let mut new = c.clone();
    let backend = backend_mut(&mut new, b)?;
    let Some(i) = backend.servers.iter().position(|x| x.name == s) else {
        return Err(ChangeError::NotFound(format!(
            "no server `{s}` in backend `{b}`"
        )));
    };
    if backend.servers.len() == 1 {
        return Err(ChangeError::Refused(format!(
            "backend `{b}` would have no servers; add another first, or set this one to maint"
        )));
    }
    backend.servers.remove(i);
    check_weights(backend)?;
    Ok(new)
}

enum RouteEdit {
    Append(serde_json::Value),
    Replace(Vec<serde_json::Value>),
    /// 1-based, as the file's messages count routes.
    Remove(usize),
}

fn edit_routes(c: &Config, l: &str, edit: RouteEdit) -> Result<Config, ChangeError> {
    let mut new = c.clone();
    // Backends made from Redis routes come last and cannot be named in a rule.
    let names: Vec<String> = new
        .backends
        .iter()
        .map(|b| b.name.clone())
        .take_while(|n| !n.starts_with(crate::provider::merge::BACKEND_PREFIX))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let listener = new
        .listeners
        .iter_mut()
        .find(|x| x.name == l)
        .ok_or_else(|| ChangeError::NotFound(format!("no listener `{l}`")))?;
    let Some(http) = listener.http.as_mut() else {
        return Err(ChangeError::Refused(format!(
            "listener `{l}` does not route HTTP requests; its routes change by a reload of the file"
        )));
    };
    let rules = &mut http.router.rules;
    match edit {
        RouteEdit::Append(v) => {
            rules.extend(fragment::http_routes(&[v], &names).map_err(refused)?);
        }
        RouteEdit::Replace(list) => {
            *rules = if list.is_empty() {
                Vec::new()
            } else {
                fragment::http_routes(&list, &names).map_err(refused)?
            };
        }
        RouteEdit::Remove(n) => {
            if n == 0 || n > rules.len() {
                return Err(ChangeError::NotFound(format!(
                    "listener `{l}` has no route {n} (it has {}; routes count from 1)",
                    rules.len()
                )));
            }
            rules.remove(n - 1);
        }
    }
    if http.router.rules.is_empty() && http.router.default_backend.is_none() {
        return Err(ChangeError::Refused(format!(
            "listener `{l}` would have no route and no default backend: every request would get 404"
        )));
    }
    Ok(new)
}

fn backend_json(
    b: &crate::config::Backend,
    stats: &[crate::stats::BackendStats],
) -> serde_json::Value {
    let st = stats.iter().find(|x| x.name == b.name);
    let servers: Vec<serde_json::Value> = b
        .servers
        .iter()
        .map(|s| {
            let ss = st.and_then(|x| x.servers.iter().find(|y| y.name == s.name));
            serde_json::json!({
                "name": s.name,
                "address": s.address.to_string(),
                "weight": s.weight,
                "backup": s.backup,
                "maxconn": s.maxconn,
                "state": s.admin,
                "status": ss.map_or("UNKNOWN", |x| x.state.as_str()),
                "active": ss.map_or(0, |x| x.active),
                "requests": ss.map_or(0, |x| x.requests),
            })
        })
        .collect();
    serde_json::json!({
        "name": b.name,
        "queue": st.map_or(0, |x| x.queue),
        "servers": servers,
    })
}

fn listener_json(c: &Config, l: &crate::config::Listener) -> serde_json::Value {
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    let mode = match l.mode {
        crate::config::Mode::Tcp => "tcp",
        crate::config::Mode::Http => "http",
        crate::config::Mode::Detect => "detect",
    };
    let default = l
        .http
        .as_ref()
        .and_then(|h| h.router.default_backend)
        .or(l.backend)
        .and_then(|i| names.get(i).copied());
    let routes: Vec<serde_json::Value> = l
        .http
        .as_ref()
        .map(|h| {
            h.router
                .rules
                .iter()
                .map(|r| fragment::rule_json(r, &names))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "name": l.name,
        "bind": l.bind.to_string(),
        "mode": mode,
        "backend": default,
        "routes": routes,
    })
}
