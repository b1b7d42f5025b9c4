//! Owns: everything rustls needs to terminate TLS on a listener: loading PEM chains and keys,
//! choosing a certificate by SNI (exact, then `*.` wildcard, then the default), the ticket
//! keys every shard derives from one shared secret, and each shard's own `ServerConfig` (its
//! own session cache, so no lock is shared between cores).
//! Must not: touch sockets or rings (shard/tls.rs drives connections).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsListener, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("certificate file {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("key file {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("ticket_key_file {}: {reason}", path.display())]
    TicketKey { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(String),
}

/// A certificate chain with its key, and the server names it is valid for.
pub struct LoadedCert {
    pub key: CertifiedKey,
    /// Lower-case DNS names from the leaf's subjectAltName (its CN when it has none).
    pub names: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1) and checks
/// that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<LoadedCert, TlsSetupError> {
    let cert_err = |reason: String| TlsSetupError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(pem_reason(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(pem_reason(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err("holds no CERTIFICATE block".into()));
    };
    let names = leaf_names(leaf).map_err(cert_err)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Key {
        path: key.to_path_buf(),
        reason: pem_reason(&e),
    })?;
    let key = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsSetupError::Key {
        path: key.to_path_buf(),
        reason: format!("does not fit the certificate: {e}"),
    })?;
    Ok(LoadedCert { key, names })
}

fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "holds no usable PEM block".into(),
        other => format!("bad PEM: {other:?}"),
    }
}

fn leaf_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the first certificate is not valid X.509: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(names)
}

/// Certificate choice by server name: an exact name wins over a wildcard, which wins over the
/// default. Pure, so it is tested without handshakes.
#[derive(Debug, Default, Clone)]
pub struct CertSelector {
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, usize>,
    default: usize,
}

impl CertSelector {
    /// `names[i]` are the patterns of certificate `i`; the first certificate claiming a name keeps it.
    pub fn new(names: &[Vec<String>], default: usize) -> CertSelector {
        let mut s = CertSelector {
            default,
            ..CertSelector::default()
        };
        for (i, list) in names.iter().enumerate() {
            for n in list {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(parent) => s.wildcard.entry(parent.to_string()).or_insert(i),
                    None => s.exact.entry(n).or_insert(i),
                };
            }
        }
        s
    }

    pub fn select(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else {
            return self.default;
        };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&sni) {
            return i;
        }
        if let Some((_, parent)) = sni.split_once('.')
            && let Some(&i) = self.wildcard.get(parent)
        {
            return i;
        }
        self.default
    }
}

#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    selector: CertSelector,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.keys
            .get(self.selector.select(hello.server_name()))
            .cloned()
    }
}

/// Ticket keys: AES-256-GCM keys derived with HKDF-SHA256 from one secret and the rotation
/// epoch (`unix time / rotate`). Every shard (and every process given the same
/// `ticket_key_file`) derives the same key for the same epoch without talking to the others, so
/// a ticket issued on one core resumes on any other. Tickets of the current and the previous
/// epoch are accepted; older keys are never derived again (forward secrecy after two periods).
/// Each shard has its own instance (the mutex is never contended).
pub struct EpochTicketer {
    secret: [u8; 32],
    rotate_s: u64,
    keys: Mutex<Option<EpochKeys>>,
}

struct EpochKeys {
    epoch: u64,
    current: LessSafeKey,
    previous: LessSafeKey,
}

impl std::fmt::Debug for EpochTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochTicketer")
            .field("rotate_s", &self.rotate_s)
            .finish_non_exhaustive()
    }
}

/// epoch (8) | nonce (12) | ciphertext | tag (16).
const TICKET_HEADER: usize = 8 + NONCE_LEN;

impl EpochTicketer {
    pub fn new(secret: [u8; 32], rotate_s: u64) -> EpochTicketer {
        EpochTicketer {
            secret,
            rotate_s: rotate_s.max(1),
            keys: Mutex::new(None),
        }
    }

    fn derive(&self, epoch: u64) -> Option<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, b"ringway session tickets v1").extract(&self.secret);
        let epoch_bytes = epoch.to_be_bytes();
        let info: [&[u8]; 1] = [&epoch_bytes];
        let okm = prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    fn now_epoch(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now / self.rotate_s
    }

    /// Runs `f` with the keys of the current epoch (re-derived when the epoch moved on).
    fn with_keys<T>(&self, f: impl FnOnce(&EpochKeys) -> Option<T>) -> Option<T> {
        let epoch = self.now_epoch();
        let mut guard = self.keys.lock().ok()?;
        if guard.as_ref().is_none_or(|k| k.epoch != epoch) {
            *guard = Some(EpochKeys {
                epoch,
                current: self.derive(epoch)?,
                previous: self.derive(epoch.wrapping_sub(1))?,
            });
        }
        f(guard.as_ref()?)
    }

    fn seal(&self, epoch: u64, key: &LessSafeKey, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let epoch_bytes = epoch.to_be_bytes();
        let mut out = Vec::with_capacity(TICKET_HEADER + plain.len() + 16);
        out.extend_from_slice(&epoch_bytes);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&epoch_bytes),
            &mut body,
        )
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }
}

