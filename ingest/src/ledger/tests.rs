use super::claims::{KEYED_CLAIMS, LEGACY_EVENT_IDS, TEXT_EVENT_CLAIMS};
use super::*;

const HOUR_MICROS: i64 = 3_600_000_000;

fn entry(version: &str) -> ObjectEntry {
    ObjectEntry {
        version: version.into(),
        kind: "cloudtrail".into(),
        status: ObjectStatus::Ingested,
        cloudtrail_rows: 1,
        mongodb_audit_rows: 0,
        rejected_rows: 0,
        duplicate_events: 0,
        alerts: 0,
        bytes: 10,
        files: vec![],
    }
}

/// Creates at `path` a ledger as an earlier version wrote it: the tables `write` fills.
fn earlier_ledger(path: &Path, write: impl FnOnce(&WriteTransaction)) {
    let db = redb::Database::create(path).expect("create");
    let tx = db.begin_write().expect("tx");
    write(&tx);
    tx.commit().expect("commit");
}

#[test]
fn first_claimer_keeps_an_event_id_and_a_redo_keeps_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
    let hour = Some(493_000 * HOUR_MICROS);
    let (e1, e2, e3) = (
        Claim::new(hour, "e1"),
        Claim::new(hour, "e2"),
        Claim::new(hour, "e3"),
    );
    let keep_a = ledger
        .claim_event_ids("a", &[Some(e1), Some(e2), Some(e1), None])
        .expect("claim");
    assert_eq!(keep_a, [true, true, false, true]);
    // In flight: b loses e2 to a.
    assert_eq!(
        ledger
            .claim_event_ids("b", &[Some(e2), Some(e3)])
            .expect("claim"),
        [false, true]
    );
    ledger
        .commit("a", &entry("v1"), &[e1.key, e2.key])
        .expect("commit");
    // After commit: still a's, and a redo of a keeps them.
    assert_eq!(
        ledger.claim_event_ids("b", &[Some(e1)]).expect("claim"),
        [false]
    );
    assert_eq!(
        ledger
            .claim_event_ids("a", &[Some(e1), Some(e2)])
            .expect("claim"),
        [true, true]
    );
    // The same id in another hour is another event.
    assert_eq!(
        ledger
            .claim_event_ids("b", &[Some(Claim::new(Some(0), "e1"))])
            .expect("claim"),
        [true]
    );
}

#[test]
fn claims_older_than_the_retention_before_the_newest_event_are_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
    let hour = 493_000 * HOUR_MICROS;
    let day = std::time::Duration::from_secs(86_400);
    let old = Claim::new(Some(hour - 30 * HOUR_MICROS), "old");
    let last = Claim::new(Some(hour - 24 * HOUR_MICROS - 1), "last-before");
    let kept = Claim::new(Some(hour - 24 * HOUR_MICROS), "kept");
    let newest = Claim::new(Some(hour + 5), "newest");
    let untimed = Claim::new(None, "untimed");
    let all = [
        Some(old),
        Some(last),
        Some(kept),
        Some(newest),
        Some(untimed),
    ];
    assert_eq!(ledger.claim_event_ids("a", &all).expect("claim"), [true; 5]);
    let keys: Vec<ClaimKey> = all.iter().flatten().map(|c| c.key).collect();
    ledger.commit("a", &entry("v1"), &keys).expect("commit");
    // Every hour read into memory, to be forgotten there too.
    assert_eq!(
        ledger.claim_event_ids("b", &all).expect("claim"),
        [false; 5]
    );

    // With the clock two days behind the newest event, that event counts as a day after
    // the clock: nothing is a day older than that.
    let now = hour;
    let two_days_before = now - 2 * day.as_micros() as i64;
    assert_eq!(
        ledger
            .forget_old_claims(day, two_days_before)
            .expect("forget"),
        0
    );
    assert_eq!(ledger.forget_old_claims(day, now).expect("forget"), 2);
    assert_eq!(claims_in_runs(&ledger), 3);
    assert_eq!(ledger.forget_old_claims(day, now).expect("forget"), 0);
    let held = [Some(kept), Some(newest), Some(untimed)];
    let mut ledger = ledger;
    for round in 0..2 {
        assert_eq!(
            ledger.claim_event_ids("c", &held).expect("claim"),
            [false; 3],
            "round {round}: still held by a"
        );
        drop(ledger);
        ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("reopen");
    }
    assert_eq!(
        ledger.claim_event_ids("b", &all).expect("claim"),
        [true, true, false, false, false],
        "the events a day older than the newest are no longer held by a"
    );
}

