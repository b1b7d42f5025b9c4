//! Owns: validating one piece of configuration given outside the file (a server or an HTTP
//! route sent to the runtime API) with exactly the rules of the file: the piece, written with the
//! same keys as in the file, is placed in a small document and read by [`super::check_str`], so an
//! unknown key, a bad address or an unknown backend is refused with the same words.
//! Must not: do I/O, or see the running configuration beyond the names it is given.

use std::fmt::Write as _;

use super::{Server, check_str};
use crate::router::Rule;

/// Why a piece was refused: the file validator's messages, without locations (the piece has
/// no file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct FragmentError(pub Vec<String>);

impl FragmentError {
    fn one(message: impl Into<String>) -> FragmentError {
        FragmentError(vec![message.into()])
    }
}

/// A JSON object as a TOML inline table (`{ address = "…", weight = 2 }`).
fn inline_table(json: &serde_json::Value) -> Result<String, FragmentError> {
    let serde_json::Value::Object(_) = json else {
        return Err(FragmentError::one("expected a JSON object"));
    };
    let value = toml::Value::try_from(json)
        .map_err(|e| FragmentError::one(format!("cannot be written as configuration: {e}")))?;
    Ok(value.to_string())
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn messages(diagnostics: Vec<super::Diagnostic>) -> FragmentError {
    FragmentError(diagnostics.into_iter().map(|d| d.message).collect())
}

/// One server of a backend, from the keys a `servers = [ … ]` element takes in the file
/// (`address`, `name`, `weight`, `backup`, `maxconn`, `send_proxy`).
pub fn server(json: &serde_json::Value) -> Result<Server, FragmentError> {
    let doc = format!(
        "[[backend]]\nname = \"api\"\nservers = [ {} ]\n\
         [[listener]]\nname = \"api\"\nbind = \"127.0.0.1:1\"\nbackend = \"api\"\n",
        inline_table(json)?
    );
    let checked = check_str(&doc, "api");
    if !checked.diagnostics.is_empty() {
        return Err(messages(checked.diagnostics));
    }
    checked
        .config
        .and_then(|mut c| c.backends.pop())
        .and_then(|mut b| b.servers.pop())
        .ok_or_else(|| FragmentError::one("no server"))
}

/// HTTP routes (each with the keys of a `[[listener.route]]` table: `host`, `host_suffix`,
/// `path`, `path_prefix`, `method`, `header`, `backend`), resolved against `backends` (the
/// running configuration's backend names, in its order: `Rule::backend` indexes it).
pub fn http_routes(
    routes: &[serde_json::Value],
    backends: &[&str],
) -> Result<Vec<Rule>, FragmentError> {
    let mut doc = String::new();
    for b in backends {
        let _ = write!(
            doc,
            "[[backend]]\nname = {}\nservers = [ {{ address = \"127.0.0.1:1\" }} ]\n",
            quoted(b)
        );
    }
    let mut list = Vec::with_capacity(routes.len());
    for r in routes {
        list.push(inline_table(r)?);
    }
    let _ = write!(
        doc,
        "[[listener]]\nname = \"api\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nroute = [ {} ]\n",
        list.join(", ")
    );
    let checked = check_str(&doc, "api");
    if !checked.diagnostics.is_empty() {
        return Err(messages(checked.diagnostics));
    }
    checked
        .config
        .and_then(|mut c| c.listeners.pop())
        .and_then(|l| l.http)
        .map(|h| h.router.rules)
        .ok_or_else(|| FragmentError::one("no routes"))
}

/// A rule as the API shows it: the keys the file uses.
pub fn rule_json(rule: &Rule, backends: &[&str]) -> serde_json::Value {
    use crate::router::{HostMatch, PathMatch};
    let mut o = serde_json::Map::new();
    match &rule.host {
        Some(HostMatch::Exact(h)) => {
            o.insert("host".into(), h.clone().into());
        }
        Some(HostMatch::Wildcard(h)) => {
            o.insert("host".into(), format!("*.{h}").into());
        }
        Some(HostMatch::Suffix(h)) => {
            o.insert("host_suffix".into(), h.clone().into());
        }
        None => {}
    }
    match &rule.path {
        Some(PathMatch::Exact(p)) => {
            o.insert("path".into(), p.clone().into());
        }
        Some(PathMatch::Prefix(p)) => {
            o.insert("path_prefix".into(), p.clone().into());
        }
        None => {}
    }
    if let Some(m) = &rule.method {
        o.insert("method".into(), m.clone().into());
    }
    if let Some(h) = rule.headers.first() {
        let mut hv = serde_json::Map::new();
        hv.insert("name".into(), h.name.clone().into());
        if let Some(v) = &h.value {
            hv.insert("value".into(), v.clone().into());
        }
        o.insert("header".into(), hv.into());
    }
    o.insert(
        "backend".into(),
        backends
            .get(rule.backend)
            .copied()
            .unwrap_or_default()
            .into(),
    );
    o.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_server_is_read_like_a_file_entry() {
        let s =
            server(&json!({"address": "127.0.0.1:8001", "weight": 3, "name": "a"})).expect("valid");
        assert_eq!(s.address.to_string(), "127.0.0.1:8001");
        assert_eq!((s.weight, s.name.as_str()), (3, "a"));
        let s = server(&json!({"address": "[::1]:80"})).expect("valid");
        assert_eq!(s.name, "[::1]:80");
    }

    #[test]
    fn a_bad_server_is_refused_with_the_file_messages() {
        let e = server(&json!({"address": "localhost:80"})).unwrap_err();
        assert!(e.to_string().contains("is not a socket address"), "{e}");
        let e = server(&json!({"address": "127.0.0.1:80", "wieght": 2})).unwrap_err();
        assert!(e.to_string().contains("unknown field `wieght`"), "{e}");
        let e = server(&json!({"address": "127.0.0.1:80", "weight": -1})).unwrap_err();
        assert!(e.to_string().contains("weight"), "{e}");
        let e = server(&json!({"weight": 1})).unwrap_err();
        assert!(e.to_string().contains("address"), "{e}");
        assert!(server(&json!([1])).is_err());
        assert!(server(&json!({"address": null})).is_err());
    }

    #[test]
    fn routes_resolve_backends_by_name_in_order() {
        let rules = http_routes(
            &[
                json!({"host": "*.example.com", "backend": "web"}),
                json!({"path_prefix": "/api/", "method": "GET", "backend": "api"}),
            ],
            &["api", "web"],
        )
        .expect("valid");
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].backend, rules[1].backend), (1, 0));
        let back = rule_json(&rules[0], &["api", "web"]);
        assert_eq!(back, json!({"host": "*.example.com", "backend": "web"}));
        let back = rule_json(&rules[1], &["api", "web"]);
        assert_eq!(
            back,
            json!({"path_prefix": "/api/", "method": "GET", "backend": "api"})
        );
    }

    #[test]
    fn a_bad_route_is_refused() {
        let e = http_routes(&[json!({"host": "a", "backend": "nope"})], &["web"]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = http_routes(&[json!({"host": "a"})], &["web"]).unwrap_err();
        assert!(e.to_string().contains("backend"), "{e}");
        let e = http_routes(&[json!({"sni": "a", "backend": "web"})], &["web"]).unwrap_err();
        assert!(e.to_string().contains("sni"), "{e}");
        // A key cannot smuggle more configuration in.
        let e = http_routes(
            &[json!({"backend": "web\"\n[[listener]]\nname = \"x"})],
            &["web"],
        )
        .unwrap_err();
        assert!(!e.0.is_empty());
    }
}
