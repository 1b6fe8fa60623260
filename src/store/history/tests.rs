use super::*;

fn rec(i: i64, identity: &str, accept: bool) -> HistoryRecord {
    HistoryRecord {
        time_ms: 1_000_000 + i,
        client: if i % 2 == 0 { "sw1" } else { "sw2" }.into(),
        nas_addr: "10.0.0.1".into(),
        nas_port: Some(format!("Gi1/0/{i}")),
        called_station_id: None,
        calling_station_id: Some("02-00-00-00-00-01".into()),
        mac: Some("02:00:00:00:00:01".into()),
        identity: identity.into(),
        method: "pap".into(),
        directory: Some("local".into()),
        accept,
        reason: if accept { "ok" } else { "wrong password" }.into(),
        vlan: None,
        account: Some(format!("local:{identity}")),
        policy_rule: accept.then_some(1),
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state")).unwrap();
    (dir, s)
}

fn wait_written(w: &HistoryWriter, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.stats().written.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "not written");
        thread::sleep(Duration::from_millis(5));
    }
}

const FOREVER: Retention = Retention {
    keep: Duration::from_secs(1 << 40),
    max_rows: u64::MAX,
};

#[test]
fn records_are_written_and_filtered() {
    let (_d, s) = store();
    let (w, h) = HistoryWriter::spawn(&s, FOREVER).unwrap();
    for i in 0..10 {
        w.record(rec(i, if i < 4 { "Alice" } else { "bob" }, i % 3 != 0));
    }
    wait_written(&w, 10);
    let all = s
        .auth_history(&HistoryFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|p| p[0].id > p[1].id), "newest first");
    assert_eq!(all[0].record, rec(9, "bob", false));
    let alice = HistoryFilter {
        identity: Some("alice".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.auth_history(&alice).unwrap().len(), 4, "identity without case");
    let rejects = HistoryFilter {
        accept: Some(false),
        client: Some("sw1".into()),
        limit: 100,
        ..Default::default()
    };
    let got: Vec<i64> = s
        .auth_history(&rejects)
        .unwrap()
        .iter()
        .map(|r| r.record.time_ms - 1_000_000)
        .collect();
    assert_eq!(got, [6, 0]);
    let since = HistoryFilter {
        since_ms: Some(1_000_008),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.auth_history(&since).unwrap().len(), 2);
    let follow = HistoryFilter {
        after_id: Some(all[2].id),
        limit: 100,
        ..Default::default()
    };
    let newer: Vec<i64> = s.auth_history(&follow).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(newer, [all[1].id, all[0].id], "oldest first after an id");
    let limited = HistoryFilter {
        limit: 3,
        ..Default::default()
    };
    assert_eq!(s.auth_history(&limited).unwrap().len(), 3);
    // A scan bound looks at the newest rows only: alice's 4 decisions
    // are the oldest 4 of 10.
    let recent_alice = |scan| HistoryFilter {
        scan: Some(scan),
        ..alice.clone()
    };
    assert_eq!(s.auth_history(&recent_alice(6)).unwrap().len(), 0);
    assert_eq!(s.auth_history(&recent_alice(7)).unwrap().len(), 1);
    assert_eq!(s.auth_history(&recent_alice(1_000)).unwrap().len(), 4);
    drop(w);
    h.join().unwrap();
}

