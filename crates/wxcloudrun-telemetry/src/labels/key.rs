//! The key of the resolved-series cache, built on the stack from a request's raw inputs.

/// Keys longer than this are not cached (routes are rarely long).
pub(crate) const RESOLVE_KEY_MAX: usize = 512;

/// Field tags of a [`ResolveKey`].
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
/// The peer address, which stands in for the access hop when no `X-Forwarded-For` was sent.
pub(super) const PEER: u8 = 2;

/// Everything [`Vocabulary::request_labels`](super::Vocabulary::request_labels) reads, as bytes:
/// each field as tag, length, bytes, so no value can imitate another's boundary.
pub(crate) struct ResolveKey {
    buf: [u8; RESOLVE_KEY_MAX],
    len: usize,
}

impl ResolveKey {
    pub(super) fn new() -> Self {
        ResolveKey {
            buf: [0; RESOLVE_KEY_MAX],
            len: 0,
        }
    }

    /// Appends raw bytes; `None` when they do not fit.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len + bytes.len();
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    /// Appends a field: `tag`, its length, its bytes.
    pub(super) fn tagged(&mut self, tag: u8, bytes: &[u8]) -> Option<()> {
        let len = u16::try_from(bytes.len()).ok()?;
        self.push(&[tag])?;
        self.push(&len.to_le_bytes())?;
        self.push(bytes)
    }

    /// Appends an optional text field.
    pub(super) fn field(&mut self, value: Option<&str>) -> Option<()> {
        match value {
            Some(value) => self.tagged(PRESENT, value.as_bytes()),
            None => self.push(&[ABSENT]),
        }
    }

    /// The key so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
