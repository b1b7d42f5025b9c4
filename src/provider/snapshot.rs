//! Owns: the route snapshot (every route one Redis holds at one moment, and every route key that
//! was skipped with its reason), the pure update of a snapshot by one key's read, and the diff
//! between two snapshots that the integrator turns into configuration changes.
//! Must not: do I/O or read the clock. A snapshot is a function of what Redis holds, never of the
//! order events arrived in, so two nodes watching the same Redis hold equal snapshots.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::schema::{
    EntryError, HostPattern, ROUTES_MAX, Route, host_of_key, key_bytes_max, parse_entry,
};

/// Every route of one Redis at one moment. Both maps are ordered, so equal contents compare,
/// serialize and iterate identically on every node; `routes` iterates in match precedence (see
/// [`HostPattern`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSnapshot {
    pub routes: BTreeMap<HostPattern, Route>,
    /// Route keys that are not valid routes: the key as stored (cut to the longest valid key
    /// length plus `...` when longer) and why. A skipped key never removes another route.
    pub skipped: BTreeMap<Vec<u8>, EntryError>,
}

/// What one read of a route key found in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRead {
    /// No such key (deleted, expired, evicted, or an empty list: Redis deletes those).
    Missing,
    /// The list's elements in order (the Redis layer reads at most `SERVERS_PER_ROUTE_MAX + 2`).
    List(Vec<Vec<u8>>),
    /// The key holds another type (`string`, `hash`, ...).
    WrongType(String),
    /// Redis answered the read with an error (an ACL that forbids the key, say).
    Refused(String),
}

/// What [`RouteSnapshot::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The snapshot differs from before.
    pub changed: bool,
    /// The key is now skipped for this reason.
    pub error: Option<EntryError>,
    /// The key is new but the snapshot already holds [`ROUTES_MAX`] entries; it was left out.
    pub over_limit: bool,
}

impl RouteSnapshot {
    /// Routes plus skipped keys: what [`ROUTES_MAX`] bounds.
    pub fn entries(&self) -> usize {
        self.routes.len() + self.skipped.len()
    }

    /// Replaces what the snapshot knows about `key` with `read`.
    pub fn apply(&mut self, prefix: &[u8], key: &[u8], read: KeyRead) -> Applied {
        let host = host_of_key(prefix, key);
        let new: Option<Result<Route, EntryError>> = match read {
            KeyRead::Missing => None,
            KeyRead::List(values) if values.is_empty() => None,
            KeyRead::List(values) => Some(parse_entry(prefix, key, &values)),
            KeyRead::WrongType(found) => Some(match &host {
                Ok(_) => Err(EntryError::NotAList { found }),
                Err(e) => Err(e.clone()),
            }),
            KeyRead::Refused(reason) => Some(match &host {
                Ok(_) => Err(EntryError::Unreadable { reason }),
                Err(e) => Err(e.clone()),
            }),
        };
        let report = report_key(prefix, key);
        let had_route = host
            .as_ref()
            .ok()
            .and_then(|h| self.routes.get(h))
            .is_some();
        let had_error = self.skipped.contains_key(&report);
        if new.is_some() && !had_route && !had_error && self.entries() >= ROUTES_MAX {
            return Applied {
                changed: false,
                error: None,
                over_limit: true,
            };
        }
        let mut changed = false;
        let error = match new {
            None => {
                if let Ok(h) = &host {
                    changed |= self.routes.remove(h).is_some();
                }
                changed |= self.skipped.remove(&report).is_some();
                None
            }
            Some(Ok(route)) => {
                changed |= self.skipped.remove(&report).is_some();
                match self.routes.entry(route.host.clone()) {
                    Entry::Occupied(mut slot) => {
                        if *slot.get() != route {
                            slot.insert(route);
                            changed = true;
                        }
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(route);
                        changed = true;
                    }
                }
                None
            }
            Some(Err(error)) => {
                if let Ok(h) = &host {
                    changed |= self.routes.remove(h).is_some();
                }
                if self.skipped.get(&report) != Some(&error) {
                    self.skipped.insert(report, error.clone());
                    changed = true;
                }
                Some(error)
            }
        };
        Applied {
            changed,
            error,
            over_limit: false,
        }
    }

    /// The route a request for `host` (normalized: lowercase, no port, no trailing dot) takes:
    /// the exact name, else the wildcard with the most labels, else `*` — hipache's order.
    pub fn route_for_host(&self, host: &[u8]) -> Option<&Route> {
        let text = std::str::from_utf8(host).ok()?;
        if let Some(route) = self.routes.get(&HostPattern::Exact(text.to_owned())) {
            return Some(route);
        }
        let mut rest = text;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(route) = self.routes.get(&HostPattern::Wildcard(parent.to_owned())) {
                return Some(route);
            }
            rest = parent;
        }
        self.routes.get(&HostPattern::Any)
    }
}

