//! Owns: the route cache file, the last snapshot a provider published, kept on disk so that a
//! node started while Redis is unreachable still routes: its JSON format (documented in
//! docs/fleet.md), its checks on load, and the atomic write (temp file, fsync, rename, fsync of
//! the directory).
//! Must not: talk to Redis or decide when to write; the provider calls it.

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schema::{HostPattern, ROUTES_MAX, Route, SERVERS_PER_ROUTE_MAX};
use super::snapshot::RouteSnapshot;

/// The `format` field: tells a cache file from any other JSON.
pub const CACHE_FORMAT: &str = "ringway-redis-routes";
/// The `version` field; a reader refuses versions it does not know.
pub const CACHE_VERSION: u32 = 1;
/// Largest cache file read or written. 100,000 routes of three servers take about 10 MiB;
/// 256 MiB leaves room for long server lists without letting a corrupt file exhaust memory.
pub const CACHE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Which Redis the cached routes came from. A cache of another Redis, database or prefix is
/// refused on load: after repointing a node, old routes from elsewhere must not come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSource {
    /// The configured address (it never holds a password: the config refuses that).
    pub address: String,
    pub db: u32,
    pub key_prefix: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    format: String,
    version: u32,
    written_unix_ms: u64,
    source: CacheSource,
    routes: Vec<CachedRoute>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedRoute {
    host: String,
    id: String,
    servers: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: larger than {CACHE_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not a route cache: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: written for {found_address} db {found_db} prefix `{found_prefix}`, not this provider's Redis; ignored"
    )]
    OtherSource {
        path: PathBuf,
        found_address: String,
        found_db: u32,
        found_prefix: String,
    },
}

impl CacheError {
    /// Whether trying again later may succeed (a disk error may pass, a bad file will not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CacheError::Io { .. })
    }
}

