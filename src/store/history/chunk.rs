//! The history's chunks: one row of `auth_history_chunk` holds the decisions
//! of one batch of the writer, encoded here.
//!
//! A row per decision cost the writer about 1.1 µs of CPU (fifteen binds,
//! a b-tree insert, its cell in the WAL and again at the checkpoint); a
//! batch in one blob costs it about a third of that, and the history's
//! CPU and cache use are what separated the server from one without it at
//! partial load. Decisions from a switch fleet repeat most of their text
//! (NAS, method, directory, reason, VLAN), so a field equal to the one of
//! the record before is a bit, not a copy.
//!
//! A record, in order:
//! - `u8` flags: [`ACCEPT`], [`POLICY`], [`PORT_NUMBER`], [`IPV4`], [`IPV6`];
//! - the time as a zigzag varint, the difference from the record before
//!   (from 0 for the first);
//! - the policy rule and the NAS-Port number as varints, when flagged;
//! - the source address, 4 or 16 bytes, when flagged (otherwise the NAS
//!   address is a text field);
//! - `u16` (little-endian) of the text fields present, bit `i` for field
//!   `i` in [`Field`] order, and `u16` of those equal to the record
//!   before's;
//! - each present field that is not the same: its length as a varint, then
//!   its UTF-8 bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{FIELDS, Field, HistoryRecord, Pending};

const ACCEPT: u8 = 1;
const POLICY: u8 = 2;
const PORT_NUMBER: u8 = 4;
const IPV4: u8 = 8;
const IPV6: u8 = 16;

/// Appends the records of `batch` to `out` (cleared first).
pub(super) fn encode(batch: &[Pending], out: &mut Vec<u8>) {
    out.clear();
    let mut prev_time = 0i64;
    let mut prev: [Option<&str>; FIELDS] = [None; FIELDS];
    for r in batch {
        let mut flags = 0u8;
        if r.accept {
            flags |= ACCEPT;
        }
        if r.policy_rule.is_some() {
            flags |= POLICY;
        }
        if r.nas_port.is_some() {
            flags |= PORT_NUMBER;
        }
        match r.source {
            Some(IpAddr::V4(_)) => flags |= IPV4,
            Some(IpAddr::V6(_)) => flags |= IPV6,
            None => {}
        }
        out.push(flags);
        put_varint(out, zigzag(r.time_ms.wrapping_sub(prev_time)));
        prev_time = r.time_ms;
        if let Some(p) = r.policy_rule {
            put_varint(out, u64::from(p));
        }
        if let Some(p) = r.nas_port {
            put_varint(out, u64::from(p));
        }
        match r.source {
            Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            None => {}
        }
        let fields = r.fields();
        let (mut present, mut same) = (0u16, 0u16);
        for (i, f) in fields.iter().enumerate() {
            if f.is_some() {
                present |= 1 << i;
                if *f == prev[i] {
                    same |= 1 << i;
                }
            }
        }
        out.extend_from_slice(&present.to_le_bytes());
        out.extend_from_slice(&same.to_le_bytes());
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f
                && same & (1 << i) == 0
            {
                put_varint(out, f.len() as u64);
                out.extend_from_slice(f.as_bytes());
            }
        }
        prev = fields;
    }
}

/// A chunk that does not decode: written by something else, or damaged.
#[derive(Debug, thiserror::Error)]
#[error("history chunk {first_id} is damaged: the record at byte {at} does not decode")]
pub(super) struct Damaged {
    pub first_id: i64,
    pub at: usize,
}

/// One decoded record, its text borrowed from the chunk.
pub(super) struct Decoded<'a> {
    pub time_ms: i64,
    pub accept: bool,
    pub policy_rule: Option<u32>,
    pub nas_port: Option<u32>,
    pub source: Option<IpAddr>,
    pub fields: [Option<&'a str>; FIELDS],
}

impl Decoded<'_> {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.fields[f as usize]
    }

    pub fn to_record(&self) -> HistoryRecord {
        let text = |f: Field| self.get(f).map(str::to_owned);
        HistoryRecord {
            time_ms: self.time_ms,
            client: text(Field::Client).unwrap_or_default(),
            nas_addr: match self.source {
                Some(ip) => ip.to_string(),
                None => text(Field::NasAddr).unwrap_or_default(),
            },
            nas_port: match self.nas_port {
                Some(n) => Some(n.to_string()),
                None => text(Field::NasPort),
            },
            called_station_id: text(Field::Called),
            calling_station_id: text(Field::Calling),
            mac: text(Field::Mac),
            identity: text(Field::Identity).unwrap_or_default(),
            method: text(Field::Method).unwrap_or_default(),
            directory: text(Field::Directory),
            accept: self.accept,
            reason: text(Field::Reason).unwrap_or_default(),
            vlan: text(Field::Vlan),
            account: text(Field::Account),
            policy_rule: self.policy_rule,
        }
    }
}

/// Reads the records of one chunk in order.
pub(super) struct Decoder<'a> {
    data: &'a [u8],
    at: usize,
    first_id: i64,
    prev_time: i64,
    prev: [Option<&'a str>; FIELDS],
}

impl<'a> Decoder<'a> {
    pub fn new(first_id: i64, data: &'a [u8]) -> Decoder<'a> {
        Decoder {
            data,
            at: 0,
            first_id,
            prev_time: 0,
            prev: [None; FIELDS],
        }
    }

    /// The next record, `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Decoded<'a>>, Damaged> {
        let start = self.at;
        if start == self.data.len() {
            return Ok(None);
        }
        self.record().map(Some).ok_or(Damaged {
            first_id: self.first_id,
            at: start,
        })
    }

