//! `decode_body`: gzip with a bound, plain bodies, UTF-8, and the gzip → parse pipeline.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use wxcloudrun_exposition::{DecodeError, Format, decode_body, decode_body_owned, parse};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn plain_bodies_are_borrowed() {
    let body = b"up 1\n";
    let text = decode_body(body, 5).unwrap();
    assert!(matches!(text, std::borrow::Cow::Borrowed("up 1\n")));
    assert!(matches!(
        decode_body(body, 4),
        Err(DecodeError::TooLarge { limit: 4 })
    ));
}

#[test]
fn gzip_is_decompressed_up_to_the_limit() {
    let page = "# TYPE up gauge\nup{job=\"a\"} 1\n";
    let body = gzip(page.as_bytes());
    assert_eq!(decode_body(&body, page.len()).unwrap(), page);
    assert!(matches!(
        decode_body(&body, page.len() - 1),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn owned_bodies_decode_like_borrowed_ones() {
    let page = "# TYPE up gauge\nup{job=\"a\"} 1\n";
    let body = gzip(page.as_bytes());
    assert_eq!(decode_body_owned(body.clone(), page.len()).unwrap(), page);
    assert!(matches!(
        decode_body_owned(body, page.len() - 1),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        decode_body_owned(b"up 1\n\xc3".to_vec(), 64),
        Err(DecodeError::InvalidUtf8 { offset: 5 })
    ));
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    // 16 MiB of zeros compress to ~16 KiB; decoding must stop after 1 MiB + 1 byte.
    let zeros = vec![b'0'; 16 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 1 << 20);
    let error = decode_body(&bomb, 1 << 20).unwrap_err();
    assert_eq!(
        error.to_string(),
        "body is larger than the limit of 1048576 bytes (after decompression)"
    );
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let mut body = gzip(b"a 1\n");
    body.extend(gzip(b"b 2\n"));
    assert_eq!(decode_body(&body, 1024).unwrap(), "a 1\nb 2\n");
}

#[test]
fn broken_gzip_and_bad_utf8_are_errors() {
    let mut body = gzip(b"a 1\n");
    body.truncate(body.len() - 6);
    assert!(matches!(
        decode_body(&body, 1024),
        Err(DecodeError::Gzip(_))
    ));
    assert!(matches!(
        decode_body(b"a{b=\"\xff\"} 1\n", 1024),
        Err(DecodeError::InvalidUtf8 { offset: 5 })
    ));
    assert!(matches!(
        decode_body(&gzip(b"ok\xc3"), 1024),
        Err(DecodeError::InvalidUtf8 { offset: 2 })
    ));
}

#[test]
fn gzip_then_parse() {
    let page = "# TYPE c counter\nc_total{a=\"x\"} 3\n# EOF\n";
    let body = gzip(page.as_bytes());
    let text = decode_body(&body, 1 << 20).unwrap();
    let exposition = parse(&text, Format::OpenMetrics).unwrap();
    assert_eq!(exposition.families[0].samples[0].value, 3.0);
}