/// The key under which a skipped entry is reported: the key itself, or for a key longer than any
/// valid one its first `key_bytes_max` bytes and `...`, so a huge key name costs bounded memory.
pub fn report_key(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let max = key_bytes_max(prefix.len());
    match key.get(..max) {
        Some(head) if key.len() > max => [head, b"..."].concat(),
        _ => key.to_vec(),
    }
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    Added(Route),
    Removed(Route),
    /// Same host, other servers (or their order) or another identifier.
    Changed {
        old: Route,
        new: Route,
    },
}

impl RouteChange {
    pub fn host(&self) -> &HostPattern {
        match self {
            RouteChange::Added(route) | RouteChange::Removed(route) => &route.host,
            RouteChange::Changed { new, .. } => &new.host,
        }
    }
}

/// What turns `old` into `new`, in match precedence order of the hosts. Skipped keys are not
/// changes: only routes reach the shards.
pub fn diff(old: &RouteSnapshot, new: &RouteSnapshot) -> Vec<RouteChange> {
    let mut changes = Vec::new();
    let mut olds = old.routes.values().peekable();
    let mut news = new.routes.values().peekable();
    loop {
        match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => changes.extend(olds.by_ref().cloned().map(RouteChange::Removed)),
            (None, Some(_)) => changes.extend(news.by_ref().cloned().map(RouteChange::Added)),
            (Some(o), Some(n)) => match o.host.cmp(&n.host) {
                std::cmp::Ordering::Less => {
                    changes.push(RouteChange::Removed((*o).clone()));
                    olds.next();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(RouteChange::Added((*n).clone()));
                    news.next();
                }
                std::cmp::Ordering::Equal => {
                    if o != n {
                        changes.push(RouteChange::Changed {
                            old: (*o).clone(),
                            new: (*n).clone(),
                        });
                    }
                    olds.next();
                    news.next();
                }
            },
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> KeyRead {
        KeyRead::List(items.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    fn snap(entries: &[(&str, &[&str])]) -> RouteSnapshot {
        let mut s = RouteSnapshot::default();
        for (key, items) in entries {
            s.apply(b"", key.as_bytes(), list(items));
        }
        s
    }

    #[test]
    fn apply_adds_changes_and_removes_a_route() {
        let mut s = RouteSnapshot::default();
        let a = s.apply(
            b"",
            b"frontend:a.example",
            list(&["a", "http://10.0.0.1:80"]),
        );
        assert!(a.changed && a.error.is_none());
        let again = s.apply(
            b"",
            b"frontend:a.example",
            list(&["a", "http://10.0.0.1:80"]),
        );
        assert!(!again.changed);
        let more = s.apply(
            b"",
            b"frontend:a.example",
            list(&["a", "http://10.0.0.1:80", "http://10.0.0.2:80"]),
        );
        assert!(more.changed);
        assert_eq!(s.route_for_host(b"a.example").unwrap().servers.len(), 2);
        assert!(
            s.apply(b"", b"frontend:a.example", KeyRead::Missing)
                .changed
        );
        assert!(s.routes.is_empty());
        assert!(
            !s.apply(b"", b"frontend:a.example", KeyRead::Missing)
                .changed
        );
    }

    #[test]
    fn a_malformed_key_is_skipped_without_touching_the_others() {
        let mut s = snap(&[("frontend:good.example", &["g", "http://10.0.0.1"])]);
        let bad = s.apply(b"", b"frontend:bad.example", list(&["b", "http://name"]));
        assert!(bad.changed);
        assert!(matches!(
            bad.error,
            Some(EntryError::HostnameNotAllowed { .. })
        ));
        let string = s.apply(
            b"",
            b"frontend:str.example",
            KeyRead::WrongType("string".into()),
        );
        assert_eq!(
            string.error,
            Some(EntryError::NotAList {
                found: "string".into()
            })
        );
        assert_eq!(s.routes.len(), 1);
        assert_eq!(s.skipped.len(), 2);
        // Fixing the entry turns the skip into a route.
        s.apply(
            b"",
            b"frontend:bad.example",
            list(&["b", "http://10.0.0.9"]),
        );
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.skipped.len(), 1);
        // A route that turns malformed is dropped and reported.
        let broken = s.apply(b"", b"frontend:good.example", list(&["g"]));
        assert!(broken.changed);
        assert_eq!(broken.error, Some(EntryError::OnlyIdentifier));
        assert!(s.route_for_host(b"good.example").is_none());
        // Deleting a skipped key forgets it.
        assert!(
            s.apply(b"", b"frontend:str.example", KeyRead::Missing)
                .changed
        );
        assert_eq!(s.skipped.len(), 1);
    }

    #[test]
    fn huge_keys_are_reported_cut() {
        let mut s = RouteSnapshot::default();
        let key = [b"frontend:".as_slice(), &vec![b'a'; 100_000]].concat();
        let out = s.apply(b"", &key, list(&["x", "http://10.0.0.1"]));
        assert!(matches!(out.error, Some(EntryError::KeyTooLong { .. })));
        let (reported, _) = s.skipped.iter().next().unwrap();
        assert_eq!(reported.len(), key_bytes_max(0) + 3);
        assert!(s.apply(b"", &key, KeyRead::Missing).changed);
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn refused_reads_are_skipped() {
        let mut s = RouteSnapshot::default();
        let out = s.apply(
            b"",
            b"frontend:a.example",
            KeyRead::Refused("NOPERM".into()),
        );
        assert_eq!(
            out.error,
            Some(EntryError::Unreadable {
                reason: "NOPERM".into()
            })
        );
    }

    #[test]
    fn new_keys_past_the_limit_are_left_out() {
        let mut s = RouteSnapshot::default();
        for i in 0..ROUTES_MAX {
            let key = format!("frontend:h{i}.example");
            s.apply(b"", key.as_bytes(), list(&["i", "http://10.0.0.1"]));
        }
        assert_eq!(s.entries(), ROUTES_MAX);
        let out = s.apply(
            b"",
            b"frontend:extra.example",
            list(&["i", "http://10.0.0.1"]),
        );
        assert!(out.over_limit && !out.changed);
        // Existing keys still update and delete.
        let upd = s.apply(b"", b"frontend:h1.example", list(&["i", "http://10.0.0.2"]));
        assert!(upd.changed && !upd.over_limit);
        assert!(
            s.apply(b"", b"frontend:h2.example", KeyRead::Missing)
                .changed
        );
    }

    #[test]
    fn lookup_follows_hipache_precedence() {
        let s = snap(&[
            ("frontend:www.example.com", &["exact", "http://10.0.0.1"]),
            ("frontend:*.example.com", &["wild", "http://10.0.0.2"]),
            ("frontend:*.api.example.com", &["api", "http://10.0.0.3"]),
            ("frontend:*", &["any", "http://10.0.0.4"]),
        ]);
        let id = |h: &str| s.route_for_host(h.as_bytes()).map(|r| r.id.as_str());
        assert_eq!(id("www.example.com"), Some("exact"));
        assert_eq!(id("img.example.com"), Some("wild"));
        assert_eq!(id("v1.api.example.com"), Some("api"));
        assert_eq!(id("api.example.com"), Some("wild"));
        assert_eq!(id("example.com"), Some("any"));
        assert_eq!(id("other.org"), Some("any"));
        let order: Vec<&str> = s.routes.values().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["exact", "api", "wild", "any"]);
    }

    #[test]
    fn diff_lists_added_removed_and_changed_in_order() {
        let old = snap(&[
            ("frontend:a.example", &["a", "http://10.0.0.1"]),
            ("frontend:b.example", &["b", "http://10.0.0.1"]),
            ("frontend:c.example", &["c", "http://10.0.0.1"]),
        ]);
        let new = snap(&[
            (
                "frontend:b.example",
                &["b", "http://10.0.0.1", "http://10.0.0.2"],
            ),
            ("frontend:c.example", &["c", "http://10.0.0.1"]),
            ("frontend:d.example", &["d", "http://10.0.0.1"]),
            ("frontend:*.example", &["w", "http://10.0.0.1"]),
        ]);
        let changes = diff(&old, &new);
        let shown: Vec<String> = changes
            .iter()
            .map(|c| match c {
                RouteChange::Added(r) => format!("+{}", r.host),
                RouteChange::Removed(r) => format!("-{}", r.host),
                RouteChange::Changed { old, new } => {
                    format!("~{} {}->{}", new.host, old.servers.len(), new.servers.len())
                }
            })
            .collect();
        assert_eq!(
            shown,
            ["-a.example", "~b.example 1->2", "+d.example", "+*.example"]
        );
        assert!(diff(&new, &new).is_empty());
        assert_eq!(diff(&RouteSnapshot::default(), &new).len(), 4);
        assert_eq!(diff(&new, &RouteSnapshot::default()).len(), 4);
    }

    #[test]
    fn same_contents_in_any_order_give_equal_snapshots() {
        let entries: [(&str, &[&str]); 3] = [
            ("frontend:a.example", &["a", "http://10.0.0.1"]),
            ("frontend:bad", &["b"]),
            ("frontend:*.example", &["w", "http://10.0.0.1"]),
        ];
        let forward = snap(&entries);
        let mut reversed = entries;
        reversed.reverse();
        assert_eq!(forward, snap(&reversed));
    }
}
