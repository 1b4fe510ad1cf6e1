//! Which object holds each CloudTrail event id: claims by event hour and id digest.
//!
//! Durably, `cloudtrail_event_claim_runs` holds one run per object and event hour:
//! (hour, [`owner_hash`] of the object's URI) → the 96-bit digests of the ids of the object's
//! events in that hour, [`DIGEST_BYTES`] each, sorted. A commit writes a few runs instead of a
//! B-tree entry per event. In memory, [`ClaimCache`] holds the claims of objects still in
//! flight and the committed claims of the hours used last, each loaded whole from its runs and
//! dropped, least recently used first, beyond a budget of claims.
//!
//! Ledgers written earlier keep claims one entry per event (`cloudtrail_event_claims_v2`, keyed
//! by [`ClaimKey`]) or by text key (`cloudtrail_event_claims`); [`move_earlier_claims`] turns
//! them into runs once, when such a ledger is opened.

use std::collections::{HashMap, HashSet};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use redb::{ReadOnlyTable, WriteTransaction};

/// Maps and sets keyed by claim keys, which are digests already: a fast hasher is enough.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(super) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// The key an event is claimed under: the hour of its time in the top 32 bits (0 for an event
/// without a time), then 96 bits of XXH64 digests of its id. An object's events share a few
/// hours, so its claims make a few runs, and the claims of an hour are loaded together. Two
/// ids of one hour share a key with a chance of about n²/2⁹⁷ for n events in that hour (below
/// 10⁻¹⁴ for a million).
pub type ClaimKey = u128;

const HOUR_MICROS: i64 = 3_600_000_000;

/// Bits of a [`ClaimKey`] below its hour.
const DIGEST_BITS: u32 = 96;
/// Bytes of one digest in a run.
pub(super) const DIGEST_BYTES: usize = 12;

/// Committed claims: (hour, owner hash) → sorted little-endian digests of [`DIGEST_BYTES`].
pub(super) const CLAIM_RUNS: TableDefinition<(u32, u64), &[u8]> =
    TableDefinition::new("cloudtrail_event_claim_runs");
/// Claims of ledgers written before runs: [`ClaimKey`] → owner hash. Moved into [`CLAIM_RUNS`]
/// when such a ledger is opened.
pub(super) const KEYED_CLAIMS: TableDefinition<ClaimKey, u64> =
    TableDefinition::new("cloudtrail_event_claims_v2");
/// Claims of ledgers written before fixed-width keys: `<hour>/<id>` or `untimed/<id>` → owner
/// hash. Moved into [`CLAIM_RUNS`] when such a ledger is opened.
pub(super) const TEXT_EVENT_CLAIMS: TableDefinition<&str, u64> =
    TableDefinition::new("cloudtrail_event_claims");
/// Claims of ledgers written before the hour prefix: event id → object URI. Read, never written.
pub(super) const LEGACY_EVENT_IDS: TableDefinition<&str, &str> =
    TableDefinition::new("cloudtrail_event_ids");

/// Committed claims kept in memory (about 40 bytes each, 20 MiB in all).
pub(super) const CACHED_CLAIMS: usize = 512 * 1024;

/// An event to claim: its key, and its id for ledgers that claimed by id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub key: ClaimKey,
    pub id: &'a str,
}

impl<'a> Claim<'a> {
    /// The claim of event `id` whose time is `event_micros` (microseconds since the Unix epoch).
    pub fn new(event_micros: Option<i64>, id: &'a str) -> Self {
        Claim {
            key: claim_key(event_micros.map(|m| m.div_euclid(HOUR_MICROS)), id),
            id,
        }
    }
}

/// The hour part of claim keys for events in `hour` (hours since the epoch); 0 is kept for
/// events without a time. Hours far from the present are clamped; they only share a run with
/// their neighbours.
fn hour_bucket(hour: i64) -> u32 {
    (hour.saturating_add(1 << 31)).clamp(1, i64::from(u32::MAX)) as u32
}

/// The [`ClaimKey`] of event `id` in hour `hour` (hours since the epoch; `None` when untimed).
fn claim_key(hour: Option<i64>, id: &str) -> ClaimKey {
    let bucket = u128::from(hour.map_or(0, hour_bucket));
    // Two seeded 64-bit XXH64 digests make the 96 bits.
    let high = twox_hash::XxHash64::oneshot(0, id.as_bytes()) as u128;
    let low = twox_hash::XxHash64::oneshot(1, id.as_bytes()) as u128 & 0xffff_ffff;
    (bucket << DIGEST_BITS) | (high << 32) | low
}