/// The file's bytes for `snapshot`: routes only (skipped keys are Redis's to report).
pub fn encode(snapshot: &RouteSnapshot, source: &CacheSource, now_unix_ms: u64) -> Vec<u8> {
    let file = CacheFile {
        format: CACHE_FORMAT.to_owned(),
        version: CACHE_VERSION,
        written_unix_ms: now_unix_ms,
        source: source.clone(),
        routes: snapshot
            .routes
            .values()
            .map(|r| CachedRoute {
                host: r.host.to_string(),
                id: r.id.clone(),
                servers: r.servers.clone(),
            })
            .collect(),
    };
    // Serializing owned strings and socket addresses cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Parses and checks a cache file's bytes: every route is held to the same rules as a Redis
/// entry, so a hand-edited or corrupt file is refused whole rather than half-applied.
pub fn decode(
    path: &Path,
    bytes: &[u8],
    source: &CacheSource,
) -> Result<RouteSnapshot, CacheError> {
    let invalid = |reason: String| CacheError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file: CacheFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if file.format != CACHE_FORMAT {
        return Err(invalid(format!("format is `{}`", file.format)));
    }
    if file.version != CACHE_VERSION {
        return Err(invalid(format!(
            "version {} (this build reads {CACHE_VERSION})",
            file.version
        )));
    }
    if file.source != *source {
        return Err(CacheError::OtherSource {
            path: path.to_path_buf(),
            found_address: file.source.address,
            found_db: file.source.db,
            found_prefix: file.source.key_prefix,
        });
    }
    if file.routes.len() > ROUTES_MAX {
        return Err(invalid(format!("more than {ROUTES_MAX} routes")));
    }
    let mut snapshot = RouteSnapshot::default();
    for cached in file.routes {
        let host = HostPattern::parse(cached.host.as_bytes())
            .map_err(|e| invalid(format!("host `{}`: {e}", cached.host)))?;
        if cached.servers.is_empty() || cached.servers.len() > SERVERS_PER_ROUTE_MAX {
            return Err(invalid(format!(
                "host `{}`: {} servers",
                cached.host,
                cached.servers.len()
            )));
        }
        let route = Route {
            host: host.clone(),
            id: cached.id,
            servers: cached.servers,
        };
        if snapshot.routes.insert(host, route).is_some() {
            return Err(invalid(format!("host `{}` twice", cached.host)));
        }
    }
    Ok(snapshot)
}

/// Reads the cache file; `Ok(None)` when there is none yet.
pub fn load(path: &Path, source: &CacheSource) -> Result<Option<RouteSnapshot>, CacheError> {
    let io_err = |source: io::Error| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(CACHE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > CACHE_BYTES_MAX {
        return Err(CacheError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    decode(path, &bytes, source).map(Some)
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the new one,
/// never a mix: write a temporary file beside it, fsync it, rename it over `path`, fsync the
/// directory so the rename itself survives a power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let io_err = |source: io::Error| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    if bytes.len() as u64 > CACHE_BYTES_MAX {
        return Err(CacheError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the cache path names no file",
        )));
    };
    // One writer per process writes this file; the pid keeps two processes sharing a directory
    // by mistake from clobbering each other's temporary file.
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::snapshot::KeyRead;

    fn source() -> CacheSource {
        CacheSource {
            address: "redis://127.0.0.1:6379".into(),
            db: 0,
            key_prefix: String::new(),
        }
    }

    fn sample() -> RouteSnapshot {
        let mut s = RouteSnapshot::default();
        for (key, items) in [
            (
                &b"frontend:www.example.com"[..],
                &[
                    &b"mysite"[..],
                    b"http://127.0.0.1:8001",
                    b"http://[::1]:8002",
                ][..],
            ),
            (b"frontend:*.example.com", &[b"wild", b"http://10.0.0.1"]),
            (b"frontend:*", &[b"all", b"http://10.0.0.2:81"]),
            (b"frontend:bad", &[b"only-id"]),
        ] {
            s.apply(
                b"",
                key,
                KeyRead::List(items.iter().map(|v| v.to_vec()).collect()),
            );
        }
        s
    }

    #[test]
    fn round_trip_keeps_routes_and_drops_skips() {
        let snap = sample();
        let bytes = encode(&snap, &source(), 1_700_000_000_000);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains("\"format\": \"ringway-redis-routes\""),
            "{text}"
        );
        assert!(text.contains("\"[::1]:8002\""), "{text}");
        let back = decode(Path::new("c.json"), &bytes, &source()).unwrap();
        assert_eq!(back.routes, snap.routes);
        assert!(back.skipped.is_empty());
    }

    #[test]
    fn other_source_and_bad_files_are_refused() {
        let bytes = encode(&sample(), &source(), 1);
        let other = CacheSource { db: 3, ..source() };
        assert!(matches!(
            decode(Path::new("c"), &bytes, &other),
            Err(CacheError::OtherSource { found_db: 0, .. })
        ));
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"format":"x","version":1,"written_unix_ms":0,"source":{"address":"redis://127.0.0.1:6379","db":0,"key_prefix":""},"routes":[]}"#,
            br#"{"format":"ringway-redis-routes","version":2,"written_unix_ms":0,"source":{"address":"redis://127.0.0.1:6379","db":0,"key_prefix":""},"routes":[]}"#,
            br#"{"format":"ringway-redis-routes","version":1,"written_unix_ms":0,"source":{"address":"redis://127.0.0.1:6379","db":0,"key_prefix":""},"routes":[{"host":"A.example","id":"","servers":["10.0.0.1:80"]}]}"#,
            br#"{"format":"ringway-redis-routes","version":1,"written_unix_ms":0,"source":{"address":"redis://127.0.0.1:6379","db":0,"key_prefix":""},"routes":[{"host":"a.example","id":"","servers":[]}]}"#,
            br#"{"format":"ringway-redis-routes","version":1,"written_unix_ms":0,"source":{"address":"redis://127.0.0.1:6379","db":0,"key_prefix":""},"routes":[{"host":"a.example","id":"","servers":["10.0.0.1:80"]},{"host":"a.example","id":"","servers":["10.0.0.1:80"]}]}"#,
        ] {
            assert!(
                matches!(
                    decode(Path::new("c"), bad, &source()),
                    Err(CacheError::Invalid { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ringway-cache-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("routes.json");
        assert!(load(&path, &source()).unwrap().is_none());
        write_atomic(&path, &encode(&sample(), &source(), 1)).unwrap();
        write_atomic(&path, &encode(&RouteSnapshot::default(), &source(), 2)).unwrap();
        assert!(load(&path, &source()).unwrap().unwrap().routes.is_empty());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["routes.json"]);
        let missing_dir = dir.join("missing").join("routes.json");
        let err = write_atomic(&missing_dir, b"{}").unwrap_err();
        assert!(err.is_retryable());
        fs::remove_dir_all(&dir).unwrap();
    }
}
