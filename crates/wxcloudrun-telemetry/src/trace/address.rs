//! `client.address` text, written without `core::fmt`: it is on every span, and formatting an
//! `IpAddr` through `Display` then `to_string` costs about 1,470 instructions and three
//! allocations (a growing `String`, then the shrink into the attribute's `Box<str>`); this is
//! written on the stack, and copied once: into an SDK span's exact `String`, or into the layer's
//! own encoded span.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest address text: eight groups of four hex digits and seven colons, or
/// `::ffff:255.255.255.255` (22).
const MAX_LEN: usize = 39;

/// A few bytes of ASCII, written in place.
pub(super) struct Text {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Text {
    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn push_str(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn push_decimal(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + n / 10 % 10);
        }
        self.push(b'0' + n % 10);
    }

    fn push_hex(&mut self, n: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = (4 - n.leading_zeros() as usize / 4).max(1);
        for shift in (0..digits).rev() {
            self.push(HEX[usize::from((n >> (4 * shift)) & 0xf)]);
        }
    }

    fn push_v4(&mut self, addr: Ipv4Addr) {
        let [a, b, c, d] = addr.octets();
        self.push_decimal(a);
        for octet in [b, c, d] {
            self.push(b'.');
            self.push_decimal(octet);
        }
    }

    fn push_groups(&mut self, groups: &[u16]) {
        for (i, &group) in groups.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            self.push_hex(group);
        }
    }

    /// RFC 5952 text, as `Display` writes it: lowercase, the longest run of two or more zero
    /// groups (the first of equal runs) as `::`, IPv4-mapped addresses in dotted form.
    fn push_v6(&mut self, addr: Ipv6Addr) {
        if let Some(v4) = addr.to_ipv4_mapped() {
            self.push_str(b"::ffff:");
            return self.push_v4(v4);
        }
        let groups = addr.segments();
        let (mut best_start, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
        for (i, &group) in groups.iter().enumerate() {
            if group != 0 {
                run_len = 0;
                continue;
            }
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_start, best_len) = (run_start, run_len);
            }
        }
        if best_len > 1 {
            self.push_groups(&groups[..best_start]);
            self.push_str(b"::");
            self.push_groups(&groups[best_start + best_len..]);
        } else {
            self.push_groups(&groups);
        }
    }

    pub(super) fn as_str(&self) -> &str {
        // Only ASCII digits, letters, dots and colons were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// `addr` as `addr.to_string()` writes it, on the stack.
pub(super) fn address_text(addr: IpAddr) -> Text {
    let mut text = Text {
        buf: [0; MAX_LEN],
        len: 0,
    };
    match addr {
        IpAddr::V4(v4) => text.push_v4(v4),
        IpAddr::V6(v6) => text.push_v6(v6),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addr: IpAddr) {
        assert_eq!(address_text(addr).as_str(), addr.to_string(), "{addr:?}");
    }

    #[test]
    fn written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "198.51.100.7",
            "10.0.0.1",
            "1.20.100.200",
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1::1",
            "1:0:0:0:1:0:0:0",
            "1:2:3:4:5:6:7:8",
            "1:0:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.128",
            "::192.0.2.128",
            "64:ff9b::192.0.2.33",
            "fe80::1:abcd",
        ] {
            check(text.parse().unwrap());
        }
    }

    #[test]
    fn written_as_display_writes_them_across_zero_patterns() {
        // Every pattern of zero and non-zero groups, with varied digit counts.
        let values = [0x1, 0xab, 0xf00, 0xbeef];
        for pattern in 0u32..256 {
            let groups: [u16; 8] = std::array::from_fn(|i| {
                if pattern & (1 << i) == 0 {
                    0
                } else {
                    values[(i + pattern as usize) % values.len()]
                }
            });
            check(IpAddr::V6(Ipv6Addr::from(groups)));
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            check(IpAddr::V4(Ipv4Addr::from(x)));
        }
    }
}
