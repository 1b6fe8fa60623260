//! Lookup-time precedence across directories, as a pure function over an
//! ordered chain: the first directory that knows the identity decides, even
//! if the account it finds is disabled; a directory that cannot answer
//! before that is a reject, never a silent fall-through to a lower one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::{Account, AccountKind, DirectoryKind, EntraReplica, Identity};
use crate::clock::Rfc3339;

/// One directory's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(Arc<Account>),
    NotFound,
    /// Cannot answer now (not loaded, LDAP down, …); the reason is logged
    /// and shown to the admin.
    Unavailable(String),
    /// Not known from memory: only [`Directory::lookup_slow`] can answer
    /// (Active Directory on a cache miss). The receive loop never waits
    /// for that; the request is deferred as slow work.
    Pending,
}

/// What [`Directory::lookup_slow`] returns.
pub type SlowLookup<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Lookup> + Send + 'a>>;

pub trait Directory: Send + Sync {
    fn kind(&self) -> DirectoryKind;
    /// From memory only; may answer [`Lookup::Pending`].
    fn lookup(&self, id: &Identity) -> Lookup;
    /// Asks the directory's source (over the network) when `lookup`
    /// answered `Pending`, and remembers the answer so that the next
    /// `lookup` has it. Never answers `Pending`.
    fn lookup_slow<'a>(&'a self, id: &'a Identity) -> SlowLookup<'a> {
        let l = match self.lookup(id) {
            Lookup::Pending => Lookup::Unavailable("no answer from memory".into()),
            l => l,
        };
        Box::pin(std::future::ready(l))
    }
    /// Where the last answer came from, for `accounts lookup` (the DC).
    fn source(&self) -> Option<String> {
        None
    }
}

/// The Entra replica as a directory, with the integration switch.
pub struct EntraDirectory {
    replica: EntraReplica,
    enabled: AtomicBool,
    unavailable: ArcSwapOption<String>,
}

impl EntraDirectory {
    /// Enabled and available.
    pub fn new(replica: EntraReplica) -> Self {
        EntraDirectory {
            replica,
            enabled: AtomicBool::new(true),
            unavailable: ArcSwapOption::empty(),
        }
    }

    pub fn replica(&self) -> &EntraReplica {
        &self.replica
    }

    /// Disabled: Entra accounts take no part in decisions (NotFound).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// `Some(reason)`: every lookup answers Unavailable, e.g. "replica not
    /// loaded yet"; `None`: answers from the replica again.
    pub fn set_unavailable(&self, reason: Option<String>) {
        self.unavailable.store(reason.map(Arc::new));
    }
}

impl Directory for EntraDirectory {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::Entra
    }

    fn lookup(&self, id: &Identity) -> Lookup {
        if !self.is_enabled() {
            return Lookup::NotFound;
        }
        if let Some(reason) = &*self.unavailable.load() {
            return Lookup::Unavailable(String::clone(reason));
        }
        match self.replica.lookup(id) {
            Some(a) => Lookup::Found(a),
            None => Lookup::NotFound,
        }
    }
}

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The account may be disabled: the caller rejects it then, and no lower
    /// directory gets a say.
    Found {
        directory: DirectoryKind,
        account: Arc<Account>,
    },
    NotFound,
    /// Reject: a directory above any match could not answer.
    Unavailable {
        directory: DirectoryKind,
        reason: String,
    },
    /// The directory at `at` in the chain (every one above it said
    /// NotFound) must be asked off the receive loop:
    /// [`Resolver::resolve_slow`].
    Pending {
        directory: DirectoryKind,
        at: usize,
    },
}

/// The directories in order of precedence (first = highest).
pub struct Resolver {
    chain: Vec<Arc<dyn Directory>>,
}

impl Resolver {
    pub fn new(chain: Vec<Arc<dyn Directory>>) -> Self {
        Resolver { chain }
    }

    /// The hot path: stops at the first directory that decides, from
    /// memory; `Pending` when a directory can answer only over the network.
    pub fn resolve(&self, id: &Identity) -> Resolution {
        self.resolve_from(id, 0)
    }

