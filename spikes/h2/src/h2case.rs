//! The h2 crate's sides: its server as a future (what the shard would poll from its loop, or
//! tokio would), and its client, which drives every case (it is the same client against every
//! server, so only the server side differs).

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::work::{
    AUTHORITY, BODY, Fields, H1Head, REQUEST_FIELDS, RESPONSE_FIELDS, STREAMS, path,
};

thread_local! {
    pub static SERVER_REQUESTS: Cell<u64> = const { Cell::new(0) };
    pub static HELD_LIVE_BYTES: Cell<Option<i64>> = const { Cell::new(None) };
}

pub async fn server<T: AsyncRead + AsyncWrite + Unpin>(io: T, hold: Option<usize>) {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024)
        .handshake::<_, Bytes>(io)
        .await
        .expect("server handshake");
    let mut fields = Fields::new();
    let mut h1 = H1Head::new();
    let mut held = Vec::new();
    let mut hold = hold;
    while let Some(r) = conn.accept().await {
        let (req, respond) = r.expect("accept");
        // The proxy's translation, from h2's parsed request (same as the sans-IO servers do
        // from their decoded fields).
        fields.clear();
        let (parts, _body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let auth = parts.uri.authority().map_or("", |a| a.as_str());
        h1.start(
            parts.method.as_str().as_bytes(),
            pq.as_bytes(),
            auth.as_bytes(),
        );
        for (n, v) in &parts.headers {
            h1.field(n.as_str().as_bytes(), v.as_bytes());
        }
        h1.finish();
        SERVER_REQUESTS.with(|c| c.set(c.get() + 1));
        let first = SERVER_REQUESTS.with(Cell::get) == 1;
        if let Some(n) = hold.filter(|_| !first) {
            held.push(respond);
            if held.len() < n {
                continue;
            }
            HELD_LIVE_BYTES.with(|c| c.set(Some(crate::count::live(crate::count::SERVER))));
            hold = None;
            for r in held.drain(..) {
                respond_one(r);
            }
            continue;
        }
        respond_one(respond);
    }
}

fn respond_one(mut respond: h2::server::SendResponse<Bytes>) {
    let mut b = Response::builder().status(200);
    for (n, v) in RESPONSE_FIELDS {
        // Static values: a lower bound (a proxy copies the backend's values into HeaderValues).
        b = b.header(*n, HeaderValue::from_static(v));
    }
    let resp = b.body(()).expect("response");
    let mut send = respond.send_response(resp, false).expect("send_response");
    send.send_data(Bytes::from_static(BODY), true)
        .expect("send_data");
}

fn request(i: usize) -> Request<()> {
    let mut b = Request::builder().uri(format!("https://{AUTHORITY}{}", path(i)));
    for (n, v) in REQUEST_FIELDS {
        b = b.header(*n, HeaderValue::from_static(v));
    }
    b.body(()).expect("request")
}

/// Hook between rounds (memory probes); `round` counts from 0.
pub type Between<'a> = &'a dyn Fn(usize);

/// h2's client: `rounds` rounds of `streams` concurrent GETs, each body read and its capacity
/// released (so WINDOW_UPDATEs flow as with a browser). Drives its own connection future.
pub async fn client<T: AsyncRead + AsyncWrite + Unpin>(
    io: T,
    rounds: &[usize],
    between: Between<'_>,
) {
    let (send, conn) = h2::client::Builder::new()
        .handshake::<_, Bytes>(io)
        .await
        .expect("client handshake");
    let mut conn = pin!(conn);
    let mut conn_done = false;
    let app = async move {
        let mut send = send;
        let mut n = 0;
        for (round, &streams) in rounds.iter().enumerate() {
            let mut pending = Vec::with_capacity(streams);
            for _ in 0..streams {
                send = send.ready().await.expect("ready");
                let (resp, _) = send.send_request(request(n), true).expect("send_request");
                n += 1;
                pending.push(resp);
            }
            for resp in pending {
                let resp = resp.await.expect("response");
                assert_eq!(resp.status(), 200);
                let mut body = resp.into_body();
                let mut got = 0;
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("data");
                    got += chunk.len();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                assert_eq!(got, BODY.len());
            }
            between(round);
        }
    };
    let mut app = pin!(app);
    poll_fn(|cx| {
        if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
            r.expect("client connection");
            conn_done = true;
        }
        app.as_mut().poll(cx)
    })
    .await
}

pub fn rounds(n: usize) -> Vec<usize> {
    vec![STREAMS; n]
}
