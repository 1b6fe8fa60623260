//! 48-bit MAC addresses in every notation switches put in User-Name and
//! Calling-Station-Id, normalised to one value.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected aabbccddeeff, aa-bb-cc-dd-ee-ff, aa:bb:cc:dd:ee:ff or aabb.ccdd.eeff)")]
pub struct MacParseError;

impl MacAddr {
    /// Accepts `aabbccddeeff`, `aa-bb-cc-dd-ee-ff`, `aa:bb:cc:dd:ee:ff` and
    /// `aabb.ccdd.eeff`, in either case. Mixed separators are refused: a
    /// User-Name like `aa-bb:cc-dd:ee-ff` is a typo or not a MAC at all.
    pub fn parse(s: &str) -> Result<MacAddr, MacParseError> {
        let b = s.as_bytes();
        let digits: [u8; 12] = match b.len() {
            12 => b.try_into().map_err(|_| MacParseError)?,
            17 => {
                let sep = b[2];
                if sep != b'-' && sep != b':' {
                    return Err(MacParseError);
                }
                let mut d = [0u8; 12];
                for i in 0..6 {
                    if i < 5 && b[i * 3 + 2] != sep {
                        return Err(MacParseError);
                    }
                    d[i * 2] = b[i * 3];
                    d[i * 2 + 1] = b[i * 3 + 1];
                }
                d
            }
            14 => {
                if b[4] != b'.' || b[9] != b'.' {
                    return Err(MacParseError);
                }
                let mut d = [0u8; 12];
                for g in 0..3 {
                    d[g * 4..g * 4 + 4].copy_from_slice(&b[g * 5..g * 5 + 4]);
                }
                d
            }
            _ => return Err(MacParseError),
        };
        let mut out = [0u8; 6];
        for i in 0..6 {
            out[i] = (hex_val(digits[i * 2])? << 4) | hex_val(digits[i * 2 + 1])?;
        }
        Ok(MacAddr(out))
    }

    /// The notation [`Display`](fmt::Display) writes, without an allocation.
    pub fn text(&self) -> MacText {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut t = [b'-'; 17];
        for (i, b) in self.0.iter().enumerate() {
            t[i * 3] = HEX[usize::from(b >> 4)];
            t[i * 3 + 1] = HEX[usize::from(b & 0xf)];
        }
        MacText(t)
    }
}

/// A MAC address as text: `AA-BB-CC-DD-EE-FF`.
#[derive(Clone, Copy)]
pub struct MacText([u8; 17]);

impl MacText {
    pub fn as_str(&self) -> &str {
        // Hex digits and dashes only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex_val(c: u8) -> Result<u8, MacParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(MacParseError),
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacAddr::parse(s)
    }
}

/// RFC 3580 §3.21 notation, as in Calling-Station-Id: `AA-BB-CC-DD-EE-FF`.
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_the_same_mac() {
        let want = MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for s in [
            "aabbcc0deeff",
            "AABBCC0DEEFF",
            "aa-bb-cc-0d-ee-ff",
            "AA-BB-CC-0D-EE-FF",
            "aa:bb:cc:0d:ee:ff",
            "AA:BB:CC:0D:EE:FF",
            "aabb.cc0d.eeff",
            "AABB.CC0D.EEFF",
        ] {
            assert_eq!(MacAddr::parse(s), Ok(want), "{s}");
        }
        assert_eq!(want.to_string(), "AA-BB-CC-0D-EE-FF");
    }

    #[test]
    fn not_macs() {
        for s in [
            "",
            "alice",
            "aabbccddeef",
            "aabbccddeeffa",
            "aa-bb:cc-dd:ee-ff",
            "aa-bb-cc-dd-ee_ff",
            "aabb-ccdd-eeff",
            "gabbccddeeff",
            "aa bb cc dd ee ff",
            "aabb.ccdd:eeff",
        ] {
            assert!(MacAddr::parse(s).is_err(), "{s}");
        }
    }
}
