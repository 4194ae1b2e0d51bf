//! IP addresses and CIDR blocks, the way event-ruler reads them.
//!
//! Behaviours worth knowing, kept for compatibility with EventBridge:
//! * A plain string in a pattern that is an IP address literal matches the same address
//!   written differently (`"2001:db8::1"` matches `"2001:DB8:0::1"`).
//! * A CIDR block may have host bits set; it covers its whole network (`10.0.0.5/24` is
//!   `10.0.0.0` to `10.0.0.255`). IPv4 masks must be below 32 and IPv6 masks below 128 (`/32`
//!   and `/128` are rejected).

use std::net::Ipv6Addr;

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IpRange {
    pub(crate) v6: bool,
    pub(crate) low: u128,
    pub(crate) high: u128,
}

/// A parsed address: IPv4 in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ip {
    pub(crate) v6: bool,
    pub(crate) bits: u128,
}

impl IpRange {
    pub(crate) fn contains(&self, ip: Ip) -> bool {
        self.v6 == ip.v6 && self.low <= ip.bits && ip.bits <= self.high
    }

    fn single(ip: Ip) -> IpRange {
        IpRange {
            v6: ip.v6,
            low: ip.bits,
            high: ip.bits,
        }
    }
}

/// Whether `text` has the shape of an IPv4 (`d+.d+.d+.d+`) or IPv6 (hex digits and colons,
/// at least one colon) literal. Only such strings are ever read as addresses.
fn looks_like_ip(text: &str) -> bool {
    let b = text.as_bytes();
    if b.contains(&b':') {
        return b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':');
    }
    let mut parts = 0;
    for part in text.split('.') {
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
        parts += 1;
    }
    parts == 4
}

/// Parses an address literal; `None` for anything that is not one.
pub(crate) fn parse_ip(text: &str) -> Option<Ip> {
    if !looks_like_ip(text) {
        return None;
    }
    if !text.contains(':') {
        let mut bits: u32 = 0;
        for part in text.split('.') {
            // Leading zeros are decimal, as Java's resolver reads them.
            let mut value: u32 = 0;
            for digit in part.bytes() {
                value = value * 10 + u32::from(digit - b'0');
                if value > 255 {
                    return None;
                }
            }
            bits = (bits << 8) | value;
        }
        return Some(Ip {
            v6: false,
            bits: u128::from(bits),
        });
    }
    let v6: Ipv6Addr = text.parse().ok()?;
    // Java hands back an IPv4 address for an IPv4-mapped IPv6 literal.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(Ip {
            v6: false,
            bits: u128::from(u32::from(v4)),
        });
    }
    Some(Ip {
        v6: true,
        bits: u128::from(v6),
    })
}

/// The single-address range for a pattern string that is an address literal.
pub(crate) fn range_if_ip(text: &str) -> Option<IpRange> {
    parse_ip(text).map(IpRange::single)
}

/// Parses a `cidr` operand, with event-ruler's reasons.
pub(crate) fn parse_cidr(text: &str) -> Result<IpRange, String> {
    // Java's String.split drops trailing empty pieces; the count check depends on that.
    let mut pieces: Vec<&str> = text.split('/').collect();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    if pieces.len() != 2 {
        return Err("Malformed CIDR, one '/' required".to_owned());
    }
    let mask = parse_java_int(pieces[1])
        .ok_or_else(|| "Malformed CIDR, mask bits must be an integer".to_owned())?;
    if mask < 0 {
        return Err("Malformed CIDR, mask bits must not be negative".to_owned());
    }
    let address = pieces[0];
    let ip = if looks_like_ip(address) {
        parse_ip(address).ok_or_else(|| format!("Invalid IP address: {address}"))?
    } else {
        return Err(format!("Nonstandard IP address: {address}"));
    };
    let width: i64 = if ip.v6 { 128 } else { 32 };
    if i64::from(mask) >= width {
        return Err(if ip.v6 {
            "IPv6 mask bits must be < 128".to_owned()
        } else {
            "IPv4 mask bits must be < 32".to_owned()
        });
    }
    let host_bits = width - i64::from(mask);
    let host_mask: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    Ok(IpRange {
        v6: ip.v6,
        low: ip.bits & !host_mask,
        high: ip.bits | host_mask,
    })
}

