//! When a temporary key stops working, from what CloudTrail records of the call that issued it.
//!
//! `AssumeRole` and its kin record the key's end in `responseElements.credentials.expiration`,
//! written not in ISO 8601 but as `Dec 12, 2024, 4:19:32 PM` (older records drop the second
//! comma, some tools write `0:00:00 PM`), always in UTC. Where the response holds no readable
//! expiration, the key lasts `requestParameters.durationSeconds`, one hour by default.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// How far from a `MONGODB-AWS` login the `GetCallerIdentity` Atlas sent for it may be, unless
/// configured (`[access] link_window`).
pub const DEFAULT_LINK_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// A session's length when the request names none.
pub const DEFAULT_SESSION_SECONDS: i64 = 3_600;

/// The instant (µs since the epoch) of a CloudTrail `expiration` text, `None` if unreadable.
pub fn parse_expiration(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.timestamp_micros());
    }
    let words: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let [month, day, year, clock, meridiem] = words.as_slice() else {
        return None;
    };
    let month = match month.get(..3)?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year.parse().ok()?, month, day.parse().ok()?)?;
    let mut parts = clock.split(':').map(|p| p.parse::<u32>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || hour > 12 {
        return None;
    }
    let hour = match meridiem.to_ascii_uppercase().as_str() {
        "AM" => hour % 12,
        "PM" => hour % 12 + 12,
        _ => return None,
    };
    let time = NaiveTime::from_hms_opt(hour, minute, second)?;
    Some(NaiveDateTime::new(date, time).and_utc().timestamp_micros())
}

/// When the key issued by a call at `event_time` (µs) stops working: the response's
/// expiration, else the requested duration (or one hour) after the call.
pub fn key_expires_at(
    event_time: i64,
    request_parameters: Option<&str>,
    response_elements: Option<&str>,
) -> i64 {
    let from_response = response_elements
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|response| {
            response
                .pointer("/credentials/expiration")
                .and_then(|e| e.as_str())
                .and_then(parse_expiration)
        });
    from_response.unwrap_or_else(|| {
        let seconds = request_parameters
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|request| {
                let duration = request.get("durationSeconds")?;
                duration
                    .as_i64()
                    .or_else(|| duration.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_SESSION_SECONDS);
        event_time.saturating_add(seconds.saturating_mul(1_000_000))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("instant")
            .timestamp_micros()
    }

    #[test]
    fn every_spelling_cloudtrail_writes_reads_as_utc() {
        for (text, instant) in [
            ("Dec 12, 2024, 4:19:32 PM", "2024-12-12T16:19:32Z"),
            ("Jul 18, 2014 4:07:39 PM", "2014-07-18T16:07:39Z"),
            ("Jan 01, 2019 0:00:00 PM", "2019-01-01T12:00:00Z"),
            ("Nov 1, 2026, 12:03:09 AM", "2026-11-01T00:03:09Z"),
            ("Nov 1, 2026, 12:03:09 PM", "2026-11-01T12:03:09Z"),
            ("2026-11-01T01:00:00Z", "2026-11-01T01:00:00Z"),
        ] {
            assert_eq!(parse_expiration(text), Some(at(instant)), "{text}");
        }
        for odd in [
            "",
            "soon",
            "Dec 32, 2024, 4:19:32 PM",
            "Dec 12, 2024, 13:19:32 PM",
            "Dec 12, 2024, 4:19 PM",
            "Foo 12, 2024, 4:19:32 PM",
        ] {
            assert_eq!(parse_expiration(odd), None, "{odd}");
        }
    }

    #[test]
    fn without_a_readable_expiration_a_key_lasts_the_requested_duration_or_an_hour() {
        let t = at("2026-11-01T10:00:00Z");
        let response =
            r#"{"credentials":{"accessKeyId":"ASIA1","expiration":"Nov 1, 2026, 10:15:00 AM"}}"#;
        assert_eq!(
            key_expires_at(t, None, Some(response)),
            at("2026-11-01T10:15:00Z")
        );
        assert_eq!(
            key_expires_at(t, Some(r#"{"durationSeconds":"900"}"#), Some("{}")),
            at("2026-11-01T10:15:00Z")
        );
        assert_eq!(
            key_expires_at(t, Some(r#"{"durationSeconds":43200}"#), None),
            at("2026-11-01T22:00:00Z")
        );
        assert_eq!(
            key_expires_at(t, Some("not json"), Some("not json")),
            at("2026-11-01T11:00:00Z")
        );
    }
}
