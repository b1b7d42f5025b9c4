//! Owns: turning a validated [`Config`] into what each shard runs — per-shard copies of every
//! backend and listener with stable ids from the [`Registry`] (so a reload finds the same ids for
//! the same names), this shard's TLS configurations (own session caches) and its listening
//! sockets — as a list of [`ShardOp`]s. Boot is the plan from nothing.
//! Must not: touch shard state; it runs on the control thread and only builds messages.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::config::diff::{Change, ConfigDiff};
use crate::config::{self, Config, Mode};
use crate::ids::{BackendId, Registry};
use crate::session::TimeoutsMs;
use crate::session::h1::H1Cfg;
use crate::session::tcp::{Routes, TcpCfg};
use crate::shard::ShardOp;
use crate::shard::listener::{DetectCfg, ListenerCfg, TlsListenerCfg};
use crate::upstream::{BackendCfg, ServerCfg, UpstreamTlsCfg};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("TLS on {what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: crate::tls::server::TlsSetupError,
    },
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Names to ids for the life of the process, and what carries over from one plan to the next:
/// each shard's TLS session cache per listener (so session IDs resume across reloads) and the
/// generation of each backend's TLS settings (part of the pool's reuse key).
#[derive(Default)]
pub struct Planner {
    pub registry: Registry,
    tls_caches: HashMap<(String, usize), Arc<crate::tls::server::ShardSessionCache>>,
    tls_generations: HashMap<String, (config::UpstreamTls, u32)>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Planner {
    pub fn new() -> Planner {
        Planner::default()
    }

    /// Every backend id of `config`, in file order (router indices map through this).
    fn backend_ids(&mut self, config: &Config) -> Vec<Option<BackendId>> {
        config
            .backends
            .iter()
            .map(|b| Some(self.registry.backend(&b.name)))
            .collect()
    }

    /// 0 without TLS; a number that changes whenever the backend's TLS settings do.
    fn tls_generation(&mut self, b: &config::Backend) -> u32 {
        let Some(t) = &b.tls else {
            self.tls_generations.remove(&b.name);
            return 0;
        };
        let next = self
            .tls_generations
            .values()
            .map(|(_, g)| *g)
            .max()
            .unwrap_or(0)
            + 1;
        match self.tls_generations.get(&b.name) {
            Some((same, g)) if same == t => *g,
            _ => {
                self.tls_generations
                    .insert(b.name.clone(), (t.clone(), next));
                next
            }
        }
    }

    /// One shard's copy of backend `b`.
    pub fn backend(&mut self, b: &config::Backend) -> Result<BackendCfg, PlanError> {
        let id = self.registry.backend(&b.name);
        let tls = match &b.tls {
            Some(t) => Some(UpstreamTlsCfg {
                config: crate::tls::upstream::shard_client_config(t).map_err(|source| {
                    PlanError::Tls {
                        what: format!("backend {}", b.name),
                        source,
                    }
                })?,
                sni: t.sni.clone(),
            }),
            None => None,
        };
        Ok(BackendCfg {
            id,
            name: b.name.clone(),
            servers: b
                .servers
                .iter()
                .map(|s| ServerCfg {
                    id: self.registry.server(id, &s.name),
                    name: s.name.clone(),
                    address: s.address,
                    weight: s.weight,
                    backup: s.backup,
                    maxconn: s.maxconn,
                    send_proxy: s.send_proxy,
                    admin: s.admin,
                })
                .collect(),
            balance: b.balance,
            hash_key: b.hash_key.clone(),
            retries: b.retries,
            redispatch: b.redispatch,
            sticky_cookie: b.sticky_cookie.clone(),
            queue_max: b.queue_max,
            queue_timeout_ms: ms(b.queue_timeout),
            idle_conns_max: b.idle_conns_max,
            idle_timeout_ms: ms(b.idle_timeout),
            passive_failures: b.passive.map_or(0, |p| p.failures),
            tls,
            tls_generation: self.tls_generation(b),
        })
    }

    /// Shard `shard`'s copy of listener `l`.
    pub fn listener(
        &mut self,
        config: &Config,
        l: &config::Listener,
        shard: usize,
    ) -> Result<ListenerCfg, PlanError> {
        let ids = self.backend_ids(config);
        let id_of = |i: Option<usize>| i.and_then(|i| ids.get(i).copied().flatten());
        let timeouts = TimeoutsMs::from_config(&config.timeouts);
        let listener_id = self.registry.listener(&l.name);
        let http = l.http.as_ref().map(|h| H1Cfg {
            listener: listener_id,
            routes: Routes {
                router: h.router.clone(),
                ids: ids.clone(),
            },
            x_forwarded_for: h.x_forwarded_for,
            x_real_ip: h.x_real_ip,
            x_forwarded_proto: h.x_forwarded_proto,
            forwarded: h.forwarded,
            head_bytes_max: h.head_bytes_max,
            body_bytes_max: h.body_bytes_max,
            splice: l.splice,
            access_log: h.access_log != config::AccessLog::Off,
            timeouts,
            draining: false,
        });
        let tcp_base = TcpCfg {
            backend: None,
            sni: None,
            accept_proxy: false,
            peek_ms: ms(l.peek_timeout),
            splice: l.splice,
            connect_ms: timeouts.connect,
            client_idle_ms: timeouts.client_idle,
            server_idle_ms: timeouts.server_idle,
        };
        let tcp = match l.mode {
            Mode::Tcp => Some(TcpCfg {
                backend: id_of(l.backend),
                sni: l.sni.as_ref().map(|s| Routes {
                    router: s.router.clone(),
                    ids: ids.clone(),
                }),
                // Behind TLS termination the transport reads the PROXY header first.
                accept_proxy: l.accept_proxy && l.tls.is_none(),
                ..tcp_base
            }),
            Mode::Detect => Some(tcp_base),
            Mode::Http => None,
        };
        let tls = match &l.tls {
            Some(t) => {
                let key = (l.name.clone(), shard);
                let keep = self.tls_caches.get(&key).cloned();
                let (server_config, cache) = crate::tls::server::shard_server_config(t, keep)
                    .map_err(|source| PlanError::Tls {
                        what: format!("listener `{}`", l.name),
                        source,
                    })?;
                match &cache {
                    Some(c) => {
                        self.tls_caches.insert(key, Arc::clone(c));
                    }
                    None => {
                        self.tls_caches.remove(&key);
                    }
                }
                Some(TlsListenerCfg {
                    config: server_config,
                    cache,
                    handshake_ms: ms(t.handshake_timeout),
                    accept_proxy: l.accept_proxy,
                })
            }
            None => None,
        };
        let detect = l.detect.as_ref().map(|d| DetectCfg {
            tls_backend: id_of(d.tls_backend),
            tcp_backend: id_of(d.tcp_backend),
            peek_ms: ms(l.peek_timeout),
        });
        let (access_log, access_log_format) = l.http.as_ref().map_or(
            (config::AccessLog::Off, config::AccessLogFormat::Combined),
            |h| (h.access_log.clone(), h.access_log_format),
        );
        let h2 = match (&http, &l.http) {
            (Some(h1), Some(h)) if h.http2 => Some(crate::session::h2::H2ListenerCfg::new(
                h1,
                h.head_bytes_max,
                h.http2_streams_max,
            )),
            _ => None,
        };
        Ok(ListenerCfg {
            id: listener_id,
            name: l.name.clone(),
            bind: l.bind,
            http,
            h2,
            http_accept_proxy: l.http.as_ref().is_some_and(|h| h.accept_proxy) && l.tls.is_none(),
            tcp,
            tls,
            detect,
            access_log,
            access_log_format,
        })
    }

    /// Everything `config` needs on shard `shard`, from nothing: `fds` are this shard's listening
    /// sockets, by listener index in `config`.
    pub fn boot(
        &mut self,
        config: &Config,
        shard: usize,
        fds: &[(usize, RawFd)],
    ) -> Result<Vec<ShardOp>, PlanError> {
        let mut ops = vec![ShardOp::SetTimeouts(TimeoutsMs::from_config(
            &config.timeouts,
        ))];
        for b in &config.backends {
            ops.push(ShardOp::PutBackend(Box::new(self.backend(b)?)));
        }
        for &(index, fd) in fds {
            let Some(l) = config.listeners.get(index) else {
                continue;
            };
            ops.push(ShardOp::PutListener {
                cfg: Arc::new(self.listener(config, l, shard)?),
                fd: Some(fd),
            });
        }
        Ok(ops)
    }

    /// Forgets the names `diff` removes, before the reload's plans are built: a listener whose
    /// bind changed (removed then added), or a backend or server that comes back later, is a new
    /// one with fresh state.
    pub fn forget_removed(&mut self, old: &Config, diff: &ConfigDiff) {
        for c in &diff.changes {
            match c {
                Change::ListenerRemoved(name) => {
                    self.registry.forget_listener(name);
                    self.tls_caches.retain(|(l, _), _| l != name);
                }
                Change::BackendRemoved(name) => {
                    self.registry.forget_backend(name);
                    self.tls_generations.remove(name);
                }
                Change::ServerRemoved { backend, server } => {
                    if let Some(b) = self.registry.find_backend(backend)
                        && old.backends.iter().any(|x| &x.name == backend)
                    {
                        self.registry.forget_server(b, server);
                    }
                }
                _ => {}
            }
        }
    }

    /// What shard `shard` must do to go from `old` to `new` (`diff` = diff(old, new), after
    /// `forget_removed`): listeners removed first, backends added or changed, every listener put
    /// again (routes map to backend ids through the new file order; TLS session caches carry
    /// over), listeners added with this shard's new socket (`new_fds`, by listener name), and
    /// removed backends last, once nothing routes to them.
    pub fn reload(
        &mut self,
        old_ids: &ReloadIds,
        new: &Config,
        diff: &ConfigDiff,
        shard: usize,
        new_fds: &HashMap<String, RawFd>,
    ) -> Result<Vec<ShardOp>, PlanError> {
        let mut ops = vec![ShardOp::SetTimeouts(TimeoutsMs::from_config(&new.timeouts))];
        for c in &diff.changes {
            if let Change::ListenerRemoved(name) = c
                && let Some(&id) = old_ids.listeners.get(name)
            {
                ops.push(ShardOp::RemoveListener(id));
            }
        }
        let mut touched: Vec<&str> = Vec::new();
        for c in &diff.changes {
            let name = match c {
                Change::BackendAdded(n) | Change::BackendChanged { name: n, .. } => n.as_str(),
                Change::ServerAdded { backend, .. }
                | Change::ServerRemoved { backend, .. }
                | Change::ServerChanged { backend, .. } => backend.as_str(),
                _ => continue,
            };
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        for b in new
            .backends
            .iter()
            .filter(|b| touched.contains(&b.name.as_str()))
        {
            ops.push(ShardOp::PutBackend(Box::new(self.backend(b)?)));
        }
        for l in &new.listeners {
            let added = diff
                .changes
                .iter()
                .any(|c| matches!(c, Change::ListenerAdded(n) if n == &l.name));
            let fd = match added {
                true => match new_fds.get(&l.name) {
                    Some(&fd) => Some(fd),
                    None => continue,
                },
                false => None,
            };
            ops.push(ShardOp::PutListener {
                cfg: Arc::new(self.listener(new, l, shard)?),
                fd,
            });
        }
        for c in &diff.changes {
            if let Change::BackendRemoved(name) = c
                && let Some(&id) = old_ids.backends.get(name)
            {
                ops.push(ShardOp::RemoveBackend(id));
            }
        }
        Ok(ops)
    }

    /// The ids of `config`'s listeners and backends now (taken before `forget_removed`).
    pub fn ids(&self, config: &Config) -> ReloadIds {
        ReloadIds {
            listeners: config
                .listeners
                .iter()
                .filter_map(|l| Some((l.name.clone(), self.registry.find_listener(&l.name)?)))
                .collect(),
            backends: config
                .backends
                .iter()
                .filter_map(|b| Some((b.name.clone(), self.registry.find_backend(&b.name)?)))
                .collect(),
        }
    }
}

/// Ids by name of the configuration being replaced (what removals refer to).
#[derive(Debug, Default, Clone)]
pub struct ReloadIds {
    pub listeners: HashMap<String, crate::ids::ListenerId>,
    pub backends: HashMap<String, BackendId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_plan_has_every_backend_and_listener_with_stable_ids() {
        let cfg = config::load_str(
            r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
mode = "http"
backend = "app"

[[listener.route]]
path_prefix = "/api/"
backend = "api"

[[backend]]
name = "app"
servers = [ { address = "127.0.0.1:9001" }, { address = "127.0.0.1:9002", name = "b" } ]

[[backend]]
name = "api"
servers = [ { address = "127.0.0.1:9003" } ]
"#,
            "t.toml",
        )
        .unwrap();
        let mut p = Planner::new();
        let ops = p.boot(&cfg, 0, &[(0, -1)]).unwrap();
        let backends: Vec<&BackendCfg> = ops
            .iter()
            .filter_map(|o| match o {
                ShardOp::PutBackend(b) => Some(&**b),
                _ => None,
            })
            .collect();
        assert_eq!(backends.len(), 2);
        let app = p.registry.find_backend("app").unwrap();
        let api = p.registry.find_backend("api").unwrap();
        assert_eq!(backends[0].id, app);
        assert_eq!(backends[0].servers[1].name, "b");
        let listener = ops.iter().find_map(|o| match o {
            ShardOp::PutListener { cfg, .. } => Some(cfg),
            _ => None,
        });
        let http = listener.and_then(|l| l.http.as_ref()).unwrap();
        assert_eq!(http.routes.ids, vec![Some(app), Some(api)]);
        // A second plan from the same names gets the same ids.
        let again = p.boot(&cfg, 0, &[]).unwrap();
        assert!(
            again
                .iter()
                .any(|o| matches!(o, ShardOp::PutBackend(b) if b.id == api))
        );
    }
}