impl ProducesTickets for EpochTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.rotate_s).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.with_keys(|k| self.seal(k.epoch, &k.current, plain))
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let epoch_bytes: [u8; 8] = cipher.get(..8)?.try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = cipher.get(8..TICKET_HEADER)?.try_into().ok()?;
        let sealed = cipher.get(TICKET_HEADER..)?;
        let epoch = u64::from_be_bytes(epoch_bytes);
        self.with_keys(|k| {
            let key = if epoch == k.epoch {
                &k.current
            } else if epoch == k.epoch.wrapping_sub(1) {
                &k.previous
            } else {
                return None;
            };
            let mut body = sealed.to_vec();
            let plain = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&epoch_bytes),
                    &mut body,
                )
                .ok()?;
            Some(plain.to_vec())
        })
    }
}

/// One shard's session cache (session IDs, TLS 1.3 stateful tickets): bounded, oldest evicted,
/// touched only by its shard (the mutex is never contended). Sessions this shard creates are also
/// queued in an outbox; the shard sends them (by message, through the control thread) to the
/// other shards, which add them to their own caches, so a session ID also resumes on the shard
/// the kernel hands the client's next connection to. Best effort: a full queue drops copies.
pub struct ShardSessionCache {
    inner: Mutex<SessionInner>,
    cap: usize,
}

#[derive(Default)]
struct SessionInner {
    map: HashMap<Vec<u8>, Vec<u8>>,
    order: std::collections::VecDeque<Vec<u8>>,
    outbox: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Sessions waiting to be copied to the other shards, at most.
const OUTBOX_MAX: usize = 4096;

impl std::fmt::Debug for ShardSessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSessionCache")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl ShardSessionCache {
    pub fn new(cap: usize) -> Arc<ShardSessionCache> {
        Arc::new(ShardSessionCache {
            inner: Mutex::new(SessionInner::default()),
            cap: cap.max(1),
        })
    }

