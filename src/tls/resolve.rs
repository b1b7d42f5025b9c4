//! Owns: the second half of loading a config: reading the files a validated [`Config`] names
//! (certificate chains and keys, CA bundles, ticket key files) and refusing each one that
//! cannot be used at the `file:line:column` where its path was written; filling in each
//! certificate's server names from its SANs when the file gives none.
//! Must not: parse or re-validate the config text (config/ does, without I/O), or touch sockets.

use crate::config::{Config, Diagnostic, Located, TlsListener, UpstreamTls};

use super::server::{TlsSetupError, load_certified_key};
use super::upstream::load_roots;

/// Reads every file `config` names. Returns one diagnostic per unusable file (empty: all good);
/// the messages are those `ringway check` has always shown for these files.
pub fn read_files(config: &mut Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for l in &mut config.listeners {
        if let Some(t) = &mut l.tls {
            listener_files(t, &mut out);
        }
    }
    for b in &config.backends {
        if let Some(t) = &b.tls {
            upstream_files(t, &mut out);
        }
    }
    out
}

fn listener_files(t: &mut TlsListener, out: &mut Vec<Diagnostic>) {
    for c in &mut t.certificates {
        match load_certified_key(&c.cert, &c.key) {
            Ok(found) => {
                if !c.names_given {
                    c.names = found.names;
                }
            }
            // A key that is unreadable or does not fit is the key line's fault.
            Err(e @ TlsSetupError::Key { .. }) => out.push(c.key.diagnostic(e.to_string())),
            Err(e) => out.push(c.cert.diagnostic(e.to_string())),
        }
    }
    if let Some(f) = &t.ticket_key_file {
        ticket_key_file(f, out);
    }
}

fn ticket_key_file(f: &Located<std::path::PathBuf>, out: &mut Vec<Diagnostic>) {
    match std::fs::read(&f.value) {
        Ok(b) if b.len() >= 32 => {}
        Ok(_) => out.push(f.diagnostic(
            "ticket_key_file must hold at least 32 bytes of secret (e.g. `head -c 48 /dev/urandom > FILE`)",
        )),
        Err(e) => out.push(f.diagnostic(format!("ticket_key_file {}: {e}", f.display()))),
    }
}

fn upstream_files(t: &UpstreamTls, out: &mut Vec<Diagnostic>) {
    if !t.ca_is_system {
        if let Err(e) = load_roots(&t.ca) {
            out.push(t.ca.diagnostic(e.to_string()));
        }
    } else if t.verify && load_roots(&t.ca).is_err() {
        out.push(t.ca.diagnostic(format!(
            "[backend.tls] needs `ca` (the system bundle {} is missing or empty)",
            t.ca.display()
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Checked, check_str};

    fn errors(text: &str) -> String {
        let mut checked = check_str(text, "t.toml");
        if let Some(c) = checked.config.as_mut() {
            checked.diagnostics.extend(read_files(c));
        }
        match checked.into_result("t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const BACKEND: &str =
        "[[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n";

    #[test]
    fn missing_certificate_is_refused_at_its_path() {
        let e = errors(&format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nbackend = \"b\"\n\
             [listener.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n{BACKEND}"
        ));
        assert!(
            e.starts_with("t.toml:7:8: certificate file /nonexistent/c.pem:"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn certificate_errors_join_the_validation_errors_in_file_order() {
        let e = errors(&format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nbackend = \"b\"\n\
             [listener.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n\
             ticket_key_file = \"/nonexistent/t.key\"\nmin_version = \"1.0\"\n{BACKEND}\
             [backend.tls]\nca = \"/nonexistent/ca.pem\"\n"
        ));
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(
            lines[0].starts_with("t.toml:7:8: certificate file /nonexistent/c.pem:"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("t.toml:9:19: ticket_key_file /nonexistent/t.key:"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("t.toml:10:15: min_version `1.0` is not supported"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("t.toml:15:6: certificate file /nonexistent/ca.pem:"),
            "{e}"
        );
    }

    /// The shipped example certificates, with paths relative to examples/.
    fn example(tls: &str) -> (String, Checked) {
        let name = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/t.toml").to_string();
        let text = format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nbackend = \"b\"\n{tls}{BACKEND}"
        );
        let checked = check_str(&text, &name);
        (name, checked)
    }

    #[test]
    fn names_come_from_the_certificate_unless_given() {
        let (_, mut checked) = example(
            "[[listener.tls.certificate]]\ncert = \"certs/example.com.pem\"\nkey = \"certs/example.com.key\"\n\
             [[listener.tls.certificate]]\ncert = \"certs/wildcard.example.com.pem\"\n\
             key = \"certs/wildcard.example.com.key\"\nnames = [\"Other.Example.com\"]\n",
        );
        assert_eq!(checked.diagnostics, Vec::new());
        let Some(c) = checked.config.as_mut() else {
            panic!("no config");
        };
        assert_eq!(read_files(c), Vec::new());
        let Some(t) = &c.listeners[0].tls else {
            panic!("no tls");
        };
        assert!(!t.certificates[0].names.is_empty());
        assert!(
            t.certificates[0]
                .names
                .iter()
                .all(|n| n.ends_with("example.com")),
            "{:?}",
            t.certificates[0].names
        );
        assert_eq!(
            t.certificates[1].names,
            vec!["other.example.com".to_string()]
        );
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused_at_the_key() {
        let (name, mut checked) = example(
            "[listener.tls]\ncert = \"certs/example.com.pem\"\nkey = \"certs/wildcard.example.com.key\"\n",
        );
        let Some(c) = checked.config.as_mut() else {
            panic!("no config");
        };
        checked.diagnostics.extend(read_files(c));
        let e = checked
            .into_result(&name)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let Err(e) = e else { panic!("accepted") };
        assert!(
            e.starts_with(&format!("{name}:7:7: key file "))
                && e.contains("does not fit the certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_at_ca() {
        let (name, mut checked) = example("");
        let Some(c) = checked.config.as_mut() else {
            panic!("no config");
        };
        // The README is no PEM file.
        c.backends[0].tls = Some(UpstreamTls {
            ca: Located {
                value: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("examples/certs/README.md"),
                line: 3,
                column: 6,
            },
            ca_is_system: false,
            sni: None,
            verify: true,
        });
        let d = read_files(c);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].column), (3, 6));
        assert!(
            d[0].message.starts_with("certificate file "),
            "{name}: {d:?}"
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let dir = std::env::temp_dir().join(format!("ringway-resolve-{}", std::process::id()));
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("short.key"), b"too short"));
        assert!(made.is_ok(), "{made:?}");
        let name = dir.join("c.toml").display().to_string();
        let text = format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nbackend = \"b\"\n\
             [listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nticket_key_file = \"short.key\"\n{BACKEND}"
        );
        let mut checked = check_str(&text, &name);
        let diagnostics = checked.config.as_mut().map(read_files).unwrap_or_default();
        let messages: Vec<String> = diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        let cert = dir.join("c.pem").display().to_string();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(&format!("6:8: certificate file {cert}:"))),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("8:19: ticket_key_file must hold at least 32 bytes")),
            "{messages:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
