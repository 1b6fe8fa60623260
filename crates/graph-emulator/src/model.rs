//! Tenant data model: the directory objects the emulator serves, their Graph
//! JSON shapes, and the deterministic synthetic and demo tenants.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every application permission the sync worker may ask for; the demo and
/// synthetic apps request all of them.
pub const ALL_ROLES: &[&str] = &[
    "User.Read.All",
    "GroupMember.Read.All",
    "Device.Read.All",
    "Domain.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];

/// Microsoft Graph's application id: the `resourceAppId` of Graph
/// permissions in `requiredResourceAccess`.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// App-role ids of Graph application permissions (the `id` with
/// `"type": "Role"` in `requiredResourceAccess`), from Microsoft's
/// permissions reference. Ids are the same in every tenant.
pub const GRAPH_APP_ROLE_IDS: &[(&str, &str)] = &[
    ("User.Read.All", "df021288-bdef-4463-88db-98f22de89214"),
    ("GroupMember.Read.All", "98830695-27a2-44f7-8c18-0c3ebc9698f6"),
    ("Device.Read.All", "7438b122-aefc-4978-80ed-43db9fcc7715"),
    ("Domain.Read.All", "dbb9058a-0e50-45d7-ae91-66909b5d4664"),
    (
        "DeviceManagementManagedDevices.Read.All",
        "2f51be20-0bb4-4fed-bf7b-db946066c75e",
    ),
];

/// Microsoft Graph Command Line Tools: the first-party public client the
/// emulator accepts for the device-code flow besides the tenant's own apps.
pub const GRAPH_CLI_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

/// A whole tenant: the seed state of an [`super::Emulator`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant GUID (`tid` claim).
    pub id: String,
    pub domains: Vec<Domain>,
    pub users: Vec<User>,
    pub devices: Vec<Device>,
    pub groups: Vec<Group>,
    pub managed_devices: Vec<ManagedDevice>,
    /// Registered applications (client credentials, requested and granted roles).
    pub apps: Vec<App>,
    /// The administrator who "signs in" to the admin-consent flow.
    pub admin: AdminUser,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Domain {
    /// The domain name (Graph uses the name as the id).
    pub id: String,
    /// "Managed" or "Federated".
    pub authentication_type: String,
    pub is_default: bool,
    pub is_initial: bool,
    pub is_verified: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub mail: Option<String>,
    /// "Member" or "Guest".
    pub user_type: String,
    pub on_premises_sync_enabled: Option<bool>,
    pub on_premises_sam_account_name: Option<String>,
    pub on_premises_domain_name: Option<String>,
    pub on_premises_security_identifier: Option<String>,
    pub proxy_addresses: Vec<String>,
    /// RFC 3339 timestamp.
    pub last_password_change_date_time: Option<String>,
    /// Cloud password for the resource-owner password grant; `None` = no password sign-in.
    pub password: Option<String>,
    pub mfa_required: bool,
    pub locked: bool,
    pub password_expired: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Directory object id.
    pub id: String,
    /// Registration id (what Intune calls `azureADDeviceId`).
    pub device_id: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub operating_system: Option<String>,
    /// "Workplace", "AzureAd" or "ServerAd".
    pub trust_type: Option<String>,
    pub is_compliant: Option<bool>,
    pub is_managed: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    /// Direct members: object ids of users, devices or groups.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagedDevice {
    pub id: String,
    pub azure_ad_device_id: String,
    pub device_name: String,
    /// 12 hex digits, upper case, no separators, as Intune reports them.
    pub wi_fi_mac_address: Option<String>,
    pub ethernet_mac_address: Option<String>,
    /// "compliant", "noncompliant", "unknown", ...
    pub compliance_state: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct App {
    /// The application (client) id, Graph's `appId`.
    pub client_id: String,
    /// The application object's id (Graph's `id`); filled in at start for
    /// apps seeded without one.
    pub object_id: String,
    pub display_name: String,
    /// `AzureADMyOrg` for single-tenant apps.
    pub sign_in_audience: String,
    /// Object id of the app's service principal in this tenant. Seeded apps
    /// get one at start; apps created through Graph only once
    /// `POST /servicePrincipals` succeeds (client credentials need it).
    pub service_principal_id: Option<String>,
    pub secrets: Vec<AppSecret>,
    /// Application permissions the app asks for (granted by admin consent).
    pub required_roles: Vec<String>,
    /// Application permissions currently consented in this tenant.
    pub granted_roles: Vec<String>,
    /// Certificates uploaded to the application (client assertions).
    pub certificates: Vec<AppCertificate>,
    /// Web redirect URIs (`web.redirectUris`); admin consent redirects only
    /// to one of these (for localhost ones, any port).
    pub redirect_uris: Vec<String>,
}

/// A certificate credential of an application: what Entra ID keeps of an
/// uploaded certificate to check client assertions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppCertificate {
    /// base64url SHA-1 thumbprint (the assertion's `x5t`).
    pub x5t: String,
    /// The RSA public key, PKCS#1 DER.
    pub public_key: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSecret {
    pub value: String,
    /// Graph's `keyId` of the password credential (empty for seeded secrets).
    pub key_id: String,
    pub display_name: String,
    /// Unix seconds; a secret past this answers AADSTS7000222.
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminUser {
    pub user_principal_name: String,
    pub password: String,
}

/// Which collection an object, a route or a delta token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Users,
    Devices,
    Groups,
    ManagedDevices,
}

impl Kind {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Devices => "devices",
            Kind::Groups => "groups",
            Kind::ManagedDevices => "deviceManagement/managedDevices",
        }
    }

    pub(crate) fn odata_type(self) -> &'static str {
        match self {
            Kind::Users => "#microsoft.graph.user",
            Kind::Devices => "#microsoft.graph.device",
            Kind::Groups => "#microsoft.graph.group",
            Kind::ManagedDevices => "#microsoft.graph.managedDevice",
        }
    }

    /// Properties returned when the caller sends no `$select`. `None` = all.
    /// Users are the trap: their default set has no `accountEnabled`.
    pub(crate) fn default_props(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::Users => Some(&[
                "businessPhones",
                "displayName",
                "givenName",
                "jobTitle",
                "mail",
                "mobilePhone",
                "officeLocation",
                "preferredLanguage",
                "surname",
                "userPrincipalName",
                "id",
            ]),
            Kind::Groups => Some(&["id", "displayName", "description", "mail"]),
            Kind::Devices | Kind::ManagedDevices => None,
        }
    }

    /// Names `$select` accepts; anything else is a 400 like Graph's.
    pub(crate) fn known_props(self) -> &'static [&'static str] {
        match self {
            Kind::Users => &[
                "id",
                "userPrincipalName",
                "displayName",
                "accountEnabled",
                "mail",
                "userType",
                "onPremisesSyncEnabled",
                "onPremisesSamAccountName",
                "onPremisesDomainName",
                "onPremisesSecurityIdentifier",
                "proxyAddresses",
                "lastPasswordChangeDateTime",
                "businessPhones",
                "givenName",
                "jobTitle",
                "mobilePhone",
                "officeLocation",
                "preferredLanguage",
                "surname",
            ],
            Kind::Devices => &[
                "id",
                "deviceId",
                "displayName",
                "accountEnabled",
                "operatingSystem",
                "trustType",
                "isCompliant",
                "isManaged",
            ],
            Kind::Groups => &["id", "displayName", "description", "mail", "members"],
            Kind::ManagedDevices => &[
                "id",
                "azureADDeviceId",
                "deviceName",
                "wiFiMacAddress",
                "ethernetMacAddress",
                "complianceState",
            ],
        }
    }

    /// Any one of these application roles allows reading the collection.
    pub(crate) fn accepted_roles(self) -> &'static [&'static str] {
        match self {
            Kind::Users => &[
                "User.Read.All",
                "User.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Kind::Devices => &[
                "Device.Read.All",
                "Device.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Kind::Groups => &[
                "GroupMember.Read.All",
                "Group.Read.All",
                "Group.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Kind::ManagedDevices => &[
                "DeviceManagementManagedDevices.Read.All",
                "DeviceManagementManagedDevices.ReadWrite.All",
            ],
        }
    }
}