    fn record(&mut self) -> Option<Decoded<'a>> {
        let flags = self.byte()?;
        let time_ms = self.prev_time.wrapping_add(unzigzag(self.varint()?));
        self.prev_time = time_ms;
        let policy_rule = if flags & POLICY != 0 {
            Some(u32::try_from(self.varint()?).ok()?)
        } else {
            None
        };
        let nas_port = if flags & PORT_NUMBER != 0 {
            Some(u32::try_from(self.varint()?).ok()?)
        } else {
            None
        };
        let source = if flags & IPV4 != 0 {
            Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.bytes(4)?).ok()?)))
        } else if flags & IPV6 != 0 {
            Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.bytes(16)?).ok()?)))
        } else {
            None
        };
        let present = u16::from_le_bytes(self.bytes(2)?.try_into().ok()?);
        let same = u16::from_le_bytes(self.bytes(2)?.try_into().ok()?);
        let mut fields: [Option<&'a str>; FIELDS] = [None; FIELDS];
        for (i, field) in fields.iter_mut().enumerate() {
            if present & (1 << i) == 0 {
                continue;
            }
            *field = if same & (1 << i) != 0 {
                Some(self.prev[i]?)
            } else {
                let len = usize::try_from(self.varint()?).ok()?;
                Some(std::str::from_utf8(self.bytes(len)?).ok()?)
            };
        }
        self.prev = fields;
        Some(Decoded {
            time_ms,
            accept: flags & ACCEPT != 0,
            policy_rule,
            nas_port,
            source,
            fields,
        })
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let b = self.data.get(self.at..end)?;
        self.at = end;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::super::{NasAddr, NasPort, RecordParts};
    use super::*;

    fn parts(i: u32) -> RecordParts<'static> {
        RecordParts {
            time_ms: 1_800_000_000_000 - i64::from(i % 3) * 5,
            client: "sw1",
            nas_addr: match i % 3 {
                0 => NasAddr::Ip(IpAddr::from([10, 0, 0, 1])),
                1 => NasAddr::Ip("2001:db8::7".parse().unwrap()),
                _ => NasAddr::Text("a name"),
            },
            nas_port: match i % 3 {
                0 => NasPort::Number(i),
                1 => NasPort::Id("Gi1/0/1"),
                _ => NasPort::Absent,
            },
            called_station_id: i.is_multiple_of(2).then_some(""),
            calling_station_id: Some(["02-00-00-00-00-01", "02-00-00-00-00-02"][(i % 2) as usize]),
            mac: None,
            identity: ["alice", "jürgen", "bob"][(i % 3) as usize],
            method: "pap",
            directory: (!i.is_multiple_of(4)).then_some("local"),
            accept: i.is_multiple_of(2),
            reason: "ok",
            vlan: (i == 5).then_some("30"),
            account: None,
            policy_rule: i.is_multiple_of(2).then_some(i),
        }
    }

    #[test]
    fn a_chunk_decodes_to_the_records_encoded() {
        let batch: Vec<Pending> = (0..50).map(|i| Pending::new(&parts(i))).collect();
        let mut data = Vec::new();
        encode(&batch, &mut data);
        let mut d = Decoder::new(1, &data);
        let mut got = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            got.push(r.to_record());
        }
        let want: Vec<HistoryRecord> = batch.iter().map(Pending::to_record).collect();
        assert_eq!(got, want);
        // Repeated text is a bit: records of one shape take less than their
        // text alone (without those bits, it would be all of it and more).
        let alike: Vec<Pending> = (0..50).map(|i| Pending::new(&parts(6 * i))).collect();
        encode(&alike, &mut data);
        let text: usize = alike.iter().map(|p| p.text.len()).sum();
        assert!(data.len() < text, "{} bytes for {text} of text", data.len());
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_panic() {
        let batch: Vec<Pending> = (0..4).map(|i| Pending::new(&parts(i))).collect();
        let mut data = Vec::new();
        // Where each record ends: the encoding of a prefix is a prefix.
        let mut ends = Vec::new();
        for k in 0..=batch.len() {
            encode(&batch[..k], &mut data);
            ends.push(data.len());
        }
        for cut in 0..data.len() {
            let mut d = Decoder::new(7, &data[..cut]);
            let mut n = 0;
            let end = loop {
                match d.next_record() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            assert!(n < batch.len(), "cut at {cut}");
            assert_eq!(end.is_ok(), ends.contains(&cut), "cut at {cut}");
        }
        // A "same as before" bit on the first record has nothing to copy:
        // flags, time 0, the client present and "the same".
        let mut d = Decoder::new(7, &[0, 0, 1, 0, 1, 0]);
        let e = d.next_record().err().expect("decoded");
        assert_eq!(
            e.to_string(),
            "history chunk 7 is damaged: the record at byte 0 does not decode"
        );
        // Text that is not UTF-8.
        let mut d = Decoder::new(7, &[0, 0, 1, 0, 0, 0, 1, 0xff]);
        assert!(d.next_record().is_err());
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(v));
            let mut d = Decoder::new(0, &out);
            assert_eq!(d.varint().map(unzigzag), Some(v));
            assert_eq!(d.at, out.len());
        }
    }
}
