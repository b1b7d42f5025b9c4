//! Owns: turning a validated [`Config`] into what each shard runs — per-shard copies of every
//! backend and listener with stable ids from the [`Registry`] (so a reload finds the same ids for
//! the same names), this shard's TLS configurations (own session caches) and its listening
//! sockets — as a list of [`ShardOp`]s. Boot is the plan from nothing.
//! Must not: touch shard state; it runs on the control thread and only builds messages.

use std::os::fd::RawFd;
use std::sync::Arc;

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

/// Names to ids for the life of the process, and what the last plan was built from.
#[derive(Debug, Default)]
pub struct Planner {
    pub registry: Registry,
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
            tls_generation: u32::from(b.tls.is_some()),
        })
    }

    /// One shard's copy of listener `l`.
    pub fn listener(
        &mut self,
        config: &Config,
        l: &config::Listener,
    ) -> Result<ListenerCfg, PlanError> {
        let ids = self.backend_ids(config);
        let id_of = |i: Option<usize>| i.and_then(|i| ids.get(i).copied().flatten());
        let timeouts = TimeoutsMs::from_config(&config.timeouts);
        let http = l.http.as_ref().map(|h| H1Cfg {
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
        let tls =
            match &l.tls {
                Some(t) => {
                    let (server_config, cache) = crate::tls::server::shard_server_config(t)
                        .map_err(|source| PlanError::Tls {
                            what: format!("listener `{}`", l.name),
                            source,
                        })?;
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
        Ok(ListenerCfg {
            id: self.registry.listener(&l.name),
            name: l.name.clone(),
            bind: l.bind,
            http,
            http_accept_proxy: l.http.as_ref().is_some_and(|h| h.accept_proxy) && l.tls.is_none(),
            tcp,
            tls,
            detect,
            access_log,
            access_log_format,
        })
    }

    /// Everything `config` needs on one shard, from nothing: `fds` are this shard's listening
    /// sockets, by listener index in `config`.
    pub fn boot(
        &mut self,
        config: &Config,
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
                cfg: Arc::new(self.listener(config, l)?),
                fd: Some(fd),
            });
        }
        Ok(ops)
    }
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
        let ops = p.boot(&cfg, &[(0, -1)]).unwrap();
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
        let again = p.boot(&cfg, &[]).unwrap();
        assert!(
            again
                .iter()
                .any(|o| matches!(o, ShardOp::PutBackend(b) if b.id == api))
        );
    }
}
