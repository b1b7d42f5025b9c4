//! Owns: TLS: the pure ClientHello peek used for SNI passthrough and protocol detection,
//! (server.rs) the rustls configuration each shard terminates TLS with, and (resolve.rs) reading
//! the certificate, key and CA files a validated config names, errors located in the config.
//! Must not: do socket I/O (shard/tls.rs drives TLS connections).

pub mod client_hello;
pub mod resolve;
pub mod server;
pub mod upstream;

pub use client_hello::{ClientHello, HelloVerdict, looks_like_tls, parse_client_hello};