#[test]
fn a_record_made_of_parts_reads_back_as_they_were() {
    let (_d, s) = store();
    let (w, h) = HistoryWriter::spawn(&s, FOREVER).unwrap();
    let v6 = RecordParts {
        time_ms: 5,
        client: "sw1",
        nas_addr: NasAddr::Ip("2001:db8::1".parse().unwrap()),
        nas_port: NasPort::Number(7),
        called_station_id: Some(""),
        calling_station_id: None,
        mac: None,
        identity: "jürgen",
        method: "pap",
        directory: None,
        accept: false,
        reason: "no such user",
        vlan: None,
        account: None,
        policy_rule: None,
    };
    let v4 = RecordParts {
        time_ms: 6,
        nas_addr: NasAddr::Ip("192.0.2.10".parse().unwrap()),
        nas_port: NasPort::Id("Gi1/0/1"),
        mac: Some("02-00-00-00-00-01"),
        directory: Some("local"),
        accept: true,
        reason: "",
        vlan: Some("30"),
        account: Some("local:jürgen"),
        policy_rule: Some(2),
        ..v6
    };
    w.record_with(|| Pending::new(&v6));
    w.record_with(|| Pending::new(&v4));
    wait_written(&w, 2);
    let got: Vec<HistoryRecord> = s
        .auth_history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    let first = HistoryRecord {
        time_ms: 5,
        client: "sw1".into(),
        nas_addr: "2001:db8::1".into(),
        nas_port: Some("7".into()),
        called_station_id: Some(String::new()),
        calling_station_id: None,
        mac: None,
        identity: "jürgen".into(),
        method: "pap".into(),
        directory: None,
        accept: false,
        reason: "no such user".into(),
        vlan: None,
        account: None,
        policy_rule: None,
    };
    let second = HistoryRecord {
        time_ms: 6,
        nas_addr: "192.0.2.10".into(),
        nas_port: Some("Gi1/0/1".into()),
        mac: Some("02-00-00-00-00-01".into()),
        directory: Some("local".into()),
        accept: true,
        reason: String::new(),
        vlan: Some("30".into()),
        account: Some("local:jürgen".into()),
        policy_rule: Some(2),
        ..first.clone()
    };
    assert_eq!(got, [second, first]);
    drop(w);
    h.join().unwrap();
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let (_d, s) = store();
    // The writer cannot start a transaction while another connection
    // holds the write lock, so its queue of 8 fills.
    let (w, h) = HistoryWriter::spawn_with_queue(&s, FOREVER, 8).unwrap();
    let blocker = s.history_connect().unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The first record takes the writer into its transaction, where it
    // waits for the lock; the next 8 fill the queue.
    w.record(rec(0, "x", true));
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    for i in 1..=1000 {
        w.record(rec(i, "x", true));
    }
    assert!(start.elapsed() < Duration::from_secs(1), "record() waited");
    assert_eq!(w.stats().dropped.load(Ordering::Relaxed), 1000 - 8);
    // A full queue is seen before the record is built.
    let mut built = 0;
    for i in 1001..=1100 {
        w.record_with(|| {
            built += 1;
            Pending::from(&rec(i, "x", true))
        });
    }
    assert_eq!(built, 0, "records built for a full queue");
    assert_eq!(w.stats().dropped.load(Ordering::Relaxed), 1100 - 8);
    blocker.execute_batch("COMMIT").unwrap();
    drop(w);
    h.join().unwrap();
    let kept = s
        .auth_history(&HistoryFilter {
            limit: MAX_LIMIT,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(kept.len(), 9, "the one in hand and the 8 queued");
}

#[test]
fn a_history_transaction_never_holds_up_the_store() {
    let (_d, s) = store();
    // A writer descheduled in the middle of a batch holds its write
    // lock; the store's writers (accounting, sync) must not wait for it.
    let history = s.history_connect().unwrap();
    history.execute_batch("BEGIN IMMEDIATE").unwrap();
    let start = Instant::now();
    s.set_setting("history-test", Some("1"), 1).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the store waited for the history's lock"
    );
    assert_eq!(s.setting("history-test").unwrap().as_deref(), Some("1"));
    history.execute_batch("ROLLBACK").unwrap();
    // Owner-only, like the store's file.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.history_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(s.history_path().parent(), s.path().parent());
    let page_size: i64 = history.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
    assert_eq!(page_size, HISTORY_PAGE_SIZE);
    // The store's own file no longer has the table (migration 7).
    let tables: i64 = s
        .connect()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'auth_history'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

#[test]
fn version_1_rows_and_chunks_are_one_history() {
    let (_d, s) = store();
    let mut conn = s.history_connect().unwrap();
    // 20 rows of version 1, as an older server left them (ids 1 to 20),
    // then three chunks of 10 (ids 21 to 50); the id is the time + 1.
    for i in 0..20 {
        conn.execute(
            "INSERT INTO auth_history (time_ms, client, nas_addr, identity, method, accept, reason)
             VALUES (?1, 'sw1', '10.0.0.1', 'x', 'pap', 1, 'ok')",
            [1_000_000 + i],
        )
        .unwrap();
    }
    let mut buf = Vec::new();
    for c in 0..3 {
        let batch: Vec<Pending> = (20 + c * 10..30 + c * 10)
            .map(|i| Pending::from(&rec(i, if i == 25 { "Y" } else { "x" }, true)))
            .collect();
        write_batch(&mut conn, &batch, &mut buf).unwrap();
    }
    let ids = |f: HistoryFilter| -> Vec<i64> { s.auth_history(&f).unwrap().iter().map(|r| r.id).collect() };
    let all = |limit| HistoryFilter {
        limit,
        ..Default::default()
    };
    assert_eq!(ids(all(100)), (1..=50).rev().collect::<Vec<_>>());
    let rows = s.auth_history(&all(100)).unwrap();
    assert!(rows.iter().all(|r| r.id == r.record.time_ms - 1_000_000 + 1));
    assert_eq!(rows[0].record, rec(49, "x", true));
    // Across the two: --follow, a limit, a scan, filters.
    let after = |id, limit| HistoryFilter {
        after_id: Some(id),
        limit,
        ..Default::default()
    };
    assert_eq!(ids(after(18, 5)), [19, 20, 21, 22, 23]);
    assert_eq!(ids(after(45, 100)), [46, 47, 48, 49, 50]);
    assert_eq!(ids(all(32)), (19..=50).rev().collect::<Vec<_>>());
    let scan = HistoryFilter {
        scan: Some(33),
        identity: Some("X".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(ids(scan), (18..=50).rev().filter(|&i| i != 26).collect::<Vec<_>>());
    let since = HistoryFilter {
        since_ms: Some(1_000_015),
        client: Some("sw1".into()),
        limit: 100,
        ..Default::default()
    };
    // rec() gives even times to sw1; the version 1 rows are all sw1.
    let want: Vec<i64> = (16..=50).rev().filter(|&i| i <= 20 || (i - 1) % 2 == 0).collect();
    assert_eq!(ids(since), want);

    // Retention by count counts the chunks first: of 45, the version 1
    // table keeps 15.
    let by_count = |max_rows| Retention {
        keep: Duration::from_secs(1 << 40),
        max_rows,
    };
    assert_eq!(prune(&conn, by_count(45), 1_000_050).unwrap(), 5);
    assert_eq!(ids(all(100)), (6..=50).rev().collect::<Vec<_>>());
    // By age, 15 ms before 1_000_050: the rest of the version 1 rows and
    // the first chunk go; the second (times 30 to 39) is not all older.
    let by_age = Retention {
        keep: Duration::from_millis(15),
        max_rows: u64::MAX,
    };
    assert_eq!(prune(&conn, by_age, 1_000_050).unwrap(), 25);
    assert_eq!(ids(all(100)), (31..=50).rev().collect::<Vec<_>>());
    // A chunk goes whole: with 15 kept, 31 to 40 holds 36 to 40.
    assert_eq!(prune(&conn, by_count(15), 1_000_050).unwrap(), 0);
    assert_eq!(prune(&conn, by_count(10), 1_000_050).unwrap(), 10);
    assert_eq!(ids(all(100)), (41..=50).rev().collect::<Vec<_>>());
    assert_eq!(prune(&conn, by_count(10), 1_000_050).unwrap(), 0);
    // New ids follow the newest, even once the older ones are gone.
    write_batch(&mut conn, &[Pending::from(&rec(50, "x", true))], &mut buf).unwrap();
    assert_eq!(ids(all(1)), [51]);
}

#[test]
fn a_version_1_history_is_upgraded_in_place() {
    let (_d, s) = store();
    // As a server of the version before left it: version 1, 4 KiB pages.
    {
        let mut old = Connection::open(s.history_path()).unwrap();
        configure(&old).unwrap();
        migrations::migrate(&mut old, &s.history_path(), &HISTORY_MIGRATIONS[..1]).unwrap();
        for (i, who) in ["old1", "old2"].iter().enumerate() {
            old.execute(
                "INSERT INTO auth_history (time_ms, client, nas_addr, identity, method, accept, reason)
                 VALUES (?1, 'sw1', '10.0.0.1', ?2, 'pap', 0, 'wrong password')",
                params![1_000_000 + i as i64, who],
            )
            .unwrap();
        }
    }
    let (w, h) = HistoryWriter::spawn(&s, FOREVER).unwrap();
    w.record(rec(5, "new", true));
    wait_written(&w, 1);
    drop(w);
    h.join().unwrap();
    let rows = s
        .auth_history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let got: Vec<(i64, &str)> = rows.iter().map(|r| (r.id, r.record.identity.as_str())).collect();
    assert_eq!(got, [(3, "new"), (2, "old2"), (1, "old1")]);
    assert_eq!(rows[0].record, rec(5, "new", true));
    assert_eq!(rows[1].record.reason, "wrong password");
    let conn = s.history_connect().unwrap();
    let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
    // Its pages keep their size.
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
    assert_eq!(page_size, 4096);
}

#[test]
fn a_clock_set_back_within_a_batch_hides_no_decision() {
    let (_d, s) = store();
    let mut conn = s.history_connect().unwrap();
    // The second decision of the batch is 10 ms older than the first.
    let batch = [Pending::from(&rec(10, "x", true)), Pending::from(&rec(0, "y", true))];
    write_batch(&mut conn, &batch, &mut Vec::new()).unwrap();
    let since = HistoryFilter {
        since_ms: Some(1_000_005),
        limit: 10,
        ..Default::default()
    };
    let got: Vec<String> = s
        .auth_history(&since)
        .unwrap()
        .into_iter()
        .map(|r| r.record.identity)
        .collect();
    assert_eq!(got, ["x"]);
    // Nor does retention take the chunk while its newest is young.
    let keep_10ms = Retention {
        keep: Duration::from_millis(10),
        max_rows: u64::MAX,
    };
    assert_eq!(prune(&conn, keep_10ms, 1_000_015).unwrap(), 0);
    assert_eq!(prune(&conn, keep_10ms, 1_000_021).unwrap(), 2);
}

#[test]
fn a_damaged_chunk_fails_the_query_and_names_it() {
    let (_d, s) = store();
    let mut conn = s.history_connect().unwrap();
    let mut buf = Vec::new();
    write_batch(&mut conn, &[Pending::from(&rec(0, "x", true))], &mut buf).unwrap();
    conn.execute("UPDATE auth_history_chunk SET data = x'00'", []).unwrap();
    let e = s
        .auth_history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("history chunk 1 is damaged"), "{e}");
}
