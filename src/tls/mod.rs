//! Owns: TLS: the pure ClientHello peek used for SNI passthrough and protocol detection, and
//! (server.rs) the rustls configuration each shard terminates TLS with.
//! Must not: do socket I/O (shard/tls.rs drives TLS connections).

pub mod client_hello;
pub mod server;
pub mod upstream;

pub use client_hello::{ClientHello, HelloVerdict, looks_like_tls, parse_client_hello};
