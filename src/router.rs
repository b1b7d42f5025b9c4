//! Owns: choosing a backend for one HTTP request from a listener's ordered rules (first match
//! wins), the way HAProxy `use_backend ... if <acl>` lines and nginx `server_name`/`location`
//! blocks are used in front of web and WebSocket fleets.
//! Must not: do I/O or see connections; it takes the request's host, path, method and headers as
//! bytes and returns an index.

/// How a rule matches the request's host (the Host header, lowercased, port removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `host = "example.com"`: exactly this name.
    Exact(String),
    /// `host = "*.example.com"`: any name under `example.com` (one or more labels), not the apex,
    /// like nginx's `server_name *.example.com`.
    Wildcard(String),
    /// `host_suffix = "example.com"`: the name ends with this string, like HAProxy
    /// `hdr_end(host)`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `path_prefix = "/socket.io/"`: the path (before `?`) starts with this.
    Prefix(String),
    /// `path = "/health"`: the path (before `?`) is exactly this.
    Exact(String),
}

/// `header = { name = "Upgrade", value = "websocket" }`: the header is present and, when a value
/// is given, one of its comma-separated elements equals it (ASCII case-insensitive), the way
/// HAProxy's `hdr(upgrade) -i websocket` is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lowercase field name.
    pub name: String,
    /// Lowercase value element; `None` matches presence.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    /// Uppercase method, compared exactly (methods are case-sensitive, RFC 9110 §9.1).
    pub method: Option<String>,
    /// Every listed header must match.
    pub headers: Vec<HeaderMatch>,
    /// Index of the backend this rule sends to.
    pub backend: usize,
}

/// A listener's rules in order plus the default backend for requests no rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Router {
    pub rules: Vec<Rule>,
    pub default_backend: Option<usize>,
}

/// Calls the visitor with every value of a header (lowercase name in) until it returns true;
/// returns whether it did.
pub type HeaderLookup<'a> = &'a dyn Fn(&str, &mut dyn FnMut(&[u8]) -> bool) -> bool;

/// What the router needs to know about one request.
pub struct Request<'a> {
    /// The Host header value as received (may carry a port and any case).
    pub host: Option<&'a [u8]>,
    /// The request-target (origin-form or absolute-form).
    pub target: &'a [u8],
    pub method: &'a [u8],
    /// Header lookup: every value of a field name (lowercase name in).
    pub headers: HeaderLookup<'a>,
}

impl Router {
    /// The backend for `req`, or `None` (ringway answers 404).
    pub fn route(&self, req: &Request<'_>) -> Option<usize> {
        let host = req.host.map(normalize_host).unwrap_or_default();
        let path = path_of(req.target);
        for rule in &self.rules {
            if rule_matches(rule, &host, path, req) {
                return Some(rule.backend);
            }
        }
        self.default_backend
    }
}

fn rule_matches(rule: &Rule, host: &[u8], path: &[u8], req: &Request<'_>) -> bool {
    if let Some(m) = &rule.host {
        let ok = match m {
            HostMatch::Exact(h) => host == h.as_bytes(),
            HostMatch::Wildcard(base) => {
                host.len() > base.len() + 1
                    && host.ends_with(base.as_bytes())
                    && host.get(host.len() - base.len() - 1) == Some(&b'.')
            }
            HostMatch::Suffix(s) => host.ends_with(s.as_bytes()),
        };
        if !ok {
            return false;
        }
    }
    if let Some(m) = &rule.path {
        let ok = match m {
            PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
            PathMatch::Exact(p) => path == p.as_bytes(),
        };
        if !ok {
            return false;
        }
    }
    if let Some(method) = &rule.method
        && req.method != method.as_bytes()
    {
        return false;
    }
    rule.headers.iter().all(|h| header_matches(h, req))
}

fn header_matches(h: &HeaderMatch, req: &Request<'_>) -> bool {
    let mut found = false;
    (req.headers)(&h.name, &mut |value: &[u8]| {
        let ok = match &h.value {
            None => true,
            Some(want) => value
                .split(|&b| b == b',')
                .any(|element| element.trim_ascii().eq_ignore_ascii_case(want.as_bytes())),
        };
        found |= ok;
        found
    });
    found
}

/// Lowercases the host and strips a port (`Example.COM:8080` -> `example.com`, `[::1]:80` ->
/// `[::1]`) and a trailing dot.
pub fn normalize_host(raw: &[u8]) -> Vec<u8> {
    let raw = raw.trim_ascii();
    let without_port = if raw.first() == Some(&b'[') {
        match raw.iter().position(|&b| b == b']') {
            Some(end) => raw.get(..=end).unwrap_or(raw),
            None => raw,
        }
    } else {
        match raw.iter().rposition(|&b| b == b':') {
            Some(colon) => raw.get(..colon).unwrap_or(raw),
            None => raw,
        }
    };
    let trimmed = without_port.strip_suffix(b".").unwrap_or(without_port);
    trimmed.to_ascii_lowercase()
}

