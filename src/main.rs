//! Owns: the command line (`run`, `check`, `demo`, `reload`, `upgrade`, `tune`), logging setup
//! and exit codes.
//! Must not: contain proxy logic; it calls `config`, `control` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringway::config::{self, Config};

/// Exit codes: 0 ok, 1 bad configuration, 2 the environment prevented startup.
const EXIT_CONFIG: u8 = 1;
const EXIT_ENVIRONMENT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ringway",
    version,
    about = "io_uring thread-per-core load balancer and reverse proxy"
)]
struct Cli {
    /// error, warn, info, debug or trace (RUST_LOG, if set, takes precedence).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Keep running as root when `[global] user` is not set (not recommended).
        #[arg(long, env = "RINGWAY_ALLOW_ROOT", value_parser = clap::builder::BoolishValueParser::new())]
        allow_root: bool,
        /// Take the listening sockets from the running ringway whose upgrade socket this is,
        /// then tell it to drain (what `ringway upgrade` and SIGUSR2 start; see docs/upgrade.md).
        #[arg(long, value_name = "SOCKET")]
        upgrade_from: Option<PathBuf>,
    },
    /// Validate a configuration file, print a summary and exit 0 (valid) or 1.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start ringway on the shipped demo config with two demo backends on loopback.
    Demo,
    /// Ask a running ringway (through its admin listener) to reload its configuration: validate,
    /// apply what changed, keep the running configuration when the file is bad. Exit 0 when
    /// applied, 1 when refused, 2 when ringway cannot be reached.
    Reload {
        /// The file to load (default: the one ringway was started with). Its `[admin]` table
        /// says where ringway listens (the unix socket first) and where the token is.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The admin listener, when no FILE says it: `IP:PORT` or `unix:/path`.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9900")]
        admin: String,
        /// The bearer token file, when no FILE says it (TCP only).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Ask a running ringway (through its admin listener) to upgrade to a new binary without
    /// dropping a connection: it starts the new binary, hands it every listening socket, and
    /// drains once the new one serves (docs/upgrade.md). Prints the new pid. Exit 0 when the new
    /// process took over, 1 when the upgrade failed (the running one keeps serving), 2 when
    /// ringway cannot be reached.
    Upgrade {
        /// The file the new process runs (default: the one ringway was started with). Its
        /// `[admin]` says where ringway listens.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The binary to start (default: the file ringway was started from, which now holds the
        /// new version).
        #[arg(long, value_name = "PATH")]
        bin: Option<PathBuf>,
        /// The admin listener, when no FILE says it: `IP:PORT` or `unix:/path`.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9900")]
        admin: String,
        /// The bearer token file, when no FILE says it (TCP only).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Kernel and system checks for running ringway (see tuning/GUIDE.md).
    Tune {
        #[command(subcommand)]
        action: TuneAction,
    },
}

#[derive(Subcommand)]
enum TuneAction {
    /// Read live kernel settings, limits and the config; print setting, current, recommended,
    /// status and fix. Exit 0 when nothing is bad, 3 otherwise (1: bad config).
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Machine-readable output: a JSON array of verdicts.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Socket activation first, while this is the only thread: taking the sockets unsets
    // LISTEN_*, which is only sound single-threaded (and keeps them from a successor's env).
    let systemd = ringway::sd_listen::listen_fds(true);
    // Where we were started from, while the path still names this binary (after an upgrade
    // replaced the file it names the new one; /proc/self/exe would keep naming this one).
    let exe = std::env::current_exe();
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Check { config } => match ringway::load_config(&config) {
            Ok(c) => {
                print!("{}", summary(&config.display().to_string(), &c));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run {
            config,
            allow_root,
            upgrade_from,
        } => match ringway::load_config(&config) {
            Ok(c) => {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 && c.global.user.is_none() && !allow_root {
                    eprintln!(
                        "error: refusing to run as root: set [global] user = \"...\" (ringway binds as root, then switches to that user), or pass --allow-root / RINGWAY_ALLOW_ROOT=1 to keep root"
                    );
                    return ExitCode::from(EXIT_ENVIRONMENT);
                }
                let systemd = match systemd {
                    Ok(fds) => fds,
                    Err(e) => {
                        eprintln!("error: socket activation: {e}");
                        return ExitCode::from(EXIT_ENVIRONMENT);
                    }
                };
                let relaunch = match exe {
                    Ok(program) => Some(ringway::takeover::Relaunch {
                        program,
                        global_args: vec!["--log-level".into(), cli.log_level.clone().into()],
                        config: std::fs::canonicalize(&config).unwrap_or_else(|_| config.clone()),
                        allow_root,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot tell which binary this is; binary upgrades are off");
                        None
                    }
                };
                let start = ringway::control::Start {
                    systemd,
                    upgrade_from,
                    relaunch,
                };
                run(c, config, start)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Tune {
            action: TuneAction::Check { config, json },
        } => {
            let cfg = match config.as_deref().map(ringway::load_config).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let verdicts = ringway::tune::evaluate(&ringway::tune::gather(cfg.as_ref()));
            if json {
                println!("{}", ringway::tune::render_json(&verdicts));
            } else {
                print!("{}", ringway::tune::render_table(&verdicts));
            }
            ExitCode::from(ringway::tune::exit_code(&verdicts))
        }
        Command::Reload {
            config,
            admin,
            token_file,
        } => reload(config, &admin, token_file),
        Command::Upgrade {
            config,
            bin,
            admin,
            token_file,
        } => upgrade(config, bin, &admin, token_file),
        Command::Demo => {
            let (c, path) = match ringway::demo::config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Err(e) = ringway::demo::start_backends(&c) {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_ENVIRONMENT);
            }
            print!("{}", ringway::demo::banner(&c, &path));
            run(c, path, ringway::control::Start::default())
        }
    }
}

/// Where to reach ringway and the absolute path of `config`: the file's own `[admin]` (its
/// socket first, else its TCP address and token), read even from a file that is otherwise
/// invalid (the running ringway is the one that reports what is wrong with it), else `admin`
/// and `token_file`.
fn target_of(
    config: Option<PathBuf>,
    admin: &str,
    token_file: Option<PathBuf>,
) -> Result<(ringway::admin::Target, Option<PathBuf>), ExitCode> {
    let path = config.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    match path
        .as_deref()
        .and_then(ringway::admin::Target::from_file)
        .map(Ok)
        .unwrap_or_else(|| ringway::admin::Target::parse(admin, token_file.as_deref()))
    {
        Ok(t) => Ok((t, path)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn reload(config: Option<PathBuf>, admin: &str, token_file: Option<PathBuf>) -> ExitCode {
    let (target, path) = match target_of(config, admin, token_file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let body = match &path {
        Some(p) => serde_json::json!({ "config": p }).to_string(),
        None => String::new(),
    };
    match target.request("POST", "/reload", &body) {
        Ok((200, text)) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            println!(
                "reloaded: version {}, {} change(s)",
                v["version"],
                v["changes"].as_array().map_or(0, Vec::len)
            );
            for line in v["changes"].as_array().into_iter().flatten() {
                println!("  {}", line.as_str().unwrap_or_default());
            }
            for line in v["restart_needed"].as_array().into_iter().flatten() {
                println!(
                    "  not applied (needs a restart): {}",
                    line.as_str().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Ok((status, text)) => refused(
            status,
            &text,
            "reload refused",
            "the running configuration stays",
        ),
        Err(e) => unreachable_admin(&target, &e),
    }
}

fn upgrade(
    config: Option<PathBuf>,
    bin: Option<PathBuf>,
    admin: &str,
    token_file: Option<PathBuf>,
) -> ExitCode {
    let (target, path) = match target_of(config, admin, token_file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    // Absolute, since ringway resolves it from its own working directory.
    let bin = bin.map(|b| std::fs::canonicalize(&b).unwrap_or(b));
    let mut body = serde_json::Map::new();
    if let Some(p) = &path {
        body.insert("config".into(), serde_json::json!(p));
    }
    if let Some(b) = &bin {
        body.insert("bin".into(), serde_json::json!(b));
    }
    let body = serde_json::Value::Object(body).to_string();
    match target.request("POST", "/upgrade", &body) {
        Ok((200, text)) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            println!(
                "upgraded: new pid {} serves; old pid {} drains",
                v["new_pid"], v["old_pid"]
            );
            ExitCode::SUCCESS
        }
        Ok((status, text)) => refused(
            status,
            &text,
            "upgrade failed",
            "the running ringway keeps serving",
        ),
        Err(e) => unreachable_admin(&target, &e),
    }
}

/// A refusal from the admin listener: its `error` (or the body), then what it means.
fn refused(status: u16, text: &str, what: &str, stays: &str) -> ExitCode {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    match v["error"].as_str() {
        Some(e) => eprintln!("{e}"),
        None => eprint!("{text}"),
    }
    eprintln!("{what} (HTTP {status}); {stays}");
    ExitCode::from(EXIT_CONFIG)
}

fn unreachable_admin(target: &ringway::admin::Target, e: &std::io::Error) -> ExitCode {
    eprintln!("error: cannot reach ringway's admin listener at {target}: {e}");
    ExitCode::from(EXIT_ENVIRONMENT)
}

fn run(c: Config, path: PathBuf, start: ringway::control::Start) -> ExitCode {
    match ringway::control::run_with(c, path, start) {
        Ok(s) => {
            tracing::info!(
                uptime_ms = s.uptime.as_millis() as u64,
                drain_ms = s.drained_in.as_millis() as u64,
                accepted = s.stats.accepted,
                closed = s.stats.closed,
                drain_closed = s.stats.drain_closed,
                bytes_client_to_server = s.stats.bytes_client_to_server,
                bytes_server_to_client = s.stats.bytes_server_to_client,
                connect_errors = s.stats.connect_errors,
                "ringway stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ENVIRONMENT)
        }
    }
}

fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("ringway={level},warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn summary(path: &str, c: &Config) -> String {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = format!(
        "{path}: ok\n  shards: {} ({:?})\n  admin: {}\n  timeouts: connect {:?}, client_idle {:?}, server_idle {:?}; drain {:?}\n",
        c.shard_count(online),
        c.global.shards,
        c.global
            .admin
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        c.timeouts.connect,
        c.timeouts.client_idle,
        c.timeouts.server_idle,
        c.global.drain_timeout,
    );
    let backend_name = |i: Option<usize>| {
        i.and_then(|i| c.backends.get(i))
            .map_or("none", |b| b.name.as_str())
    };
    for l in &c.listeners {
        let splice = match l.splice {
            config::SpliceMode::Auto => "auto",
            config::SpliceMode::Always => "always",
            config::SpliceMode::Off => "off",
        };
        match &l.http {
            None => out.push_str(&format!(
                "  listener {}: {} mode tcp splice {splice} -> backend {}\n",
                l.name,
                l.bind,
                backend_name(l.backend)
            )),
            Some(h) => {
                let mode = if l.detect.is_some() { "detect" } else { "http" };
                let http2 = if h.http2 { "on" } else { "off" };
                out.push_str(&format!(
                    "  listener {}: {} mode {mode} splice {splice} http2 {http2}, {} route(s), default backend {}\n",
                    l.name,
                    l.bind,
                    h.router.rules.len(),
                    backend_name(h.router.default_backend)
                ));
                if let Some(d) = &l.detect {
                    out.push_str(&format!(
                        "    detect: other protocols -> backend {}, TLS -> {}\n",
                        backend_name(d.tcp_backend),
                        if l.tls.is_some() {
                            "terminated, then HTTP".to_string()
                        } else {
                            format!("passed through to backend {}", backend_name(d.tls_backend))
                        }
                    ));
                }
                for (n, r) in h.router.rules.iter().enumerate() {
                    out.push_str(&format!(
                        "    route {}: {} -> backend {}\n",
                        n + 1,
                        describe_rule(r),
                        backend_name(Some(r.backend))
                    ));
                }
            }
        }
        if let Some(t) = &l.tls {
            for (i, cert) in t.certificates.iter().enumerate() {
                out.push_str(&format!(
                    "    tls certificate {}{}: {} for {}\n",
                    i + 1,
                    if i == t.default_cert {
                        " (default)"
                    } else {
                        ""
                    },
                    cert.cert.display(),
                    cert.names.join(", ")
                ));
            }
            out.push_str(&format!(
                "    tls: min version {:?}, alpn [{}], session cache {} per shard, tickets {}\n",
                t.min_version,
                t.alpn.join(", "),
                t.session_cache,
                if t.tickets {
                    format!("on (keys rotate every {:?})", t.ticket_rotate)
                } else {
                    "off".to_string()
                }
            ));
        }
    }
    for b in &c.backends {
        let servers: Vec<String> = b
            .servers
            .iter()
            .map(|s| format!("{} (weight {})", s.address, s.weight))
            .collect();
        out.push_str(&format!("  backend {}: {}\n", b.name, servers.join(", ")));
    }
    if let Some(p) = &c.provider {
        let names: Vec<&str> = p
            .listeners
            .iter()
            .filter_map(|&i| c.listeners.get(i).map(|l| l.name.as_str()))
            .collect();
        out.push_str(&format!(
            "  provider.redis: {} db {} prefix {:?} -> routes on {}\n",
            p.address.value,
            p.db,
            p.key_prefix,
            names.join(", ")
        ));
    }
    out
}

fn describe_rule(r: &ringway::router::Rule) -> String {
    use ringway::router::{HostMatch, PathMatch};
    let mut parts = Vec::new();
    match &r.host {
        Some(HostMatch::Exact(h)) => parts.push(format!("host {h}")),
        Some(HostMatch::Wildcard(h)) => parts.push(format!("host *.{h}")),
        Some(HostMatch::Suffix(h)) => parts.push(format!("host ending {h}")),
        None => {}
    }
    match &r.path {
        Some(PathMatch::Exact(p)) => parts.push(format!("path {p}")),
        Some(PathMatch::Prefix(p)) => parts.push(format!("path {p}*")),
        None => {}
    }
    if let Some(m) = &r.method {
        parts.push(format!("method {m}"));
    }
    for h in &r.headers {
        match &h.value {
            Some(v) => parts.push(format!("header {}: {v}", h.name)),
            None => parts.push(format!("header {}", h.name)),
        }
    }
    if parts.is_empty() {
        "any request".to_string()
    } else {
        parts.join(" and ")
    }
}
