//! Owns: turning a [`RouteSnapshot`] into configuration — one backend per route, named
//! `redis:<host>`, made from `[provider.redis.backend]` with the route's servers (weight 1, named
//! by address), and one host rule per route on each listed listener, after the file's own rules,
//! in the snapshot's precedence order. `frontend:*` becomes a listener's default backend only
//! when the listener has none of its own.
//! Must not: do I/O. [`overlay`] is idempotent: it first removes what an earlier overlay added,
//! so the same function serves a reload (file + snapshot), a runtime API edit (current +
//! snapshot) and a new snapshot (current + new snapshot).

use crate::config::{AdminState, Config, Server};
use crate::router::Rule;

use super::RouteSnapshot;

/// Backends made from Redis routes are named with this prefix; a name in the file cannot contain
/// `:`, so they never collide with the file's.
pub const BACKEND_PREFIX: &str = "redis:";

/// `config` with the routes of `snap` (and without those of any earlier snapshot).
pub fn overlay(config: &Config, snap: &RouteSnapshot) -> Config {
    let mut c = config.clone();
    strip(&mut c);
    let Some(p) = config.provider.as_ref() else {
        return c;
    };
    for route in snap.routes.values() {
        let index = c.backends.len();
        let mut backend = p.backend.clone();
        backend.name = format!("{BACKEND_PREFIX}{}", route.host);
        backend.servers = Vec::with_capacity(route.servers.len());
        for &address in &route.servers {
            // A URL listed twice is one server (the file refuses duplicates too).
            if backend.servers.iter().any(|s| s.address == address) {
                continue;
            }
            backend.servers.push(Server {
                address,
                weight: 1,
                name: address.to_string(),
                backup: false,
                maxconn: 0,
                send_proxy: None,
                admin: AdminState::Ready,
            });
        }
        c.backends.push(backend);
        let rule = route.host.router_match();
        for &l in &p.listeners {
            let Some(h) = c.listeners.get_mut(l).and_then(|l| l.http.as_mut()) else {
                continue;
            };
            match &rule {
                Some(host) => h.router.rules.push(Rule {
                    host: Some(host.clone()),
                    path: None,
                    method: None,
                    headers: Vec::new(),
                    backend: index,
                }),
                None => {
                    if h.router.default_backend.is_none() {
                        h.router.default_backend = Some(index);
                    }
                }
            }
        }
    }
    c
}

/// Removes the backends, rules and defaults an earlier [`overlay`] added (its backends are
/// always the last ones).
fn strip(c: &mut Config) {
    let keep = c
        .backends
        .iter()
        .position(|b| b.name.starts_with(BACKEND_PREFIX))
        .unwrap_or(c.backends.len());
    c.backends.truncate(keep);
    for l in &mut c.listeners {
        if let Some(h) = l.http.as_mut() {
            h.router.rules.retain(|r| r.backend < keep);
            if h.router.default_backend.is_some_and(|d| d >= keep) {
                h.router.default_backend = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{KeyRead, RouteSnapshot};

    const FILE: &str = "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\n\
        [[listener.route]]\npath_prefix = \"/static/\"\nbackend = \"files\"\n\
        [[backend]]\nname = \"files\"\nservers = [ { address = \"127.0.0.1:2\" } ]\n\
        [provider.redis]\nlisteners = [\"public\"]\n\
        [provider.redis.backend]\nbalance = \"least_conn\"\nretries = 1\n";

    fn snapshot(entries: &[(&str, &[&str])]) -> RouteSnapshot {
        let mut s = RouteSnapshot::default();
        for (host, values) in entries {
            let key = format!("frontend:{host}");
            let values: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
            s.apply(b"", key.as_bytes(), KeyRead::List(values));
        }
        s
    }

    #[test]
    fn routes_become_backends_and_rules_after_the_files() {
        let c = crate::config::load_str(FILE, "t.toml").expect("valid");
        let snap = snapshot(&[
            ("*.example.com", &["wild", "http://127.0.0.1:9002"]),
            (
                "www.example.com",
                &["site", "http://127.0.0.1:9001", "http://[::1]:9003/"],
            ),
            ("*", &["all", "http://127.0.0.1:9009"]),
        ]);
        let o = overlay(&c, &snap);
        let names: Vec<&str> = o.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "files",
                "redis:www.example.com",
                "redis:*.example.com",
                "redis:*"
            ]
        );
        let www = &o.backends[1];
        assert_eq!(www.servers.len(), 2);
        assert_eq!(www.servers[0].name, "127.0.0.1:9001");
        assert_eq!(www.balance, crate::config::Balance::LeastConn);
        assert_eq!(www.retries, 1);
        let router = &o.listeners[0].http.as_ref().expect("http").router;
        let backends: Vec<usize> = router.rules.iter().map(|r| r.backend).collect();
        assert_eq!(
            backends,
            [0, 1, 2],
            "the file's rule first, then exact, then wildcard"
        );
        assert_eq!(router.default_backend, Some(3), "frontend:* is the default");
        // Idempotent, and an emptied snapshot gives the file back.
        assert_eq!(overlay(&o, &snap), o);
        assert_eq!(overlay(&o, &RouteSnapshot::default()), c);
    }

    #[test]
    fn a_listener_default_of_its_own_wins_over_the_catch_all() {
        let text = FILE.replace(
            "mode = \"http\"\n",
            "mode = \"http\"\nbackend = \"files\"\n",
        );
        let c = crate::config::load_str(&text, "t.toml").expect("valid");
        let o = overlay(&c, &snapshot(&[("*", &["all", "http://127.0.0.1:9009"])]));
        let router = &o.listeners[0].http.as_ref().expect("http").router;
        assert_eq!(router.default_backend, Some(0));
        assert_eq!(overlay(&o, &RouteSnapshot::default()), c);
    }
}