    fn insert(inner: &mut SessionInner, cap: usize, key: Vec<u8>, value: Vec<u8>) {
        if inner.map.insert(key.clone(), value).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > cap {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Sessions this cache holds at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// A session another shard created.
    pub fn insert_replica(&self, key: Vec<u8>, value: Vec<u8>) {
        if let Ok(mut inner) = self.inner.lock() {
            Self::insert(&mut inner, self.cap, key, value);
        }
    }

    /// Sessions created here since the last call, for the other shards.
    pub fn drain_outbox(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner
            .lock()
            .map(|mut inner| std::mem::take(&mut inner.outbox))
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StoresServerSessions for ShardSessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.outbox.len() < OUTBOX_MAX {
            inner.outbox.push((key.clone(), value.clone()));
        }
        Self::insert(&mut inner, self.cap, key, value);
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.lock().ok()?.map.get(key).cloned()
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        // Single use on this shard; copies on other shards may still resume once each (early
        // data is never accepted, so a resumption is always a fresh key exchange).
        self.inner.lock().ok()?.map.remove(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The process's ticket secret when no `ticket_key_file` is set: random, made once, read by
/// every shard.
fn process_secret() -> [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        if SystemRandom::new().fill(&mut s).is_err() {
            // The kernel's RNG failed: tickets still work within this process, keyed by time.
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            s[..16].copy_from_slice(&t.to_le_bytes());
        }
        s
    })
}

fn file_secret(path: &Path) -> Result<[u8; 32], TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|e| TlsSetupError::TicketKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if bytes.len() < 32 {
        return Err(TlsSetupError::TicketKey {
            path: path.to_path_buf(),
            reason: "holds fewer than 32 bytes".into(),
        });
    }
    // Whatever the file's length, condense it to one key-derivation secret.
    let prk = Salt::new(HKDF_SHA256, b"ringway ticket key file").extract(&bytes);
    let info: [&[u8]; 1] = [b"secret"];
    let mut out = [0u8; 32];
    prk.expand(&info, HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| TlsSetupError::TicketKey {
            path: path.to_path_buf(),
            reason: "key derivation failed".into(),
        })?;
    Ok(out)
}

/// One shard's rustls configuration for a listener: its own certificate copies, its own
/// bounded session cache (returned too, for replication) and its own ticketer instance
/// (sharing only the derived keys' secret).
///
/// `keep_cache`: the session cache this shard used for the listener before a reload. Reusing it
/// keeps session-ID resumption working across reloads (tickets survive on their own: their keys
/// derive from the same secret); it is replaced when its size setting changed.
pub fn shard_server_config(
    t: &TlsListener,
    keep_cache: Option<Arc<ShardSessionCache>>,
) -> Result<(Arc<ServerConfig>, Option<Arc<ShardSessionCache>>), TlsSetupError> {
    let mut keys = Vec::with_capacity(t.certificates.len());
    let mut names = Vec::with_capacity(t.certificates.len());
    for c in &t.certificates {
        let loaded = load_certified_key(&c.cert, &c.key)?;
        keys.push(Arc::new(loaded.key));
        // The file's `names`, else the SANs of the certificate just read (tls::resolve put the
        // same into `c.names`, but a config that skipped it must not lose its names).
        names.push(if c.names_given {
            c.names.clone()
        } else {
            loaded.names
        });
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match t.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            keys,
            selector: CertSelector::new(&names, t.default_cert),
        }));
    config.alpn_protocols = t.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let cache = (t.session_cache > 0).then(|| match keep_cache {
        Some(c) if c.capacity() == t.session_cache as usize => c,
        _ => ShardSessionCache::new(t.session_cache as usize),
    });
    config.session_storage = match &cache {
        Some(c) => c.clone(),
        None => Arc::new(NoServerSessionStorage {}),
    };
    if t.tickets {
        let secret = match &t.ticket_key_file {
            Some(path) => file_secret(path)?,
            None => process_secret(),
        };
        config.ticketer = Arc::new(EpochTicketer::new(secret, t.ticket_rotate.as_secs()));
    }
    Ok((Arc::new(config), cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel() -> CertSelector {
        CertSelector::new(
            &[
                vec!["a.example.com".into()],
                vec!["*.example.com".into(), "example.com".into()],
                vec!["b.example.com".into(), "*.b.example.com".into()],
            ],
            1,
        )
    }

    #[test]
    fn exact_beats_wildcard_beats_default() {
        let s = sel();
        assert_eq!(s.select(Some("a.example.com")), 0);
        assert_eq!(s.select(Some("A.Example.COM.")), 0);
        assert_eq!(s.select(Some("c.example.com")), 1);
        assert_eq!(s.select(Some("example.com")), 1);
        assert_eq!(s.select(Some("b.example.com")), 2);
        assert_eq!(s.select(Some("x.b.example.com")), 2);
        // A wildcard covers one label only.
        assert_eq!(s.select(Some("x.y.a.example.com")), 1);
        assert_eq!(s.select(Some("other.org")), 1);
        assert_eq!(s.select(None), 1);
    }

    #[test]
    fn session_cache_is_bounded_and_queues_new_sessions_for_other_shards() {
        let c = ShardSessionCache::new(2);
        assert!(c.put(b"a".to_vec(), b"1".to_vec()));
        assert!(c.put(b"b".to_vec(), b"2".to_vec()));
        c.insert_replica(b"c".to_vec(), b"3".to_vec());
        assert_eq!(c.len(), 2, "oldest evicted");
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.get(b"c").as_deref(), Some(&b"3"[..]));
        // Only sessions made here go out, once.
        let out = c.drain_outbox();
        assert_eq!(out.len(), 2);
        assert!(c.drain_outbox().is_empty());
        assert_eq!(c.take(b"b").as_deref(), Some(&b"2"[..]));
        assert_eq!(c.take(b"b"), None);
    }

    #[test]
    fn tickets_round_trip_across_instances_and_reject_tampering() {
        let a = EpochTicketer::new([7; 32], 3600);
        let b = EpochTicketer::new([7; 32], 3600);
        let other = EpochTicketer::new([8; 32], 3600);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        assert_eq!(other.decrypt(&t), None);
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(b.decrypt(&bad), None);
        assert_eq!(b.decrypt(&t[..10]), None);
        assert_eq!(b.decrypt(&[]), None);
    }

    #[test]
    fn tickets_of_old_epochs_are_refused() {
        let a = EpochTicketer::new([1; 32], 3600);
        let epoch = a.now_epoch();
        let prev = a.derive(epoch - 1).unwrap();
        let old = a.derive(epoch - 2).unwrap();
        let t_prev = a.seal(epoch - 1, &prev, b"x").unwrap();
        let t_old = a.seal(epoch - 2, &old, b"x").unwrap();
        assert_eq!(a.decrypt(&t_prev).as_deref(), Some(&b"x"[..]));
        assert_eq!(a.decrypt(&t_old), None);
    }
}