/// `Integer.parseInt`: an optional sign, ASCII digits, within `i32`.
fn parse_java_int(text: &str) -> Option<i32> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ip {
        parse_ip(text).expect(text)
    }

    #[test]
    fn ipv4_and_ipv6_literals() {
        assert_eq!(ip("10.0.0.1").bits, 0x0a00_0001);
        assert_eq!(ip("010.0.0.1"), ip("10.0.0.1"));
        assert!(parse_ip("10.0.0.256").is_none());
        assert!(parse_ip("10.0.0").is_none());
        assert!(parse_ip("10.0.0.1.2").is_none());
        assert!(parse_ip("example.com").is_none());
        assert_eq!(ip("2001:db8::1"), ip("2001:DB8:0:0:0:0:0:1"));
        assert!(ip("::1").v6);
        assert_eq!(
            ip("::ffff:a00:1"),
            ip("10.0.0.1"),
            "IPv4-mapped reads as IPv4"
        );
        assert!(parse_ip("1::2::3").is_none());
        assert!(parse_ip("2001:db8::1/64").is_none());
    }

    #[test]
    fn cidr_blocks() {
        let r = parse_cidr("10.0.0.0/24").expect("valid");
        assert!(r.contains(ip("10.0.0.0")));
        assert!(r.contains(ip("10.0.0.255")));
        assert!(!r.contains(ip("10.0.1.0")));
        assert!(!r.contains(ip("::ffff:b00:1")));
        let r6 = parse_cidr("2001:db8::/64").expect("valid");
        assert!(r6.contains(ip("2001:db8::ffff")));
        assert!(r6.contains(ip("2001:db8:0:0:ffff:ffff:ffff:ffff")));
        assert!(!r6.contains(ip("2001:db8:0:1::")));
        assert!(!r6.contains(ip("10.0.0.1")), "families never mix");
        let all = parse_cidr("0.0.0.0/0").expect("valid");
        assert!(all.contains(ip("255.255.255.255")));
    }

    #[test]
    fn cidr_with_host_bits_covers_its_network() {
        let r = parse_cidr("220.160.154.255/24").expect("valid");
        assert!(r.contains(ip("220.160.154.0")));
        assert!(r.contains(ip("220.160.154.255")));
        assert!(!r.contains(ip("220.160.155.0")));
        let r = parse_cidr("220.160.153.171/31").expect("valid");
        assert!(r.contains(ip("220.160.153.170")));
        assert!(!r.contains(ip("220.160.153.172")));
    }

    #[test]
    fn cidr_reasons() {
        let reason = |t: &str| parse_cidr(t).unwrap_err();
        assert_eq!(reason("bad-filter"), "Malformed CIDR, one '/' required");
        assert_eq!(reason("10.0.0.0/"), "Malformed CIDR, one '/' required");
        assert_eq!(reason("10.0.0.0/8/8"), "Malformed CIDR, one '/' required");
        assert_eq!(
            reason("bad-/64filter"),
            "Malformed CIDR, mask bits must be an integer"
        );
        assert_eq!(
            reason("10.0.0.0/-1"),
            "Malformed CIDR, mask bits must not be negative"
        );
        assert_eq!(reason("xx.11.xx/8"), "Nonstandard IP address: xx.11.xx");
        assert_eq!(
            reason("xxxx:db8:1234:1a00::/64"),
            "Nonstandard IP address: xxxx:db8:1234:1a00::"
        );
        assert_eq!(reason("1.2.3.999/8"), "Invalid IP address: 1.2.3.999");
        assert_eq!(reason("10.0.0.0/32"), "IPv4 mask bits must be < 32");
        assert_eq!(reason("::/128"), "IPv6 mask bits must be < 128");
    }
}
