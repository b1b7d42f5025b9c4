//! Route entries read from Redis (hipache's `frontend:<host>` lists): any key and elements give
//! a route or a typed error, never a panic. Input: the key, then the list's elements, separated
//! by NUL bytes. A route round-trips (its host and every server print as what parses back to
//! them), holds 1 to SERVERS_PER_ROUTE_MAX distinct servers, and a snapshot that takes the entry
//! and then its deletion is empty again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::provider::schema::{
    HostPattern, SERVERS_PER_ROUTE_MAX, parse_entry, parse_server_url,
};
use ringway::provider::snapshot::{KeyRead, RouteSnapshot};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let key = parts.next().unwrap_or_default();
    let values: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();
    for prefix in [&b""[..], b"p:"] {
        if let Ok(route) = parse_entry(prefix, key, &values) {
            let shown = route.host.to_string();
            assert_eq!(HostPattern::parse(shown.as_bytes()), Ok(route.host.clone()));
            assert!((1..=SERVERS_PER_ROUTE_MAX).contains(&route.servers.len()));
            for (i, addr) in route.servers.iter().enumerate() {
                assert!(!route.servers[..i].contains(addr), "duplicate {addr}");
                let url = format!("http://{addr}");
                assert_eq!(parse_server_url(url.as_bytes()), Ok(*addr), "{url}");
            }
        }
        let mut snapshot = RouteSnapshot::default();
        snapshot.apply(prefix, key, KeyRead::List(values.clone()));
        assert!(snapshot.entries() <= 1);
        snapshot.apply(prefix, key, KeyRead::Missing);
        assert_eq!(snapshot, RouteSnapshot::default());
    }
});
