//! Fuzzes the EAP-TTLS inner AVP decoder (RFC 5281 §10.1) and the inner PAP
//! reader: every AVP decoded lies inside the input with its header's
//! length, re-encoding the decoded AVPs decodes to the same list, and inner
//! PAP takes only what the AVPs say.

#![no_main]

use libfuzzer_sys::fuzz_target;

use entra_radius::eap::ttls::{decode_avps, encode_avp, inner_pap};

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    i >= o && i + inner.len() <= o + outer.len()
}

fuzz_target!(|data: &[u8]| {
    let Ok(avps) = decode_avps(data) else {
        let _ = inner_pap(data).expect_err("inner PAP of undecodable AVPs");
        return;
    };
    let mut covered = 0;
    for a in &avps {
        assert!(within(data, a.data), "AVP data outside the input");
        let header = if a.vendor.is_some() { 12 } else { 8 };
        covered += (header + a.data.len()).div_ceil(4) * 4;
    }
    // Each AVP is padded to 4 bytes except perhaps the last.
    assert!(covered >= data.len() && covered < data.len() + 4);

    // Re-encoding the vendor-less AVPs gives back the same list.
    let plain: Vec<_> = avps.iter().filter(|a| a.vendor.is_none()).collect();
    let mut again = Vec::new();
    for a in &plain {
        encode_avp(&mut again, a.code, a.mandatory, a.data);
    }
    let decoded = decode_avps(&again).expect("encoded AVPs decode");
    assert_eq!(decoded.len(), plain.len());
    for (d, a) in decoded.iter().zip(&plain) {
        assert_eq!((d.code, d.mandatory, d.data), (a.code, a.mandatory, a.data));
    }

    if let Ok(pap) = inner_pap(data) {
        let name = avps.iter().rev().find(|a| a.vendor.is_none() && a.code == 1).expect("a User-Name AVP");
        assert_eq!(pap.user_name, String::from_utf8_lossy(name.data));
        assert_ne!(pap.password.last(), Some(&0), "trailing NULs are stripped");
    }
});