    fn resolve_from(&self, id: &Identity, start: usize) -> Resolution {
        for (at, d) in self.chain.iter().enumerate().skip(start) {
            match d.lookup(id) {
                Lookup::Pending => {
                    return Resolution::Pending {
                        directory: d.kind(),
                        at,
                    };
                }
                l => {
                    if let Some(r) = Self::decided(d.as_ref(), id, l) {
                        return r;
                    }
                }
            }
        }
        Resolution::NotFound
    }

    /// `None`: NotFound, ask the next one.
    fn decided(d: &dyn Directory, id: &Identity, l: Lookup) -> Option<Resolution> {
        match l {
            Lookup::Found(account) => Some(Resolution::Found {
                directory: d.kind(),
                account,
            }),
            Lookup::NotFound => None,
            Lookup::Unavailable(reason) => {
                tracing::warn!(directory = %d.kind(), %reason, identity = %id, "directory unavailable; rejecting");
                Some(Resolution::Unavailable {
                    directory: d.kind(),
                    reason,
                })
            }
            Lookup::Pending => Some(Resolution::Unavailable {
                directory: d.kind(),
                reason: "no answer".into(),
            }),
        }
    }

    /// `resolve`, asking over the network the directories that cannot
    /// answer from memory. Off the receive loop only (slow work).
    pub async fn resolve_slow(&self, id: &Identity) -> Resolution {
        let mut start = 0;
        loop {
            match self.resolve_from(id, start) {
                Resolution::Pending { at, .. } => {
                    let d = &self.chain[at];
                    let l = d.lookup_slow(id).await;
                    if let Some(r) = Self::decided(d.as_ref(), id, l) {
                        return r;
                    }
                    start = at + 1;
                }
                r => return r,
            }
        }
    }

    /// Asks every directory from memory (for `accounts lookup`): the
    /// decision `resolve` would make, and what each directory answered.
    pub fn explain(&self, id: &Identity) -> Explanation {
        let answers = self.chain.iter().map(|d| d.lookup(id)).collect();
        self.explain_from(id, answers)
    }

    /// `explain`, asking over the network what memory does not hold.
    pub async fn explain_slow(&self, id: &Identity) -> Explanation {
        let mut answers = Vec::with_capacity(self.chain.len());
        for d in &self.chain {
            let l = match d.lookup(id) {
                Lookup::Pending => d.lookup_slow(id).await,
                l => l,
            };
            answers.push(l);
        }
        self.explain_from(id, answers)
    }

    fn explain_from(&self, id: &Identity, answers: Vec<Lookup>) -> Explanation {
        let mut decided = false;
        let mut decision = Decision::NotFound;
        let mut directories = Vec::with_capacity(self.chain.len());
        for (d, l) in self.chain.iter().zip(answers) {
            let directory = d.kind();
            let l = match l {
                Lookup::Pending => Lookup::Unavailable("not in memory; not asked".into()),
                l => l,
            };
            let answer = match l {
                Lookup::Found(a) => {
                    let account = AccountSummary::of(&a);
                    if decided {
                        Answer::Shadowed { account }
                    } else {
                        decided = true;
                        decision = Decision::Found {
                            directory,
                            account: account.clone(),
                        };
                        Answer::Decided { account }
                    }
                }
                Lookup::NotFound => Answer::NotFound,
                Lookup::Unavailable(reason) => {
                    if !decided {
                        decided = true;
                        decision = Decision::Unavailable {
                            directory,
                            reason: reason.clone(),
                        };
                    }
                    Answer::Unavailable { reason }
                }
                Lookup::Pending => unreachable!("mapped above"),
            };
            directories.push(LowerAnswer {
                directory,
                answer,
                source: d.source(),
            });
        }
        Explanation {
            identity: id.to_string(),
            form: id.form(),
            decision,
            directories,
        }
    }
}

/// What `accounts lookup` shows; serialised as JSON by the admin API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// The identity as classified and case-folded.
    pub identity: String,
    /// `upn`, `sam`, `mac`, `guid` or `name`.
    pub form: &'static str,
    pub decision: Decision,
    /// Every directory in precedence order with its own answer.
    pub directories: Vec<LowerAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    Found {
        directory: DirectoryKind,
        account: AccountSummary,
    },
    NotFound,
    Unavailable {
        directory: DirectoryKind,
        reason: String,
    },
}

