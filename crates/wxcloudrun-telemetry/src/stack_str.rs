//! A few bytes of text formatted on the stack: an address label or a `Server-Timing` value,
//! written on every request without allocating.

use std::fmt;

/// A fixed-capacity string; a write that does not fit fails and leaves the text as it was.
pub(crate) struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    pub(crate) fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn a_write_that_does_not_fit_fails_and_keeps_the_text() {
        let mut s = StackStr::<4>::new();
        assert!(s.write_str("abcd").is_ok());
        assert!(s.write_str("e").is_err());
        assert_eq!(s.as_str(), "abcd");
    }
}