/// An object the emulator can list and track: its id and its Graph JSON
/// (null properties omitted, collections always present).
pub(crate) trait GraphObject: Clone {
    fn id(&self) -> &str;
    fn to_json(&self) -> Map<String, Value>;
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<Value>) {
    m.insert(k.to_owned(), v.into());
}

fn put_opt<T: Into<Value> + Clone>(m: &mut Map<String, Value>, k: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v.clone().into());
    }
}

impl GraphObject for User {
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "id", self.id.clone());
        // Graph returns empty collections as [], never null.
        put(&mut m, "businessPhones", Value::Array(vec![]));
        put(&mut m, "userPrincipalName", self.user_principal_name.clone());
        put(&mut m, "displayName", self.display_name.clone());
        put(&mut m, "accountEnabled", self.account_enabled);
        put_opt(&mut m, "mail", &self.mail);
        put(&mut m, "userType", self.user_type.clone());
        put_opt(&mut m, "onPremisesSyncEnabled", &self.on_premises_sync_enabled);
        put_opt(&mut m, "onPremisesSamAccountName", &self.on_premises_sam_account_name);
        put_opt(&mut m, "onPremisesDomainName", &self.on_premises_domain_name);
        put_opt(
            &mut m,
            "onPremisesSecurityIdentifier",
            &self.on_premises_security_identifier,
        );
        put(&mut m, "proxyAddresses", self.proxy_addresses.clone());
        put_opt(
            &mut m,
            "lastPasswordChangeDateTime",
            &self.last_password_change_date_time,
        );
        m
    }
}