/// One directory's answer within an explanation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LowerAnswer {
    pub directory: DirectoryKind,
    #[serde(flatten)]
    pub answer: Answer,
    /// Where the directory's answer came from (AD: the DC that answered last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// This directory's account is the one used.
    Decided {
        account: AccountSummary,
    },
    /// Knows the identity too, but a higher directory decided.
    Shadowed {
        account: AccountSummary,
    },
    NotFound,
    Unavailable {
        reason: String,
    },
}

/// What an operator needs to see of an account; no secrets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountSummary {
    pub object_id: String,
    pub name: String,
    pub kind: AccountKind,
    pub enabled: bool,
    pub groups: Vec<String>,
    pub last_change: Option<i64>,
}

impl AccountSummary {
    pub fn of(a: &Account) -> Self {
        AccountSummary {
            object_id: a.object_id().to_owned(),
            name: a.label(),
            kind: a.kind(),
            enabled: a.enabled(),
            groups: a.groups().iter().map(|g| g.name.clone()).collect(),
            last_change: a.last_change(),
        }
    }
}

impl fmt::Display for AccountSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.enabled { "enabled" } else { "disabled" };
        write!(f, "{}: {state}, {}", self.name, self.kind)?;
        if !self.groups.is_empty() {
            write!(f, ", groups: {}", self.groups.join(", "))?;
        }
        if let Some(t) = self.last_change {
            write!(f, ", last change {}", Rfc3339(t))?;
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "identity: {} ({})", self.identity, self.form)?;
        match &self.decision {
            Decision::Found { directory, account } => writeln!(f, "decided by: {directory} ({account})")?,
            Decision::NotFound => writeln!(f, "decided by: none (not found in any directory)")?,
            Decision::Unavailable { directory, reason } => {
                writeln!(f, "decided by: {directory} unavailable ({reason}): reject")?
            }
        }
        for d in &self.directories {
            match &d.answer {
                Answer::Decided { .. } => {}
                Answer::Shadowed { account } => writeln!(f, "shadowed: {} ({account})", d.directory)?,
                Answer::NotFound => writeln!(f, "not found: {}", d.directory)?,
                Answer::Unavailable { reason } => writeln!(f, "unavailable: {} ({reason})", d.directory)?,
            }
            if let Some(s) = &d.source {
                writeln!(f, "{}: the DC that answered last: {s}", d.directory)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::directory::{AccountData, Change, GroupRef};

    /// Answers the same for every identity and counts the calls.
    struct Fake {
        kind: DirectoryKind,
        answer: Lookup,
        calls: AtomicUsize,
    }

    impl Directory for Fake {
        fn kind(&self) -> DirectoryKind {
            self.kind
        }
        fn lookup(&self, _: &Identity) -> Lookup {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.answer.clone()
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum A {
        Enabled,
        Disabled,
        Missing,
        Down,
    }

    fn account(kind: DirectoryKind, enabled: bool) -> Arc<Account> {
        let mut d = AccountData::new(kind, AccountKind::User, format!("{kind}-alice"));
        d.sam_account_name = Some("alice".into());
        d.enabled = enabled;
        Arc::new(d.into())
    }

    fn fake(kind: DirectoryKind, a: A) -> Arc<Fake> {
        let answer = match a {
            A::Enabled => Lookup::Found(account(kind, true)),
            A::Disabled => Lookup::Found(account(kind, false)),
            A::Missing => Lookup::NotFound,
            A::Down => Lookup::Unavailable(format!("{kind} down")),
        };
        Arc::new(Fake {
            kind,
            answer,
            calls: AtomicUsize::new(0),
        })
    }

    /// What precedence demands, written independently of `resolve`:
    /// the first answer other than NotFound decides.
    fn expected(chain: &[(DirectoryKind, A)]) -> Option<(DirectoryKind, A)> {
        chain.iter().copied().find(|(_, a)| !matches!(a, A::Missing))
    }

    /// Pending from memory; the slow answer is `slow`.
    struct Remote {
        slow: Lookup,
        slow_calls: AtomicUsize,
    }

    impl Directory for Remote {
        fn kind(&self) -> DirectoryKind {
            DirectoryKind::ActiveDirectory
        }
        fn lookup(&self, _: &Identity) -> Lookup {
            Lookup::Pending
        }
        fn lookup_slow<'a>(&'a self, _: &'a Identity) -> SlowLookup<'a> {
            self.slow_calls.fetch_add(1, Ordering::Relaxed);
            Box::pin(std::future::ready(self.slow.clone()))
        }
    }

    #[tokio::test]
    async fn a_pending_directory_is_asked_only_off_the_hot_path_and_only_below_a_miss() {
        let id = Identity::parse("alice");
        let remote = |slow| {
            Arc::new(Remote {
                slow,
                slow_calls: AtomicUsize::new(0),
            })
        };
        // Entra knows alice: AD is never asked, not even slowly.
        let ad = remote(Lookup::NotFound);
        let r = Resolver::new(vec![fake(DirectoryKind::Entra, A::Enabled), ad.clone()]);
        assert!(matches!(
            r.resolve(&id),
            Resolution::Found {
                directory: DirectoryKind::Entra,
                ..
            }
        ));
        assert!(matches!(
            r.resolve_slow(&id).await,
            Resolution::Found {
                directory: DirectoryKind::Entra,
                ..
            }
        ));
        assert_eq!(ad.slow_calls.load(Ordering::Relaxed), 0);
        // Entra misses: the hot path says Pending; the slow path asks AD.
        let local = fake(DirectoryKind::Local, A::Enabled);
        let ad = remote(Lookup::NotFound);
        let r = Resolver::new(vec![fake(DirectoryKind::Entra, A::Missing), ad.clone(), local.clone()]);
        assert_eq!(
            r.resolve(&id),
            Resolution::Pending {
                directory: DirectoryKind::ActiveDirectory,
                at: 1
            }
        );
        assert_eq!(local.calls.load(Ordering::Relaxed), 0);
        assert!(matches!(
            r.resolve_slow(&id).await,
            Resolution::Found {
                directory: DirectoryKind::Local,
                ..
            }
        ));
        assert_eq!(ad.slow_calls.load(Ordering::Relaxed), 1);
        // AD down above local: a reject with its reason, never local.
        let local = fake(DirectoryKind::Local, A::Enabled);
        let r = Resolver::new(vec![remote(Lookup::Unavailable("dc down".into())), local.clone()]);
        assert_eq!(
            r.resolve_slow(&id).await,
            Resolution::Unavailable {
                directory: DirectoryKind::ActiveDirectory,
                reason: "dc down".into()
            }
        );
        assert_eq!(local.calls.load(Ordering::Relaxed), 0);
        // explain_slow asks AD and shows its answer.
        let r = Resolver::new(vec![remote(Lookup::Found(account(
            DirectoryKind::ActiveDirectory,
            true,
        )))]);
        assert!(matches!(r.explain(&id).decision, Decision::Unavailable { .. }));
        assert!(matches!(
            r.explain_slow(&id).await.decision,
            Decision::Found {
                directory: DirectoryKind::ActiveDirectory,
                ..
            }
        ));
    }

    #[test]
    fn precedence_table() {
        use DirectoryKind::*;
        let all = [A::Enabled, A::Disabled, A::Missing, A::Down];
        let orders = [[Entra, ActiveDirectory, Local], [Local, Entra, ActiveDirectory]];
        let id = Identity::parse("alice");
        let mut rows = 0;
        for order in orders {
            for a0 in all {
                for a1 in all {
                    for a2 in all {
                        let chain = [(order[0], a0), (order[1], a1), (order[2], a2)];
                        let fakes: Vec<Arc<Fake>> = chain.iter().map(|&(k, a)| fake(k, a)).collect();
                        let r = Resolver::new(fakes.iter().map(|f| f.clone() as Arc<dyn Directory>).collect());
                        let got = r.resolve(&id);
                        let row = format!("{chain:?}");
                        match expected(&chain) {
                            None => assert_eq!(got, Resolution::NotFound, "{row}"),
                            Some((k, A::Down)) => assert_eq!(
                                got,
                                Resolution::Unavailable {
                                    directory: k,
                                    reason: format!("{k} down")
                                },
                                "{row}"
                            ),
                            Some((k, a)) => match &got {
                                Resolution::Found { directory, account } => {
                                    assert_eq!(*directory, k, "{row}");
                                    assert_eq!(account.directory(), k, "{row}");
                                    assert_eq!(account.enabled(), matches!(a, A::Enabled), "{row}");
                                }
                                other => panic!("{row}: {other:?}"),
                            },
                        }
                        // The hot path never asks below the deciding directory.
                        let decided_at = chain
                            .iter()
                            .position(|(_, a)| !matches!(a, A::Missing))
                            .unwrap_or(chain.len() - 1);
                        for (i, f) in fakes.iter().enumerate() {
                            let want = usize::from(i <= decided_at);
                            assert_eq!(f.calls.load(Ordering::Relaxed), want, "{row} #{i}");
                        }
                        // explain agrees with resolve and asks everyone.
                        let e = r.explain(&id);
                        match (&got, &e.decision) {
                            (Resolution::NotFound, Decision::NotFound) => {}
                            (Resolution::Found { directory, .. }, Decision::Found { directory: d, .. }) => {
                                assert_eq!(directory, d, "{row}")
                            }
                            (Resolution::Unavailable { directory, .. }, Decision::Unavailable { directory: d, .. }) => {
                                assert_eq!(directory, d, "{row}")
                            }
                            other => panic!("{row}: {other:?}"),
                        }
                        assert_eq!(e.directories.len(), 3);
                        rows += 1;
                    }
                }
            }
        }
        assert_eq!(rows, 128);
    }

    fn entra_alice() -> EntraReplica {
        let replica = EntraReplica::new();
        let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, "oid-a");
        d.upn = Some("alice@contoso.com".into());
        d.sam_account_name = Some("alice".into());
        d.netbios_domain = Some("CONTOSO".into());
        d.enabled = true;
        d.groups = vec![GroupRef {
            id: "g1".into(),
            name: "Engineering".into(),
        }];
        d.last_change = Some(1_700_000_000);
        replica.apply(vec![Change::Upsert(d.into())]);
        replica
    }

    #[test]
    fn entra_switch_and_unavailability() {
        let entra = Arc::new(EntraDirectory::new(entra_alice()));
        let local = fake(DirectoryKind::Local, A::Enabled);
        let r = Resolver::new(vec![entra.clone(), local.clone()]);
        let id = Identity::parse("CONTOSO\\alice");
        assert!(matches!(
            r.resolve(&id),
            Resolution::Found {
                directory: DirectoryKind::Entra,
                ..
            }
        ));
        assert_eq!(local.calls.load(Ordering::Relaxed), 0);

        entra.set_unavailable(Some("replica not loaded yet".into()));
        assert_eq!(
            r.resolve(&id),
            Resolution::Unavailable {
                directory: DirectoryKind::Entra,
                reason: "replica not loaded yet".into()
            }
        );
        entra.set_unavailable(None);

        // Disabled integration: Entra knows nobody, local decides.
        entra.set_enabled(false);
        assert!(matches!(
            r.resolve(&id),
            Resolution::Found {
                directory: DirectoryKind::Local,
                ..
            }
        ));
    }

    #[test]
    fn explanation_json_and_text() {
        let entra = Arc::new(EntraDirectory::new(entra_alice()));
        let ad = fake(DirectoryKind::ActiveDirectory, A::Down);
        let local = fake(DirectoryKind::Local, A::Disabled);
        let r = Resolver::new(vec![entra, ad, local]);
        let e = r.explain(&Identity::parse("Alice@Contoso.com"));
        let text = e.to_string();
        assert_eq!(
            text,
            "identity: alice@contoso.com (upn)\n\
             decided by: entra (alice@contoso.com: enabled, user, groups: Engineering, last change 2023-11-14T22:13:20Z)\n\
             unavailable: ad (ad down)\n\
             shadowed: local (alice: disabled, user)\n"
        );
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["decision"]["outcome"], "found");
        assert_eq!(j["decision"]["directory"], "entra");
        assert_eq!(j["directories"][1]["answer"], "unavailable");
        assert_eq!(j["directories"][2]["answer"], "shadowed");
        assert_eq!(j["directories"][2]["directory"], "local");

        let none = Resolver::new(vec![]).explain(&Identity::parse("x"));
        assert_eq!(
            none.to_string(),
            "identity: x (name)\ndecided by: none (not found in any directory)\n"
        );
    }
}
