//! Owns: the stable identities of listeners, backends and servers, and the registry that gives
//! them out by name. Shards refer to everything by these ids, never by a position in the config,
//! so that a reload can add and remove backends, servers and listeners while connections that
//! started under the old configuration keep pointing at what they started with.
//! Must not: hold configuration or state; an id is a number, and ids are never reused within a
//! process (a removed backend's id resolves to nothing, not to a newcomer).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Stable id of a ", $what, ".")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub struct $name(pub u32);
    };
}

id_type!(ListenerId, "listener");
id_type!(BackendId, "backend");
id_type!(
    ServerId,
    "server (unique in the process, not only in its backend)"
);

/// Multiplicative hashing for small integer ids: a lookup costs a multiply, not SipHash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by one of the id types (per shard; no sharing).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Names to ids, kept by the control thread for the life of the process. The same name always
/// gets the same id back; a name seen for the first time gets the next number.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    listeners: HashMap<String, ListenerId>,
    backends: HashMap<String, BackendId>,
    servers: HashMap<(BackendId, String), ServerId>,
    next: u32,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn bump(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    pub fn listener(&mut self, name: &str) -> ListenerId {
        if let Some(&id) = self.listeners.get(name) {
            return id;
        }
        let id = ListenerId(self.bump());
        self.listeners.insert(name.to_string(), id);
        id
    }

    pub fn backend(&mut self, name: &str) -> BackendId {
        if let Some(&id) = self.backends.get(name) {
            return id;
        }
        let id = BackendId(self.bump());
        self.backends.insert(name.to_string(), id);
        id
    }

    pub fn server(&mut self, backend: BackendId, name: &str) -> ServerId {
        if let Some(&id) = self.servers.get(&(backend, name.to_string())) {
            return id;
        }
        let id = ServerId(self.bump());
        self.servers.insert((backend, name.to_string()), id);
        id
    }

    /// The id of a listener already named, without creating one.
    pub fn find_listener(&self, name: &str) -> Option<ListenerId> {
        self.listeners.get(name).copied()
    }

    /// The id of a backend already named, without creating one.
    pub fn find_backend(&self, name: &str) -> Option<BackendId> {
        self.backends.get(name).copied()
    }

    pub fn find_server(&self, backend: BackendId, name: &str) -> Option<ServerId> {
        self.servers.get(&(backend, name.to_string())).copied()
    }

    /// Forgets a removed name, so a later backend of the same name is a new one (its pools and
    /// counters start fresh) rather than the old one come back.
    pub fn forget_backend(&mut self, name: &str) {
        if let Some(id) = self.backends.remove(name) {
            self.servers.retain(|(b, _), _| *b != id);
        }
    }

    pub fn forget_server(&mut self, backend: BackendId, name: &str) {
        self.servers.remove(&(backend, name.to_string()));
    }

    pub fn forget_listener(&mut self, name: &str) {
        self.listeners.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id_and_forgotten_names_come_back_new() {
        let mut r = Registry::new();
        let a = r.backend("api");
        let s = r.server(a, "s1");
        assert_eq!(r.backend("api"), a);
        assert_eq!(r.server(a, "s1"), s);
        assert_ne!(r.server(a, "s2"), s);
        let l = r.listener("web");
        assert_ne!(l.0, a.0, "one counter for every kind: ids never collide");
        r.forget_backend("api");
        assert_eq!(r.find_server(a, "s1"), None);
        assert_ne!(r.backend("api"), a);
    }

    #[test]
    fn id_map_finds_what_it_holds() {
        let mut m: IdMap<BackendId, &str> = IdMap::default();
        m.insert(BackendId(7), "seven");
        m.insert(BackendId(70), "seventy");
        assert_eq!(m.get(&BackendId(7)), Some(&"seven"));
        assert_eq!(m.get(&BackendId(8)), None);
    }
}