impl GraphObject for Device {
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "id", self.id.clone());
        put(&mut m, "deviceId", self.device_id.clone());
        put(&mut m, "displayName", self.display_name.clone());
        put(&mut m, "accountEnabled", self.account_enabled);
        put_opt(&mut m, "operatingSystem", &self.operating_system);
        put_opt(&mut m, "trustType", &self.trust_type);
        put_opt(&mut m, "isCompliant", &self.is_compliant);
        put_opt(&mut m, "isManaged", &self.is_managed);
        m
    }
}

impl GraphObject for Group {
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self) -> Map<String, Value> {
        // Members are a navigation property: rendered separately as members@delta.
        let mut m = Map::new();
        put(&mut m, "id", self.id.clone());
        put(&mut m, "displayName", self.display_name.clone());
        m
    }
}

impl GraphObject for ManagedDevice {
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "id", self.id.clone());
        put(&mut m, "azureADDeviceId", self.azure_ad_device_id.clone());
        put(&mut m, "deviceName", self.device_name.clone());
        put_opt(&mut m, "wiFiMacAddress", &self.wi_fi_mac_address);
        put_opt(&mut m, "ethernetMacAddress", &self.ethernet_mac_address);
        put(&mut m, "complianceState", self.compliance_state.clone());
        m
    }
}

