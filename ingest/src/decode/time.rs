//! Timestamps as logs really write them.
//!
//! The result is microseconds since the Unix epoch, UTC. Anything that is not the canonical form
//! still yields a time when its meaning is clear, together with a note saying how it was read, so
//! that an auditor can tell a normalised time from an original one.

use chrono::{DateTime, NaiveDateTime};

/// A time read from a log, with a note when the text was not in the canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTime {
    /// Microseconds since the Unix epoch, UTC; `None` when nothing could be read.
    pub micros: Option<i64>,
    /// Why the time is not exactly the source's canonical form, if it is not.
    pub note: Option<String>,
}

impl ParsedTime {
    fn exact(micros: i64) -> Self {
        ParsedTime {
            micros: Some(micros),
            note: None,
        }
    }

    fn noted(micros: Option<i64>, note: String) -> Self {
        ParsedTime {
            micros,
            note: Some(note),
        }
    }
}

/// Reads an ISO-8601 / RFC 3339 time with any UTC offset spelling (`Z`, `+00:00`, `+0000`).
pub fn parse_iso(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    // `%z` accepts `+0000` as well as `+00:00`; the basic form (`20131102T010628Z`, as STS
    // writes some session creation dates) is ISO-8601 too.
    ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y%m%dT%H%M%S%.f%z"]
        .iter()
        .find_map(|format| DateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            let utc = text.strip_suffix('Z')?;
            NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S%.f")
                .ok()
                .map(|t| t.and_utc().fixed_offset())
        })
        .map(|t| t.timestamp_micros())
}

/// Reads a text time for field `field`: ISO-8601 exactly, else a few common non-ISO forms read as
/// UTC (with a note), else null with a note.
pub fn parse_text(field: &str, text: &str) -> ParsedTime {
    if let Some(micros) = parse_iso(text) {
        return ParsedTime::exact(micros);
    }
    let trimmed = text.trim();
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return ParsedTime::noted(
                Some(t.and_utc().timestamp_micros()),
                format!("{field} {text:?} is not ISO-8601; read as UTC"),
            );
        }
    }
    if let Ok(number) = trimmed.parse::<f64>() {
        return from_epoch_number(field, number);
    }
    ParsedTime::noted(None, format!("{field} {text:?} is not a time; left null"))
}

/// Reads a number of seconds or milliseconds since the epoch (told apart by magnitude).
pub fn from_epoch_number(field: &str, number: f64) -> ParsedTime {
    if !number.is_finite() {
        return ParsedTime::noted(None, format!("{field} {number} is not a time; left null"));
    }
    // Below 1e11 a number is seconds (until year 5138), above it milliseconds.
    let micros = if number.abs() < 1.0e11 {
        number * 1.0e6
    } else {
        number * 1.0e3
    };
    if micros.abs() > 8.0e18 {
        return ParsedTime::noted(None, format!("{field} {number} is out of range; left null"));
    }
    ParsedTime::noted(
        Some(micros as i64),
        format!("{field} {number} is an epoch number, not ISO-8601"),
    )
}

/// Reads milliseconds since the epoch (MongoDB `$numberLong`, OCSF `time`); exact, no note.
pub fn from_epoch_millis(millis: i64) -> Option<i64> {
    millis.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_663_292_300_034_000; // 2022-09-16T01:38:20.034Z

    #[test]
    fn every_offset_spelling() {
        assert_eq!(parse_iso("2022-09-16T01:38:20.034Z"), Some(T));
        assert_eq!(parse_iso("2022-09-16T01:38:20.034+0000"), Some(T));
        assert_eq!(parse_iso("2022-09-16T01:38:20.034+00:00"), Some(T));
        assert_eq!(parse_iso("2022-09-15T20:38:20.034-05:00"), Some(T));
        assert_eq!(parse_iso("2022-09-15T20:38:20.034-0500"), Some(T));
        assert_eq!(
            parse_iso("2019-01-01T00:00:00Z"),
            Some(1_546_300_800_000_000)
        );
    }

    #[test]
    fn non_iso_forms_are_read_with_a_note() {
        let t = parse_text("eventTime", "2024-06-02 20:27:12");
        assert_eq!(t.micros, Some(1_717_360_032_000_000));
        assert!(
            t.note
                .as_deref()
                .is_some_and(|n| n.contains("not ISO-8601"))
        );
        let t = parse_text("eventTime", "2024-12-12 21:44:35.000000000");
        assert_eq!(t.micros, Some(1_734_039_875_000_000));
        let t = parse_text("eventTime", "1666275403000.0");
        assert_eq!(t.micros, Some(1_666_275_403_000_000));
        let t = parse_text("eventTime", "redacted");
        assert_eq!(t.micros, None);
        assert!(t.note.as_deref().is_some_and(|n| n.contains("left null")));
        assert_eq!(parse_text("eventTime", "2019-01-01T00:00:00Z").note, None);
    }

    #[test]
    fn the_basic_iso_form_is_read_exactly() {
        let expected = Some(1_383_354_388_000_000); // 2013-11-02T01:06:28Z
        for text in [
            "20131102T010628Z",
            "20131102T010628+0000",
            "20131102T030628+0200",
        ] {
            let t = parse_text("creationDate", text);
            assert_eq!((t.micros, t.note), (expected, None), "{text}");
        }
        assert_eq!(
            parse_text("creationDate", "20131102T010628.5Z").micros,
            Some(1_383_354_388_500_000)
        );
    }
}