/// The path of a request-target: origin-form up to `?`; for absolute-form the part after the
/// authority (RFC 9112 §3.2.2).
pub fn path_of(target: &[u8]) -> &[u8] {
    let mut t = target;
    if let Some(scheme_end) = find(t, b"://") {
        let after = t.get(scheme_end + 3..).unwrap_or_default();
        t = match after.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) => after.get(i..).unwrap_or_default(),
            None => b"/",
        };
        if t.first() == Some(&b'?') {
            return b"/";
        }
    }
    match t.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => t.get(..i).unwrap_or(t),
        None => t,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        router: &Router,
        host: &str,
        target: &str,
        method: &str,
        hdrs: &[(&str, &str)],
    ) -> Option<usize> {
        let owned: Vec<(String, Vec<u8>)> = hdrs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
            for (n, v) in &owned {
                if n == name && f(v) {
                    return true;
                }
            }
            false
        };
        router.route(&Request {
            host: Some(host.as_bytes()),
            target: target.as_bytes(),
            method: method.as_bytes(),
            headers: &lookup,
        })
    }

    fn rule(backend: usize) -> Rule {
        Rule {
            host: None,
            path: None,
            method: None,
            headers: Vec::new(),
            backend,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_default_catches_the_rest() {
        let r = Router {
            rules: vec![
                Rule {
                    path: Some(PathMatch::Prefix("/socket.io/".into())),
                    ..rule(1)
                },
                Rule {
                    path: Some(PathMatch::Prefix("/".into())),
                    method: Some("POST".into()),
                    ..rule(2)
                },
            ],
            default_backend: Some(0),
        };
        assert_eq!(route(&r, "a", "/socket.io/?EIO=4", "GET", &[]), Some(1));
        assert_eq!(route(&r, "a", "/form", "POST", &[]), Some(2));
        assert_eq!(route(&r, "a", "/form", "GET", &[]), Some(0));
    }

    #[test]
    fn no_match_and_no_default_is_none() {
        let r = Router {
            rules: vec![Rule {
                host: Some(HostMatch::Exact("a.example".into())),
                ..rule(1)
            }],
            default_backend: None,
        };
        assert_eq!(route(&r, "b.example", "/", "GET", &[]), None);
        assert_eq!(route(&r, "A.Example:8080", "/", "GET", &[]), Some(1));
    }

    #[test]
    fn wildcard_host_matches_subdomains_not_apex() {
        let r = Router {
            rules: vec![Rule {
                host: Some(HostMatch::Wildcard("example.com".into())),
                ..rule(1)
            }],
            default_backend: None,
        };
        assert_eq!(route(&r, "ws.example.com", "/", "GET", &[]), Some(1));
        assert_eq!(route(&r, "a.b.example.com", "/", "GET", &[]), Some(1));
        assert_eq!(route(&r, "example.com", "/", "GET", &[]), None);
        assert_eq!(route(&r, "badexample.com", "/", "GET", &[]), None);
    }

    #[test]
    fn suffix_host_is_a_plain_string_suffix_like_hdr_end() {
        let r = Router {
            rules: vec![Rule {
                host: Some(HostMatch::Suffix("example.com".into())),
                ..rule(1)
            }],
            default_backend: None,
        };
        assert_eq!(route(&r, "example.com", "/", "GET", &[]), Some(1));
        assert_eq!(route(&r, "myexample.com", "/", "GET", &[]), Some(1));
        assert_eq!(route(&r, "example.org", "/", "GET", &[]), None);
    }

    #[test]
    fn header_value_matches_a_list_element_case_insensitively() {
        let r = Router {
            rules: vec![Rule {
                headers: vec![HeaderMatch {
                    name: "upgrade".into(),
                    value: Some("websocket".into()),
                }],
                ..rule(1)
            }],
            default_backend: Some(0),
        };
        assert_eq!(
            route(&r, "h", "/", "GET", &[("Upgrade", "WebSocket")]),
            Some(1)
        );
        assert_eq!(
            route(&r, "h", "/", "GET", &[("Upgrade", "h2c, websocket")]),
            Some(1)
        );
        assert_eq!(route(&r, "h", "/", "GET", &[("Upgrade", "h2c")]), Some(0));
        assert_eq!(route(&r, "h", "/", "GET", &[]), Some(0));
    }

    #[test]
    fn header_presence_without_value() {
        let r = Router {
            rules: vec![Rule {
                headers: vec![HeaderMatch {
                    name: "x-canary".into(),
                    value: None,
                }],
                ..rule(1)
            }],
            default_backend: Some(0),
        };
        assert_eq!(route(&r, "h", "/", "GET", &[("X-Canary", "")]), Some(1));
        assert_eq!(route(&r, "h", "/", "GET", &[]), Some(0));
    }

    #[test]
    fn exact_path_ignores_query_and_absolute_form_uses_its_path() {
        let r = Router {
            rules: vec![Rule {
                path: Some(PathMatch::Exact("/health".into())),
                ..rule(1)
            }],
            default_backend: Some(0),
        };
        assert_eq!(route(&r, "h", "/health?x=1", "GET", &[]), Some(1));
        assert_eq!(route(&r, "h", "/healthz", "GET", &[]), Some(0));
        assert_eq!(route(&r, "h", "http://h/health", "GET", &[]), Some(1));
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host(b"Example.COM:8080"), b"example.com");
        assert_eq!(normalize_host(b"[::1]:80"), b"[::1]");
        assert_eq!(normalize_host(b"example.com."), b"example.com");
        assert_eq!(normalize_host(b""), b"");
    }

    #[test]
    fn path_of_forms() {
        assert_eq!(path_of(b"/a/b?c"), b"/a/b");
        assert_eq!(path_of(b"http://h:1/x?y"), b"/x");
        assert_eq!(path_of(b"http://h"), b"/");
        assert_eq!(path_of(b"http://h?q"), b"/");
        assert_eq!(path_of(b"*"), b"*");
    }
}