/// splitmix64: deterministic, fast, good enough to spread synthetic data.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A GUID-shaped id derived from (seed, namespace, n).
pub(crate) fn guid(seed: u64, ns: u64, n: u64) -> String {
    let a = mix(seed ^ mix(ns.wrapping_mul(0x1000_0000_01B3) ^ n));
    let b = mix(a ^ n.rotate_left(17));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn mac(seed: u64, ns: u64, n: u64) -> String {
    // Locally administered unicast prefix so synthetic MACs never collide with real OUIs.
    // The namespace is spread before it meets `n`: with a plain XOR, (6, 1251)
    // and (7, 1250) gave two devices the same MAC.
    let v = (mix(seed ^ mix(ns.wrapping_mul(0x1000_0000_01B3) ^ n)) & 0x00ff_ffff_ffff) | 0x0200_0000_0000;
    format!("{v:012X}")
}

/// Unix seconds → RFC 3339 UTC (`2024-05-01T12:00:00Z`).
/// Through `humantime`; times past 9999 (which nothing here makes) are
/// written as the last second it can write.
pub(crate) fn rfc3339(secs: u64) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST: u64 = 253_402_300_799;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(LAST));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Client id of the app in [`Tenant::synthetic`] (seed-independent, so benches can hard-code it).
pub const SYNTHETIC_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000a99e";
/// Its secret.
pub const SYNTHETIC_CLIENT_SECRET: &str = "synthetic-secret";
/// Client id of the app in [`Tenant::demo`].
/// The consent redirect `entra-radius entra consent` listens on (any port).
pub const CONSENT_REDIRECT_URI: &str = "http://localhost/consent";

pub const DEMO_CLIENT_ID: &str = "11111111-2222-4333-8444-555555555555";
/// Its secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

fn all_roles() -> Vec<String> {
    ALL_ROLES.iter().map(|r| (*r).to_owned()).collect()
}

impl Tenant {
    /// A large deterministic tenant for tests and benchmarks. Same seed, same
    /// tenant. Domains: an initial `*.onmicrosoft.com`, a managed default and
    /// a federated one (every 10th user). Groups of ~500 users, every group
    /// but the last nesting the next one. One app with all roles granted.
    pub fn synthetic(users: usize, devices: usize, seed: u64) -> Tenant {
        let tid = guid(seed, 1, 0);
        let domains = vec![
            Domain {
                id: "synthetic.onmicrosoft.com".into(),
                authentication_type: "Managed".into(),
                is_default: false,
                is_initial: true,
                is_verified: true,
            },
            Domain {
                id: "corp.example.com".into(),
                authentication_type: "Managed".into(),
                is_default: true,
                is_initial: false,
                is_verified: true,
            },
            Domain {
                id: "fed.example.com".into(),
                authentication_type: "Federated".into(),
                is_default: false,
                is_initial: false,
                is_verified: true,
            },
        ];
        let base_time = 1_700_000_000u64;
        let mut us = Vec::with_capacity(users);
        for i in 0..users {
            let r = mix(seed ^ mix(i as u64));
            let domain = if i % 10 == 9 {
                "fed.example.com"
            } else {
                "corp.example.com"
            };
            let upn = format!("user{i}@{domain}");
            let synced = r.is_multiple_of(5);
            us.push(User {
                id: guid(seed, 2, i as u64),
                display_name: format!("User {i}"),
                account_enabled: r % 33 != 1,
                mail: (r % 7 != 3).then(|| upn.clone()),
                user_type: if r % 50 == 7 { "Guest" } else { "Member" }.into(),
                on_premises_sync_enabled: synced.then_some(true),
                on_premises_sam_account_name: synced.then(|| format!("user{i}")),
                on_premises_domain_name: synced.then(|| "corp.example.com".into()),
                on_premises_security_identifier: synced
                    .then(|| format!("S-1-5-21-1004336348-1177238915-682003330-{}", 1000 + i)),
                proxy_addresses: vec![format!("SMTP:{upn}")],
                last_password_change_date_time: Some(rfc3339(base_time + (r % 10_000_000))),
                password: Some(format!("Pw-{i}")),
                mfa_required: r % 20 == 11,
                locked: r % 200 == 13,
                password_expired: r % 100 == 17,
                user_principal_name: upn,
            });
        }
        let mut ds = Vec::with_capacity(devices);
        let mut mds = Vec::with_capacity(devices);
        for i in 0..devices {
            let r = mix(seed ^ mix((i as u64) | (1 << 40)));
            let device_id = guid(seed, 4, i as u64);
            let trust = ["AzureAd", "Workplace", "ServerAd"][(r % 3) as usize];
            let managed = !r.is_multiple_of(5);
            ds.push(Device {
                id: guid(seed, 3, i as u64),
                device_id: device_id.clone(),
                display_name: format!("DEVICE-{i}"),
                account_enabled: r % 40 != 1,
                operating_system: Some(["Windows", "iOS", "Android", "MacMDM"][(r % 4) as usize].into()),
                trust_type: Some(trust.into()),
                is_compliant: Some(r % 9 != 2),
                is_managed: Some(managed),
            });
            if managed {
                mds.push(ManagedDevice {
                    id: guid(seed, 5, i as u64),
                    azure_ad_device_id: device_id,
                    device_name: format!("DEVICE-{i}"),
                    wi_fi_mac_address: Some(mac(seed, 6, i as u64)),
                    ethernet_mac_address: r.is_multiple_of(2).then(|| mac(seed, 7, i as u64)),
                    compliance_state: if r % 9 != 2 { "compliant" } else { "noncompliant" }.into(),
                });
            }
        }
        let n_groups = (users / 500).max(3);
        let mut gs: Vec<Group> = (0..n_groups)
            .map(|g| Group {
                id: guid(seed, 8, g as u64),
                display_name: format!("Group {g}"),
                members: Vec::new(),
            })
            .collect();
        for (i, u) in us.iter().enumerate() {
            gs[i % n_groups].members.push(u.id.clone());
        }
        for (i, d) in ds.iter().enumerate().step_by(7) {
            gs[i % n_groups].members.push(d.id.clone());
        }
        for g in 0..n_groups - 1 {
            let child = gs[g + 1].id.clone();
            gs[g].members.push(child);
        }
        Tenant {
            id: tid,
            domains,
            users: us,
            devices: ds,
            groups: gs,
            managed_devices: mds,
            apps: vec![App {
                client_id: SYNTHETIC_CLIENT_ID.into(),
                display_name: "entra-radius sync (synthetic)".into(),
                secrets: vec![AppSecret {
                    value: SYNTHETIC_CLIENT_SECRET.into(),
                    ..AppSecret::default()
                }],
                required_roles: all_roles(),
                granted_roles: all_roles(),
                redirect_uris: vec![CONSENT_REDIRECT_URI.into()],
                ..App::default()
            }],
            admin: AdminUser {
                user_principal_name: "admin@synthetic.onmicrosoft.com".into(),
                password: "admin-password".into(),
            },
        }
    }

