//! The synthetic tenant the directory benchmarks and the memory probe share.

use entra_radius::directory::{AccountData, AccountKind, DirectoryKind, GroupRef, MacAddr};

/// 90 % users with UPN, on-prem SAM and two of 200 groups; 10 % devices
/// with a device id and one or two MACs. Object ids are GUID-shaped.
pub fn synthetic(n: usize) -> impl Iterator<Item = AccountData> {
    let groups: Vec<GroupRef> = (0..200)
        .map(|g| GroupRef {
            id: guid(0xffff_0000 + g),
            name: format!("Group {g}"),
        })
        .collect();
    let users = n * 9 / 10;
    (0..n).map(move |i| {
        if i < users {
            let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, guid(i));
            d.display_name = Some(format!("User {i}"));
            d.upn = Some(format!("user{i}@contoso.com"));
            d.sam_account_name = Some(format!("user{i}"));
            d.netbios_domain = Some("CONTOSO".into());
            d.dns_domain = Some("contoso.local".into());
            d.enabled = true;
            d.groups = vec![groups[i % 200].clone(), groups[(i / 200) % 200].clone()];
            d.last_change = Some(1_700_000_000 + i as i64);
            d.last_password_change = Some("2024-01-01T00:00:00Z".into());
            d
        } else {
            let j = i - users;
            let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::Device, guid(i));
            d.display_name = Some(format!("LAPTOP-{j}"));
            d.device_id = Some(guid(0x1000_0000 + j));
            d.macs = vec![mac(2 * j)];
            if j.is_multiple_of(2) {
                d.macs.push(mac(2 * j + 1));
            }
            d.enabled = true;
            d.last_change = Some(1_700_000_000 + i as i64);
            d
        }
    })
}

pub fn guid(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i)
}

pub fn mac(i: usize) -> MacAddr {
    let b = (i as u64).to_be_bytes();
    MacAddr([0x02, 0x00, b[4], b[5], b[6], b[7]])
}
