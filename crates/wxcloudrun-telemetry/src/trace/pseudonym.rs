//! How OpenIDs and UnionIDs appear on spans: hashed (keyed when a key is configured), raw, or
//! not at all.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How the caller's OpenID and UnionID appear on spans (`enduser.pseudo.id`, `wx.unionid_hash`).
///
/// They are personal data: never metric labels, and on spans only as configured here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// A hash: HMAC-SHA-256 under the configured key (so ids join across services that share it,
    /// and cannot be reversed without it), else an unkeyed SHA-256. 32 hex characters.
    #[default]
    Hashed,
    /// The raw OpenID and UnionID. Only where the trace backend may hold personal data.
    Raw,
    /// Neither appears.
    Omitted,
}

/// What a span shows of an identity, under a policy. Both hashes are keyed once: a request only
/// hashes its own id.
pub(super) struct Pseudonyms {
    policy: IdentityPolicy,
    /// HMAC-SHA-256 under the configured key.
    keyed: Option<Hmac<Sha256>>,
    /// SHA-256 with a fixed prefix, without a key.
    unkeyed: Sha256,
}

impl Pseudonyms {
    pub(super) fn new(policy: IdentityPolicy, key: Option<&[u8]>) -> Self {
        let mut unkeyed = Sha256::new();
        unkeyed.update(b"wxcloudrun-telemetry/id\0");
        Pseudonyms {
            policy,
            // HMAC accepts keys of any length: `None` is unreachable.
            keyed: key.and_then(|key| Hmac::<Sha256>::new_from_slice(key).ok()),
            unkeyed,
        }
    }

    /// The policy in force.
    pub(super) fn policy(&self) -> IdentityPolicy {
        self.policy
    }

    /// Whether hashes are keyed.
    pub(super) fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// What the span shows for `id`, if anything.
    #[cfg(test)]
    pub(super) fn of(&self, id: &str) -> Option<String> {
        self.shown(id).map(|shown| shown.as_str().to_owned())
    }

    /// What the span shows for `id`, if anything, without allocating.
    pub(super) fn shown<'a>(&self, id: &'a str) -> Option<Shown<'a>> {
        match self.policy {
            IdentityPolicy::Omitted => None,
            IdentityPolicy::Raw => Some(Shown::Raw(id)),
            IdentityPolicy::Hashed => Some(Shown::Hash(self.hash(id))),
        }
    }

    /// The pseudonym of `id`: 32 hex characters (128 bits of the digest).
    fn hash(&self, id: &str) -> [u8; 32] {
        let digest: [u8; 32] = match &self.keyed {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(id.as_bytes());
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut hasher = self.unkeyed.clone();
                hasher.update(id.as_bytes());
                hasher.finalize().into()
            }
        };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0; 32];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(&digest[..16]) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        hex
    }
}

/// An identity as a span shows it: its hash, or the id itself.
pub(super) enum Shown<'a> {
    Hash([u8; 32]),
    Raw(&'a str),
}

impl Shown<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            // Hex digits only.
            Shown::Hash(hex) => std::str::from_utf8(hex).unwrap_or_default(),
            Shown::Raw(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pseudonym of `id` under `key`.
    fn hash_id(key: Option<&[u8]>, id: &str) -> String {
        Pseudonyms::new(IdentityPolicy::Hashed, key).of(id).unwrap()
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let unkeyed = hash_id(None, "oUser");
        assert_eq!(unkeyed.len(), 32);
        assert_eq!(unkeyed, hash_id(None, "oUser"));
        assert_ne!(unkeyed, hash_id(None, "oUser2"));
        let keyed = hash_id(Some(b"k1"), "oUser");
        assert_ne!(keyed, unkeyed);
        assert_ne!(keyed, hash_id(Some(b"k2"), "oUser"));
        assert!(!keyed.contains("oUser"));
        // Pinned (Python: hashlib.sha256(b"wxcloudrun-telemetry/id\0oUser"), hmac.new(b"k1",
        // b"oUser", hashlib.sha256); the first 16 bytes in hex): pseudonyms must not change
        // between versions, or dashboards lose their users.
        assert_eq!(unkeyed, "61e9baf465c0f546ab3e649999dd2766");
        assert_eq!(keyed, "fd84179dc8b564692a1edd9354401a15");
    }
}
