//! Owns: TLS-related pure parsing: the ClientHello peek used for SNI passthrough and protocol
//! detection. (TLS termination with rustls plugs in here in a later step.)
//! Must not: do I/O.

pub mod client_hello;

pub use client_hello::{ClientHello, HelloVerdict, looks_like_tls, parse_client_hello};
