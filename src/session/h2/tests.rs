use super::*;

#[test]
fn trailers_are_read_from_the_tail_of_a_chunked_body() {
    let body = b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\nX-Checksum:  abc \r\n\r\n";
    let got = trailer_fields(body);
    assert_eq!(
        got,
        vec![
            (b"grpc-status".to_vec(), b"0".to_vec()),
            (b"x-checksum".to_vec(), b"abc".to_vec()),
        ]
    );
    assert!(trailer_fields(b"5\r\nhello\r\n0\r\n\r\n").is_empty());
    assert!(trailer_fields(b"0\r\n\r\n").is_empty());
    // Chunk data that looks like a last chunk is not taken for one.
    assert!(trailer_fields(b"3\r\n\r\n0\r\n0;a=b\r\n\r\n").is_empty());
}

#[test]
fn tail_keeps_only_its_bound() {
    let mut tail = Vec::new();
    keep_tail(&mut tail, Some(&[1u8; TAIL_BYTES_MAX + 10]));
    assert_eq!(tail.len(), TAIL_BYTES_MAX);
    keep_tail(&mut tail, Some(b"xyz"));
    assert_eq!(tail.len(), TAIL_BYTES_MAX);
    assert!(tail.ends_with(b"xyz"));
}
