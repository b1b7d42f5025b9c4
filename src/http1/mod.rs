//! Owns: HTTP/1.1 message heads and body framing as pure functions over byte slices (RFC 9112):
//! `parse` (request and response heads, smuggling checks), `body` (chunked framing scanner),
//! `encode` (heads out, hop-by-hop removal, forwarding headers, ringway's own responses).
//! Must not: do I/O, read clocks, or allocate per byte of body.

pub mod body;
pub mod encode;
pub mod parse;

pub use body::{ChunkError, ChunkVerdict, ChunkedScanner};
pub use encode::{ForwardOpts, ResponseOpts, encode_request, encode_response, error_response};
pub use parse::{
    Framing, HeadVerdict, Header, Limits, Reject, RequestHead, ResponseHead, parse_request,
    parse_response,
};