/// The hour part of a claim key.
fn hour_of(key: ClaimKey) -> u32 {
    (key >> DIGEST_BITS) as u32
}

/// The claim key of digest `bytes` (as stored in a run) in `hour`.
fn key_of(hour: u32, bytes: &[u8]) -> ClaimKey {
    let mut digest = [0u8; 16];
    digest[..DIGEST_BYTES].copy_from_slice(bytes);
    (u128::from(hour) << DIGEST_BITS) | u128::from_le_bytes(digest)
}

/// The [`ClaimKey`] of a text claim key written before fixed-width keys.
fn claim_key_of_text(key: &str) -> ClaimKey {
    match key.split_once('/') {
        Some(("untimed", id)) => claim_key(None, id),
        Some((hour, id)) => match hour.parse::<i64>() {
            Ok(hour) => claim_key(Some(hour), id),
            Err(_) => claim_key(None, key),
        },
        None => claim_key(None, key),
    }
}

/// A stable 64-bit digest of an object URI, stored as the owner of its claims.
pub(super) fn owner_hash(uri: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(uri.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Writes `claims` (key, owner) into their runs in `tx`, merged with the runs already there.
pub(super) fn write_runs(
    tx: &WriteTransaction,
    claims: &mut [(ClaimKey, u64)],
) -> Result<(), redb::Error> {
    claims.sort_unstable_by_key(|&(key, owner)| (hour_of(key), owner, key));
    let mut runs = tx.open_table(CLAIM_RUNS)?;
    let mut bytes = Vec::new();
    for run in claims.chunk_by(|a, b| (hour_of(a.0), a.1) == (hour_of(b.0), b.1)) {
        let (hour, owner) = (hour_of(run[0].0), run[0].1);
        let mut keys: Vec<ClaimKey> = run.iter().map(|&(key, _)| key).collect();
        // A redo of an object adds to its runs: the events it held stay its own.
        if let Some(earlier) = runs.get((hour, owner))? {
            keys.extend(
                earlier
                    .value()
                    .chunks_exact(DIGEST_BYTES)
                    .map(|d| key_of(hour, d)),
            );
            keys.sort_unstable();
        }
        keys.dedup();
        bytes.clear();
        for key in keys {
            bytes.extend_from_slice(&key.to_le_bytes()[..DIGEST_BYTES]);
        }
        runs.insert((hour, owner), bytes.as_slice())?;
    }
    Ok(())
}

/// Removes the runs of the hours more than `hours` before the newest hour with a run (taken
/// as no later than the hour holding `latest_micros`); events without a time keep theirs.
/// Returns the first hour kept (as in claim keys) and how many claims were removed.
pub(super) fn remove_runs_before(
    tx: &WriteTransaction,
    hours: u32,
    latest_micros: i64,
) -> Result<(u32, u64), redb::Error> {
    let mut runs = tx.open_table(CLAIM_RUNS)?;
    let latest = hour_bucket(latest_micros.div_euclid(HOUR_MICROS));
    let newest = match runs.last()? {
        Some((key, _)) => key.value().0.min(latest),
        None => return Ok((1, 0)),
    };
    let first_kept = newest.saturating_sub(hours).max(1);
    let mut removed = 0;
    runs.retain_in((1, 0)..(first_kept, 0), |_, digests| {
        removed += (digests.len() / DIGEST_BYTES) as u64;
        false
    })?;
    Ok((first_kept, removed))
}

/// Moves the claims of a ledger written before runs (with text keys, or one entry per event)
/// into runs, once.
pub(super) fn move_earlier_claims(tx: &WriteTransaction) -> Result<(), redb::Error> {
    let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_owned()).collect();
    let mut moved = Vec::new();
    if names.iter().any(|n| n == TEXT_EVENT_CLAIMS.name()) {
        for item in tx.open_table(TEXT_EVENT_CLAIMS)?.iter()? {
            let (key, owner) = item?;
            moved.push((claim_key_of_text(key.value()), owner.value()));
        }
        tx.delete_table(TEXT_EVENT_CLAIMS)?;
    }
    if names.iter().any(|n| n == KEYED_CLAIMS.name()) {
        // In key order, an hour at a time, so that memory holds one hour's claims.
        for item in tx.open_table(KEYED_CLAIMS)?.iter()? {
            let (key, owner) = item?;
            let key = key.value();
            if moved
                .last()
                .is_some_and(|&(last, _)| hour_of(last) != hour_of(key))
            {
                write_runs(tx, &mut moved)?;
                moved.clear();
            }
            moved.push((key, owner.value()));
        }
        tx.delete_table(KEYED_CLAIMS)?;
    }
    write_runs(tx, &mut moved)
}

/// The committed claims of one hour.
#[derive(Debug)]
struct LoadedHour {
    owners: FastMap<ClaimKey, u64>,
    last_use: u64,
}

/// Claims in memory: those of objects in flight, and the committed ones of the hours used last.
#[derive(Debug)]
pub(super) struct ClaimCache {
    /// Claims of objects not committed yet: key → owner hash.
    pub(super) pending: FastMap<ClaimKey, u64>,
    hours: FastMap<u32, LoadedHour>,
    /// Claims held in `hours`.
    loaded: usize,
    /// Claims `hours` may hold before the least recently used hours are dropped (the hour in
    /// use always stays).
    budget: usize,
    uses: u64,
}

impl ClaimCache {
    pub(super) fn new(budget: usize) -> Self {
        ClaimCache {
            pending: FastMap::default(),
            hours: FastMap::default(),
            loaded: 0,
            budget,
            uses: 0,
        }
    }

    /// The owner hash of the committed claim `key`, if any; its hour's runs are read from `db`
    /// unless that hour is in memory.
    ///
    /// Called with the cache locked: a commit that ends while an hour is read adds its claims
    /// to that hour once the lock is free ([`ClaimCache::committed`]), and until then holds
    /// them in `pending`.
    pub(super) fn committed_owner(
        &mut self,
        db: &Database,
        key: ClaimKey,
    ) -> Result<Option<u64>, redb::Error> {
        let hour = hour_of(key);
        self.uses += 1;
        if let Some(loaded) = self.hours.get_mut(&hour) {
            loaded.last_use = self.uses;
            return Ok(loaded.owners.get(&key).copied());
        }
        let owners = read_hour(db, hour)?;
        let owner = owners.get(&key).copied();
        self.loaded += owners.len();
        self.hours.insert(
            hour,
            LoadedHour {
                owners,
                last_use: self.uses,
            },
        );
        self.evict();
        Ok(owner)
    }

    /// Notes that the claims (key, owner) are committed.
    pub(super) fn committed(&mut self, claims: impl IntoIterator<Item = (ClaimKey, u64)>) {
        for (key, owner) in claims {
            self.pending.remove(&key);
            // An hour not in memory is read from the ledger, which has them, when next used.
            if let Some(loaded) = self.hours.get_mut(&hour_of(key))
                && loaded.owners.insert(key, owner).is_none()
            {
                self.loaded += 1;
            }
        }
        self.evict();
    }

    /// Drops the committed claims in memory of the hours before `first_kept` (as in claim
    /// keys; see [`remove_runs_before`]).
    pub(super) fn forget_before(&mut self, first_kept: u32) {
        let mut dropped = 0;
        self.hours.retain(|hour, loaded| {
            let keep = *hour == 0 || *hour >= first_kept;
            if !keep {
                dropped += loaded.owners.len();
            }
            keep
        });
        self.loaded -= dropped;
    }

    /// Drops the least recently used hours beyond the budget, keeping the last one used.
    fn evict(&mut self) {
        while self.loaded > self.budget && self.hours.len() > 1 {
            let Some(oldest) = self
                .hours
                .iter()
                .min_by_key(|(_, h)| h.last_use)
                .map(|(hour, _)| *hour)
            else {
                return;
            };
            if let Some(dropped) = self.hours.remove(&oldest) {
                self.loaded -= dropped.owners.len();
            }
        }
    }

    /// Hours in memory (for tests).
    #[cfg(test)]
    pub(super) fn hours_loaded(&self) -> usize {
        self.hours.len()
    }
}

/// The committed claims of `hour`: claim key → owner hash.
fn read_hour(db: &Database, hour: u32) -> Result<FastMap<ClaimKey, u64>, redb::Error> {
    let tx = db.begin_read()?;
    let runs = tx.open_table(CLAIM_RUNS)?;
    let mut owners = FastMap::default();
    for item in runs.range((hour, 0)..=(hour, u64::MAX))? {
        let (key, digests) = item?;
        let owner = key.value().1;
        let digests = digests.value();
        owners.reserve(digests.len() / DIGEST_BYTES);
        for digest in digests.chunks_exact(DIGEST_BYTES) {
            owners.entry(key_of(hour, digest)).or_insert(owner);
        }
    }
    Ok(owners)
}

/// The table of claims by id alone, if the ledger has any.
pub(super) fn legacy_table(
    db: &Database,
) -> Result<Option<ReadOnlyTable<&'static str, &'static str>>, redb::Error> {
    let tx = db.begin_read()?;
    match tx.open_table(LEGACY_EVENT_IDS) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
