//! Times written in object keys, and keys that sort just before a time.
//!
//! Both layouts we read put time in their keys in an order that sorts like time: CloudTrail
//! `…/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<id>.json.gz`, Atlas push export
//! `…/<logType>/[YYYY-MM-DD/]<epoch seconds>-<logType>.log`. A listing cursor is a time; to
//! resume, the S3 source asks for keys after [`start_after`] of (cursor − look-back) below each
//! folder whose children are dated, so only the recent end of history is listed again.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use regex::Regex;

/// How the children of a dated folder are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatedChildren {
    /// `YYYY/MM/DD/…` (CloudTrail).
    YearMonthDay,
    /// `YYYY-MM-DD/…` (Atlas legacy layout).
    IsoDate,
    /// `<epoch seconds>-…` files (Atlas current layout).
    EpochSeconds,
}

static YEAR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}$").expect("year pattern"));
static ISO_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("date pattern"));
static EPOCH_FILE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{10}(?:\D|$)").expect("epoch pattern"));
static CLOUDTRAIL_STAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"_(\d{8}T\d{4})Z_").expect("stamp pattern"));
static YMD_FOLDERS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/").expect("ymd pattern"));
static ISO_FOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|/)(\d{4}-\d{2}-\d{2})/").expect("iso folder pattern"));

impl DatedChildren {
    /// Recognises a dated child by its name: a sub-folder name (without `/`) or a file name.
    pub fn of_child(name: &str, is_folder: bool) -> Option<Self> {
        if is_folder && YEAR.is_match(name) {
            Some(DatedChildren::YearMonthDay)
        } else if is_folder && ISO_DATE.is_match(name) {
            Some(DatedChildren::IsoDate)
        } else if !is_folder && EPOCH_FILE.is_match(name) {
            Some(DatedChildren::EpochSeconds)
        } else {
            None
        }
    }
}

/// A key (below `folder`, which ends in `/`) that sorts before every child of `folder` dated at
/// or after `micros`, and after children of earlier days (seconds, for epoch-named files).
pub fn start_after(folder: &str, style: DatedChildren, micros: i64) -> String {
    let time = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
    match style {
        // "YYYY/MM/DD" sorts before "YYYY/MM/DD/anything" and after the days before.
        DatedChildren::YearMonthDay => format!("{folder}{}", time.format("%Y/%m/%d")),
        DatedChildren::IsoDate => format!("{folder}{}", time.format("%Y-%m-%d")),
        // Ten digits hold until the year 2286; an earlier time gives an earlier prefix.
        DatedChildren::EpochSeconds => format!("{folder}{:010}", time.timestamp().max(0) - 1),
    }
}

/// The most precise time a key tells, in microseconds: CloudTrail's delivery stamp, an Atlas
/// epoch file name, or else the day of its date folders.
pub fn key_micros(key: &str) -> Option<i64> {
    if let Some(c) = CLOUDTRAIL_STAMP.captures(key) {
        let t = NaiveDateTime::parse_from_str(&c[1], "%Y%m%dT%H%M").ok()?;
        return Some(t.and_utc().timestamp_micros());
    }
    let file = key.rsplit('/').next().unwrap_or_default();
    if EPOCH_FILE.is_match(file) {
        let seconds: i64 = file.get(..10)?.parse().ok()?;
        return Some(seconds * 1_000_000);
    }
    let day = if let Some(c) = YMD_FOLDERS.captures(key) {
        NaiveDate::from_ymd_opt(c[1].parse().ok()?, c[2].parse().ok()?, c[3].parse().ok()?)?
    } else if let Some(c) = ISO_FOLDER.captures(key) {
        NaiveDate::parse_from_str(&c[1], "%Y-%m-%d").ok()?
    } else {
        return None;
    };
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .timestamp_micros()
    }

    #[test]
    fn keys_tell_their_time() {
        assert_eq!(
            key_micros(
                "AWSLogs/1/CloudTrail/us-east-1/2026/11/01/1_CloudTrail_us-east-1_20261101T0105Z_ab.json.gz"
            ),
            Some(micros("2026-11-01T01:05:00Z"))
        );
        assert_eq!(
            key_micros("c/h/mongod-audit/1793511600-mongod-audit.log"),
            Some(1_793_511_600_000_000)
        );
        assert_eq!(
            key_micros("c/h/mongod-audit/2026-11-02/x.log"),
            Some(micros("2026-11-02T00:00:00Z"))
        );
        assert_eq!(key_micros("atlas-test-object.txt"), None);
    }

    #[test]
    fn start_after_sorts_between_earlier_and_later_children() {
        let t = micros("2026-11-02T10:00:00Z");
        let ymd = start_after("r/", DatedChildren::YearMonthDay, t);
        assert!(ymd.as_str() < "r/2026/11/02/a.json.gz" && ymd.as_str() > "r/2026/11/01/z.json.gz");
        let iso = start_after("r/", DatedChildren::IsoDate, t);
        assert!(iso.as_str() < "r/2026-11-02/a.log" && iso.as_str() > "r/2026-11-01/z.log");
        let epoch = start_after("r/", DatedChildren::EpochSeconds, t);
        let at = format!("r/{}-mongod-audit.log", t / 1_000_000);
        let before = format!("r/{}-mongod-audit.log", t / 1_000_000 - 1);
        assert!(
            epoch < at && epoch.as_str() > "r/1000000000-x.log",
            "{epoch}"
        );
        assert!(epoch <= before);
    }

    #[test]
    fn dated_children_are_recognised() {
        assert_eq!(
            DatedChildren::of_child("2026", true),
            Some(DatedChildren::YearMonthDay)
        );
        assert_eq!(
            DatedChildren::of_child("2026-11-02", true),
            Some(DatedChildren::IsoDate)
        );
        assert_eq!(
            DatedChildren::of_child("1793511600-mongod-audit.log", false),
            Some(DatedChildren::EpochSeconds)
        );
        assert_eq!(DatedChildren::of_child("us-east-1", true), None);
        assert_eq!(DatedChildren::of_child("2026", false), None);
    }
}
