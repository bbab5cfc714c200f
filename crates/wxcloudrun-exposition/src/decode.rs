//! Turning a response body into page text: gzip (bounded) and UTF-8.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::error::DecodeError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes a scraped body into page text.
///
/// A body that starts with the gzip magic bytes is decompressed, whatever `Content-Encoding`
/// said (a page cannot start with byte `0x1f`), reading at most `max_bytes` decompressed bytes:
/// a small "gzip bomb" fails with [`DecodeError::TooLarge`] instead of exhausting memory. A body
/// that is not gzip is returned borrowed, after the same size check. The text must be UTF-8,
/// except inside comment lines: invalid sequences there become U+FFFD (Prometheus never reads
/// comments, so a comment in a legacy encoding must not cost the scrape).
///
/// ```
/// use std::io::Write;
/// use wxcloudrun_exposition::decode_body;
///
/// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
/// gz.write_all(b"up 1\n").unwrap();
/// let body = gz.finish().unwrap();
/// assert_eq!(decode_body(&body, 1024).unwrap(), "up 1\n");
/// assert_eq!(decode_body(b"up 1\n", 1024).unwrap(), "up 1\n");
/// assert!(decode_body(&body, 3).is_err());
/// ```
pub fn decode_body(body: &[u8], max_bytes: usize) -> Result<Cow<'_, str>, DecodeError> {
    if !body.starts_with(&GZIP_MAGIC) {
        if body.len() > max_bytes {
            return Err(DecodeError::TooLarge { limit: max_bytes });
        }
        return match std::str::from_utf8(body) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            Err(e) => repair_comments(body, e).map(Cow::Owned),
        };
    }

    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let bound = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes));
    MultiGzDecoder::new(body)
        .take(bound)
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if out.len() > max_bytes {
        return Err(DecodeError::TooLarge { limit: max_bytes });
    }
    match String::from_utf8(out) {
        Ok(text) => Ok(Cow::Owned(text)),
        Err(e) => repair_comments(e.as_bytes(), e.utf8_error()).map(Cow::Owned),
    }
}

/// [`decode_body`] for a body the caller owns: a plain body becomes the text without a copy (and
/// is checked for UTF-8 once); a gzip body is decompressed under the same bound.
///
/// ```
/// use wxcloudrun_exposition::decode_body_owned;
///
/// let body = b"up 1\n".to_vec();
/// let address = body.as_ptr();
/// let text = decode_body_owned(body, 1024).unwrap();
/// assert_eq!((text.as_str(), text.as_ptr()), ("up 1\n", address));
/// assert!(decode_body_owned(b"up 1\n".to_vec(), 3).is_err());
/// assert!(decode_body_owned(vec![b'u', 0xff], 1024).is_err());
/// ```
pub fn decode_body_owned(body: Vec<u8>, max_bytes: usize) -> Result<String, DecodeError> {
    if body.starts_with(&GZIP_MAGIC) {
        return decode_body(&body, max_bytes).map(Cow::into_owned);
    }
    if body.len() > max_bytes {
        return Err(DecodeError::TooLarge { limit: max_bytes });
    }
    String::from_utf8(body).or_else(|e| repair_comments(e.as_bytes(), e.utf8_error()))
}

/// The page with each invalid UTF-8 sequence replaced by U+FFFD, when every one is inside a
/// comment line; else the error at the first bad byte outside one. Prometheus never reads
/// comments, and this parser ignores them too, so nothing that is kept changes.
///
/// A comment line, as the text-format parser reads one: a `#` (after blanks) followed by anything
/// but `HELP`, `TYPE` (or OpenMetrics' `UNIT`, `EOF`) and a blank.
fn repair_comments(bytes: &[u8], first: std::str::Utf8Error) -> Result<String, DecodeError> {
    let mut error = first;
    let mut from = 0;
    loop {
        let bad = from + error.valid_up_to();
        let line_start = bytes
            .get(..bad)
            .and_then(|before| before.iter().rposition(|&b| b == b'\n'))
            .map_or(0, |newline| newline + 1);
        let line_end = bytes
            .get(bad..)
            .and_then(|after| after.iter().position(|&b| b == b'\n'))
            .map_or(bytes.len(), |newline| bad + newline);
        if !bytes.get(line_start..line_end).is_some_and(is_comment_line) {
            return Err(DecodeError::InvalidUtf8 { offset: bad });
        }
        from = line_end;
        match std::str::from_utf8(bytes.get(from..).unwrap_or_default()) {
            Ok(_) => return Ok(String::from_utf8_lossy(bytes).into_owned()),
            Err(next) => error = next,
        }
    }
}

fn is_comment_line(line: &[u8]) -> bool {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = line
        .get(line.iter().take_while(|b| blank(b)).count()..)
        .unwrap_or_default();
    let Some(after_hash) = line.strip_prefix(b"#") else {
        return false;
    };
    let skipped = after_hash.iter().take_while(|b| blank(b)).count();
    if skipped == 0 {
        return true; // `#text`
    }
    let rest = after_hash.get(skipped..).unwrap_or_default();
    let keyword = rest.split(blank).next().unwrap_or_default();
    !matches!(keyword, b"HELP" | b"TYPE" | b"UNIT" | b"EOF")
}
