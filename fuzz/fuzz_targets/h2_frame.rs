//! HTTP/2 frames and the connection: any bytes give a verdict, never a panic. The frame decoder
//! alone: a complete frame consumes exactly its header's length, and a prefix of a frame is
//! never complete. Then a connection fed a valid preface and SETTINGS followed by the input,
//! with an application that answers every request: the events and the bytes sent must not
//! depend on where the input is split, and the output stays within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::h2::conn::{Event, Fed, H2Cfg, H2Conn};
use ringway::h2::frame::{self, FrameVerdict, PREFACE};

/// Slack over `output_bytes_max`: one frame's reaction plus one small response.
const OUTPUT_SLACK_BYTES: usize = 256;

fn check_frames(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        match frame::parse(rest, frame::FRAME_BYTES_MIN) {
            FrameVerdict::Complete { consumed_bytes, .. } => {
                let head = frame::FrameHead::parse(rest.first_chunk().unwrap());
                assert_eq!(consumed_bytes, frame::HEAD_BYTES + head.len as usize);
                // A cut frame is never complete.
                let cut = &rest[..consumed_bytes - 1];
                assert!(!matches!(
                    frame::parse(cut, frame::FRAME_BYTES_MIN),
                    FrameVerdict::Complete { .. }
                ));
                at += consumed_bytes;
            }
            FrameVerdict::Partial => return,
            FrameVerdict::Invalid { frame_bytes, .. } => {
                assert!(frame_bytes >= frame::HEAD_BYTES);
                at += frame_bytes;
            }
        }
    }
}

/// What the application does after an event (the event borrows the connection).
enum Act {
    Answer(u32),
    Consume(u32, usize),
    Nothing,
}

/// Feeds the parts in order; returns the events (as text) and every byte sent.
fn run(parts: &[&[u8]], cfg: H2Cfg) -> (Vec<String>, Vec<u8>) {
    let mut conn = H2Conn::new(cfg, 0);
    let mut pending = PREFACE.to_vec();
    frame::write_settings(&mut pending, &[]);
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut now_ms = 0;
    for part in parts {
        pending.extend_from_slice(part);
        loop {
            let (act, used, stop) = match conn.feed(&pending, now_ms) {
                Fed::Event {
                    event,
                    consumed_bytes,
                } => {
                    events.push(format!("{event:?}"));
                    let act = match event {
                        Event::RequestHead { stream, .. } => Act::Answer(stream),
                        Event::Data { stream, data, .. } => Act::Consume(stream, data.len()),
                        _ => Act::Nothing,
                    };
                    (act, consumed_bytes, false)
                }
                Fed::NeedMore { consumed_bytes } => (Act::Nothing, consumed_bytes, true),
                Fed::Blocked { consumed_bytes } => (Act::Nothing, consumed_bytes, false),
                Fed::Closed { .. } => {
                    conn.drain_output(&mut sent, usize::MAX);
                    return (events, sent);
                }
            };
            assert!(used <= pending.len());
            pending.drain(..used);
            match act {
                Act::Answer(stream) => {
                    let head = [(&b"content-type"[..], &b"text/plain"[..])];
                    if conn.send_response_head(stream, 200, head, false).is_ok() {
                        let _ = conn.send_data(stream, b"ok", true);
                    }
                }
                Act::Consume(stream, n) => conn.consumed(stream, n),
                Act::Nothing => {}
            }
            assert!(conn.output().len() <= cfg.output_bytes_max + OUTPUT_SLACK_BYTES);
            conn.drain_output(&mut sent, usize::MAX);
            now_ms += 1;
            if stop {
                break;
            }
        }
    }
    (events, sent)
}

fuzz_target!(|data: &[u8]| {
    check_frames(data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cfg = H2Cfg {
        streams_max: 1 + u32::from(first & 7),
        output_bytes_max: 1024,
        ..H2Cfg::default()
    };
    let cut = usize::from(first) * 7 % (rest.len() + 1);
    let whole = run(&[rest], cfg);
    let split = run(&[&rest[..cut], &rest[cut..]], cfg);
    assert_eq!(whole, split, "the split at {cut} changed what happened");
});