    /// A small named tenant for `serve --demo` and readable tests.
    ///
    /// Users (UPN / password): `alice@contoso.example` / `alice-pw` (enabled),
    /// `bob@contoso.example` / `bob-pw` (disabled), `carol@contoso.example` /
    /// `carol-pw` (MFA required), `dave@fabrikam.example` / `dave-pw`
    /// (federated domain: password grant always fails with 50126).
    pub fn demo() -> Tenant {
        let tid = "72f988bf-0000-4000-8000-00000000de30".to_owned();
        let d = |id: &str, auth: &str, default: bool, initial: bool| Domain {
            id: id.into(),
            authentication_type: auth.into(),
            is_default: default,
            is_initial: initial,
            is_verified: true,
        };
        let u = |n: u64, name: &str, domain: &str, enabled: bool, mfa: bool| {
            let upn = format!("{}@{domain}", name.to_lowercase());
            User {
                id: guid(42, 2, n),
                user_principal_name: upn.clone(),
                display_name: name.into(),
                account_enabled: enabled,
                mail: Some(upn.clone()),
                user_type: "Member".into(),
                proxy_addresses: vec![format!("SMTP:{upn}")],
                last_password_change_date_time: Some("2024-03-01T09:30:00Z".into()),
                password: Some(format!("{}-pw", name.to_lowercase())),
                mfa_required: mfa,
                ..User::default()
            }
        };
        let users = vec![
            u(1, "Alice", "contoso.example", true, false),
            u(2, "Bob", "contoso.example", false, false),
            u(3, "Carol", "contoso.example", true, true),
            u(4, "Dave", "fabrikam.example", true, false),
        ];
        let dev = |n: u64, name: &str, os: &str, trust: &str| Device {
            id: guid(42, 3, n),
            device_id: guid(42, 4, n),
            display_name: name.into(),
            account_enabled: true,
            operating_system: Some(os.into()),
            trust_type: Some(trust.into()),
            is_compliant: Some(true),
            is_managed: Some(true),
        };
        let devices = vec![
            dev(1, "ALICE-LAPTOP", "Windows", "AzureAd"),
            dev(2, "CAROL-PHONE", "iOS", "Workplace"),
            dev(3, "PRINTER-01", "Windows", "ServerAd"),
        ];
        let managed_devices = devices
            .iter()
            .enumerate()
            .map(|(i, d)| ManagedDevice {
                id: guid(42, 5, i as u64),
                azure_ad_device_id: d.device_id.clone(),
                device_name: d.display_name.clone(),
                wi_fi_mac_address: Some(mac(42, 6, i as u64)),
                ethernet_mac_address: (i != 1).then(|| mac(42, 7, i as u64)),
                compliance_state: "compliant".into(),
            })
            .collect();
        let platform = Group {
            id: guid(42, 8, 2),
            display_name: "Platform".into(),
            members: vec![users[2].id.clone(), devices[1].id.clone()],
        };
        let engineering = Group {
            id: guid(42, 8, 1),
            display_name: "Engineering".into(),
            members: vec![
                users[0].id.clone(),
                users[1].id.clone(),
                devices[0].id.clone(),
                platform.id.clone(),
            ],
        };
        Tenant {
            id: tid,
            domains: vec![
                d("contosodemo.onmicrosoft.com", "Managed", false, true),
                d("contoso.example", "Managed", true, false),
                d("fabrikam.example", "Federated", false, false),
            ],
            users,
            devices,
            groups: vec![engineering, platform],
            managed_devices,
            apps: vec![App {
                client_id: DEMO_CLIENT_ID.into(),
                display_name: "entra-radius (demo)".into(),
                secrets: vec![AppSecret {
                    value: DEMO_CLIENT_SECRET.into(),
                    ..AppSecret::default()
                }],
                required_roles: all_roles(),
                granted_roles: all_roles(),
                redirect_uris: vec![CONSENT_REDIRECT_URI.into()],
                ..App::default()
            }],
            admin: AdminUser {
                user_principal_name: "admin@contosodemo.onmicrosoft.com".into(),
                password: "admin-pw".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_285_400), "2024-03-01T09:30:00Z");
    }

    #[test]
    fn synthetic_is_deterministic_and_unique() {
        let a = Tenant::synthetic(2000, 300, 7);
        let b = Tenant::synthetic(2000, 300, 7);
        assert_eq!(a.users, b.users);
        let ids: std::collections::HashSet<_> = a.users.iter().map(|u| &u.id).collect();
        assert_eq!(ids.len(), 2000);
        assert!(a.domains.iter().any(|d| d.authentication_type == "Federated"));
        let nested = a.groups[0].members.contains(&a.groups[1].id);
        assert!(nested, "groups nest");
        let macs: Vec<&str> = a
            .managed_devices
            .iter()
            .flat_map(|m| [m.wi_fi_mac_address.as_deref(), m.ethernet_mac_address.as_deref()])
            .flatten()
            .collect();
        let distinct: std::collections::HashSet<&&str> = macs.iter().collect();
        assert_eq!(distinct.len(), macs.len(), "no two devices share a MAC");
        for m in &a.managed_devices {
            let mac = m.wi_fi_mac_address.as_deref().unwrap_or_default();
            assert_eq!(mac.len(), 12);
            assert!(mac.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        }
    }
}
