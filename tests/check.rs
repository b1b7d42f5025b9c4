//! `ringway check` reports every problem of a file in one run: unknown keys, bad values, bad
//! references and unreadable certificates, each as `FILE:LINE:COLUMN: message`, in file order,
//! exit code 1.

mod common;

use std::process::{Command, Output};

use common::*;

fn ringway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("run ringway")
}

/// An unknown key in `[timeouts]`, an undefined backend in `[[listener]]`, a bad duration in
/// `[[backend]]`.
const THREE_ERRORS: &str = r#"[timeouts]
connect = "5s"
client_idel = "30s"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
backend = "ap"

[[backend]]
name = "app"
idle_timeout = "15 seconds"
servers = [ { address = "127.0.0.1:9001" } ]
"#;

#[test]
fn check_reports_three_errors_of_three_sections_in_file_order() {
    let dir = TempDir::new("check");
    let file = dir.write("three.toml", THREE_ERRORS);
    let file = file.display().to_string();
    for sub in ["check", "run"] {
        let out = ringway(&[sub, "-c", &file]);
        assert_eq!(out.status.code(), Some(1), "{sub}");
        assert!(out.stdout.is_empty(), "{sub}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            vec![
                format!("{file}:3:1: unknown field `client_idel`, did you mean `client_idle`?"),
                format!(
                    "{file}:8:11: listener `web` uses backend `ap`, which is not defined; did you mean `app`?"
                ),
                format!(
                    "{file}:12:16: idle_timeout: `15 seconds` is not a duration: write a number with a unit, e.g. \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\""
                ),
            ],
            "{sub}"
        );
    }
}

#[test]
fn shipped_bad_example_shows_all_its_errors_at_once() {
    let out = ringway(&["check", "-c", "examples/bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let locations: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("examples/bad.toml:"))
        .filter_map(|l| l.split(": ").next())
        .collect();
    assert_eq!(locations, vec!["14:1", "20:11", "25:16"], "{err}");
    // The example's header comment shows exactly this output.
    let example = std::fs::read_to_string(manifest_dir().join("examples/bad.toml"))
        .expect("read examples/bad.toml");
    for line in err.lines() {
        assert!(example.contains(&format!("#   {line}\n")), "{line}");
    }
}

#[test]
fn wrong_types_are_reported_without_stopping_and_without_calling_the_key_missing() {
    let dir = TempDir::new("check");
    let file = dir.write(
        "types.toml",
        "[global]\nshards = \"two\"\nrecv_buffer_count = \"512\"\n\
         [[listener]]\nname = \"a\"\nbind = 8080\nbackend = \"b\"\n\
         [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n",
    );
    let file = file.display().to_string();
    let out = ringway(&["check", "-c", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("{file}:2:10: shards: `two` is not valid")),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!("{file}:3:21: recv_buffer_count: expected an integer, found string `\"512\"`")
    );
    assert_eq!(
        lines[2],
        format!("{file}:6:8: bind: expected a string, found integer `8080`")
    );
}

#[test]
fn unreadable_certificates_are_reported_with_the_other_errors() {
    let dir = TempDir::new("check");
    let file = dir.write(
        "tls.toml",
        "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:8443\"\nmode = \"http\"\nbackend = \"b\"\n\
         [listener.tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\nmin_versoin = \"1.3\"\n\
         [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n",
    );
    let file_s = file.display().to_string();
    let cert = dir.0.join("missing.pem").display().to_string();
    for args in [
        vec!["check", "-c", &file_s],
        vec!["tune", "check", "-c", &file_s],
    ] {
        let out = ringway(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(
            lines[0].starts_with(&format!("{file_s}:7:8: certificate file {cert}: ")),
            "{err}"
        );
        assert_eq!(
            lines[1],
            format!("{file_s}:9:1: unknown field `min_versoin`, did you mean `min_version`?")
        );
    }
}
