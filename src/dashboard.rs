//! Owns: the admin listener's pages for people and scrapers: `GET /metrics` (Prometheus text, or
//! OpenMetrics when `Accept` asks for it, built by `metrics.rs` from one report round) and the
//! stats page at `GET /` and `GET /dashboard` — one self-contained HTML document
//! (`dashboard.html`, compiled in: no CDN, no other file) whose script polls `GET /stats` and
//! draws the tables and the chart in the browser.
//! Must not: keep state between requests or touch shards except through `Shards::report`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::bus::Shards;
use crate::metrics::{self, Scrape};

/// The stats page, as shipped in the binary.
pub const PAGE: &str = include_str!("dashboard.html");

/// Everything the page needs is inline or same-origin (`/stats`, the runtime API): a browser
/// refuses anything else, so the page cannot load (or leak to) a third party.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET /` and `GET /dashboard`.
pub fn page() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /metrics`: one report round to the shards, encoded. `accept` is the request's `Accept`
/// header (OpenMetrics when it asks, as Prometheus does).
pub async fn metrics(accept: Option<&HeaderValue>, shards: &Shards) -> Response<Full<Bytes>> {
    let openmetrics = accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(metrics::wants_openmetrics);
    let report = shards.report().await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let start_time_s = now_s - report.uptime_ms as f64 / 1000.0;
    let scrape = Scrape::from_report(&report, start_time_s, Vec::new());
    let body = metrics::encode(&scrape, openmetrics);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::content_type(openmetrics)),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        // No script, style, image or font from anywhere but the page itself and this origin.
        for needle in ["http://", "https://", "src=\"//", "@import", "<link"] {
            assert!(!PAGE.contains(needle), "dashboard.html contains {needle:?}");
        }
        for needle in [
            "fetch(\"stats\"",
            "api/v1/backends/",
            "sessionStorage",
            "<canvas",
            "name=\"viewport\"",
        ] {
            assert!(PAGE.contains(needle), "dashboard.html lacks {needle:?}");
        }
        let r = page();
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"text/html; charset=utf-8"[..])
        );
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
