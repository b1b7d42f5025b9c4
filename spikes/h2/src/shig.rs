//! "A sans-IO codec crate": shiguredo_http2's `Connection` as the server, fed the client's
//! bytes and drained of its output, responding from its events.

use shiguredo_http2::{Connection, Event, HeaderField, Limits};

use crate::work::{BODY, Fields, H1Head, RESPONSE_FIELDS};

pub struct Shig {
    conn: Connection,
    started: bool,
    resp: Vec<HeaderField>,
    fields: Fields,
    h1: H1Head,
    pub requests: u64,
    pub hold: Option<usize>,
    held: Vec<shiguredo_http2::StreamId>,
    pub held_live_bytes: Option<i64>,
}

impl Shig {
    pub fn new() -> Shig {
        let limits = Limits::builder()
            .max_concurrent_streams(Some(100))
            .max_header_list_size(Some(64 * 1024))
            .build()
            .expect("limits");
        let mut resp = vec![HeaderField::new(":status", "200").expect("field")];
        resp.extend(
            RESPONSE_FIELDS
                .iter()
                .map(|(n, v)| HeaderField::new(n, v).expect("field")),
        );
        Shig {
            conn: Connection::server(limits),
            started: false,
            resp,
            fields: Fields::new(),
            h1: H1Head::new(),
            requests: 0,
            hold: None,
            held: Vec::new(),
            held_live_bytes: None,
        }
    }

    pub fn step(&mut self, rx: &[u8], tx: &mut Vec<u8>) -> Result<usize, String> {
        if !self.started {
            self.started = true;
            self.conn.initiate().map_err(|e| e.to_string())?;
        }
        if !rx.is_empty() {
            self.conn.feed(rx).map_err(|e| e.to_string())?;
            self.conn.process().map_err(|e| e.to_string())?;
        }
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::HeadersReceived {
                    stream_id, headers, ..
                } => {
                    self.fields.clear();
                    for h in &headers {
                        self.fields.add(h.name(), h.value());
                    }
                    self.fields.write_h1(&mut self.h1);
                    self.requests += 1;
                    if let Some(n) = self.hold.filter(|_| self.requests > 1) {
                        self.held.push(stream_id);
                        if self.held.len() < n {
                            continue;
                        }
                        self.held_live_bytes = Some(crate::count::live(crate::count::SERVER));
                        self.hold = None;
                        for id in std::mem::take(&mut self.held) {
                            self.respond(id)?;
                        }
                        continue;
                    }
                    self.respond(stream_id)?;
                }
                Event::ConnectionError { reason, .. } => return Err(reason),
                _ => {}
            }
        }
        while let Some(out) = self.conn.poll_output() {
            tx.extend_from_slice(&out);
        }
        Ok(rx.len())
    }

    fn respond(&mut self, id: shiguredo_http2::StreamId) -> Result<(), String> {
        self.conn
            .send_response(id, self.resp.clone(), false)
            .map_err(|e| e.to_string())?;
        self.conn
            .send_data(id, BODY.to_vec(), true)
            .map_err(|e| e.to_string())
    }
}