#[test]
fn claims_of_an_earlier_ledger_by_id_alone_still_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.redb");
    earlier_ledger(&path, |tx| {
        tx.open_table(LEGACY_EVENT_IDS)
            .expect("table")
            .insert("e1", "a")
            .expect("insert");
    });
    let ledger = Ledger::open(&path).expect("open");
    let claim = Claim::new(Some(493_000 * HOUR_MICROS), "e1");
    assert_eq!(
        ledger.claim_event_ids("b", &[Some(claim)]).expect("claim"),
        [false]
    );
    assert_eq!(
        ledger.claim_event_ids("a", &[Some(claim)]).expect("claim"),
        [true]
    );
}

#[test]
fn publish_notes_carry_their_time_and_notes_of_earlier_versions_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
    let before = chrono::Utc::now().timestamp_micros();
    ledger
        .begin_publish("new", &["cloudtrail/a.parquet".into()])
        .expect("note");
    {
        let tx = ledger.db.get().expect("db").begin_write().expect("tx");
        tx.open_table(PUBLISHING)
            .expect("table")
            .insert("old", br#"["mongodb_audit/b.parquet"]"#.as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let mut notes = ledger.unfinished_publishes().expect("list");
    notes.sort_by(|a, b| a.stem.cmp(&b.stem));
    assert_eq!(notes[0].stem, "new");
    assert_eq!(notes[0].paths, ["cloudtrail/a.parquet"]);
    assert!(notes[0].noted_at_micros.is_some_and(|t| t >= before));
    assert_eq!(
        notes[1],
        UnfinishedPublish {
            stem: "old".into(),
            paths: vec!["mongodb_audit/b.parquet".into()],
            noted_at_micros: None,
        }
    );
    ledger.end_publish("new").expect("end");
    ledger.end_publish("old").expect("end");
    assert!(ledger.unfinished_publishes().expect("list").is_empty());
}

#[test]
fn claims_of_a_ledger_with_text_keys_are_moved_and_still_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.redb");
    earlier_ledger(&path, |tx| {
        let mut text = tx.open_table(TEXT_EVENT_CLAIMS).expect("table");
        text.insert("0000493000/e1", owner_hash("a"))
            .expect("insert");
        text.insert("untimed/e2", owner_hash("a")).expect("insert");
    });
    let ledger = Ledger::open(&path).expect("open");
    let timed = Claim::new(Some(493_000 * HOUR_MICROS + 5), "e1");
    let untimed = Claim::new(None, "e2");
    assert_eq!(
        ledger
            .claim_event_ids("b", &[Some(timed), Some(untimed)])
            .expect("claim"),
        [false, false]
    );
    assert_eq!(
        ledger
            .claim_event_ids("a", &[Some(timed), Some(untimed)])
            .expect("claim"),
        [true, true]
    );
    let read = ledger.db.get().expect("db").begin_read().expect("read");
    assert!(matches!(
        read.open_table(TEXT_EVENT_CLAIMS),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    assert_eq!(claims_in_runs(&ledger), 2);
}

/// Claims held in the ledger's runs.
fn claims_in_runs(ledger: &Ledger) -> usize {
    let read = ledger.db.get().expect("db").begin_read().expect("read");
    let runs = read.open_table(CLAIM_RUNS).expect("runs");
    runs.iter()
        .expect("iter")
        .map(|item| item.expect("run").1.value().len() / claims::DIGEST_BYTES)
        .sum()
}

#[test]
fn claims_kept_one_entry_per_event_are_moved_into_runs_and_still_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.redb");
    let hour = 493_000 * HOUR_MICROS;
    let a1 = Claim::new(Some(hour), "a1");
    let a2 = Claim::new(Some(hour + 60), "a2");
    let a3 = Claim::new(Some(hour + HOUR_MICROS), "a3");
    let b1 = Claim::new(Some(hour), "b1");
    earlier_ledger(&path, |tx| {
        let mut keyed = tx.open_table(KEYED_CLAIMS).expect("table");
        for (claim, owner) in [(a1, "a"), (a2, "a"), (a3, "a"), (b1, "b")] {
            keyed.insert(claim.key, owner_hash(owner)).expect("insert");
        }
    });
    let ledger = Ledger::open(&path).expect("open");
    assert!(matches!(
        ledger
            .db
            .get()
            .expect("db")
            .begin_read()
            .expect("read")
            .open_table(KEYED_CLAIMS),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    // Two owners in the first hour, one in the second.
    let read = ledger.db.get().expect("db").begin_read().expect("read");
    assert_eq!(
        read.open_table(CLAIM_RUNS)
            .expect("runs")
            .len()
            .expect("len"),
        3
    );
    drop(read);
    assert_eq!(claims_in_runs(&ledger), 4);
    let all = [Some(a1), Some(a2), Some(a3), Some(b1)];
    assert_eq!(
        ledger.claim_event_ids("c", &all).expect("claim"),
        [false; 4]
    );
    assert_eq!(
        ledger.claim_event_ids("a", &all).expect("claim"),
        [true, true, true, false]
    );
}

#[test]
fn a_redo_adds_to_its_runs_and_hours_dropped_from_memory_are_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
    // Room for one hour's claims in memory.
    *ledger.claims.lock().expect("lock") = ClaimCache::new(2);
    let hour = 493_000 * HOUR_MICROS;
    let first = Claim::new(Some(hour), "first");
    let later = Claim::new(Some(hour + 5), "later");
    let next_hour = Claim::new(Some(hour + HOUR_MICROS), "next");
    assert_eq!(
        ledger.claim_event_ids("a", &[Some(first)]).expect("claim"),
        [true]
    );
    ledger
        .commit("a", &entry("v1"), &[first.key])
        .expect("commit");
    // The redo holds one more event of the same hour.
    assert_eq!(
        ledger
            .claim_event_ids("a", &[Some(first), Some(later), Some(next_hour)])
            .expect("claim"),
        [true, true, true]
    );
    ledger
        .commit("a", &entry("v2"), &[first.key, later.key, next_hour.key])
        .expect("commit");
    assert_eq!(claims_in_runs(&ledger), 3);
    // Each hour read in turn pushes the other out of memory; the claims still hold.
    for _ in 0..2 {
        for claim in [first, next_hour, later] {
            assert_eq!(
                ledger.claim_event_ids("b", &[Some(claim)]).expect("claim"),
                [false]
            );
            assert_eq!(ledger.claims.lock().expect("lock").hours_loaded(), 1);
        }
    }
    // Claims committed into an hour held in memory are seen without reading it again.
    let fresh = Claim::new(Some(hour + 9), "fresh");
    assert_eq!(
        ledger.claim_event_ids("b", &[Some(fresh)]).expect("claim"),
        [true]
    );
    ledger
        .commit("b", &entry("v1"), &[fresh.key])
        .expect("commit");
    assert!(ledger.claims.lock().expect("lock").pending.is_empty());
    assert_eq!(
        ledger.claim_event_ids("a", &[Some(fresh)]).expect("claim"),
        [false]
    );
}

#[test]
fn unrecorded_compares_versions_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.redb");
    {
        let ledger = Ledger::open(&path).expect("open");
        ledger
            .commit("a", &entry("v1"), &[Claim::new(None, "e1").key])
            .expect("commit");
    }
    let ledger = Ledger::open(&path).expect("reopen");
    let listed = [("a", "v1"), ("a2", "v1")];
    let fresh = ledger
        .unrecorded(&listed, |o| (o.0, o.1))
        .expect("unrecorded");
    assert_eq!(fresh, [&("a2", "v1")]);
    let changed = [("a", "v2")];
    assert_eq!(
        ledger
            .unrecorded(&changed, |o| (o.0, o.1))
            .expect("unrecorded")
            .len(),
        1
    );
    assert_eq!(
        ledger
            .claim_event_ids("b", &[Some(Claim::new(None, "e1"))])
            .expect("claim"),
        [false]
    );
    assert_eq!(ledger.entries().expect("entries").len(), 1);
}
