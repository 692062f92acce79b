//! The `datetime` value: confd's `time.Now()`, with Go's default print and Go layout formatting
//! (`.Format "2006-01-02"`), because existing templates use both.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time with a fixed UTC offset and zone name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Offset from UTC in seconds (east positive).
    pub offset: i32,
    /// Zone abbreviation (`UTC`, `PST`).
    pub zone: String,
}

impl DateTime {
    /// The current time. The zone is UTC: the machine's local zone would need the system zone
    /// database, and config files are better off with a zone that does not change with the host.
    pub fn now() -> DateTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        DateTime {
            unix: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
            offset: 0,
            zone: "UTC".to_string(),
        }
    }

    fn civil(&self) -> Civil {
        let local = self.unix + i64::from(self.offset);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday (weekday 4 with Sunday = 0).
        let weekday = (days + 4).rem_euclid(7) as usize;
        let yday = days - days_from_civil(year, 1, 1) + 1;
        Civil {
            year,
            month,
            day,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            weekday,
            yday: yday as u32,
        }
    }

    /// Formats with a Go reference-time layout (`Mon Jan 2 15:04:05 MST 2006`).
    pub fn format(&self, layout: &str) -> String {
        let c = self.civil();
        let mut out = String::new();
        let mut rest = layout;
        while !rest.is_empty() {
            let (prefix, token, suffix) = next_std_chunk(rest);
            out.push_str(prefix);
            let Some(token) = token else { break };
            self.push_token(&mut out, &c, token);
            rest = suffix;
        }
        out
    }

    fn push_token(&self, out: &mut String, c: &Civil, token: Token) {
        use std::fmt::Write as _;
        let hour12 = match c.hour % 12 {
            0 => 12,
            h => h,
        };
        // Writing to a String cannot fail.
        let _ = match token {
            Token::LongMonth => write!(out, "{}", LONG_MONTHS[c.month as usize - 1]),
            Token::Month => write!(out, "{}", &LONG_MONTHS[c.month as usize - 1][..3]),
            Token::NumMonth => write!(out, "{}", c.month),
            Token::ZeroMonth => write!(out, "{:02}", c.month),
            Token::LongWeekDay => write!(out, "{}", LONG_DAYS[c.weekday]),
            Token::WeekDay => write!(out, "{}", &LONG_DAYS[c.weekday][..3]),
            Token::Day => write!(out, "{}", c.day),
            Token::UnderDay => write!(out, "{:>2}", c.day),
            Token::ZeroDay => write!(out, "{:02}", c.day),
            Token::UnderYearDay => write!(out, "{:>3}", c.yday),
            Token::ZeroYearDay => write!(out, "{:03}", c.yday),
            Token::Hour => write!(out, "{:02}", c.hour),
            Token::Hour12 => write!(out, "{hour12}"),
            Token::ZeroHour12 => write!(out, "{hour12:02}"),
            Token::Minute => write!(out, "{}", c.minute),
            Token::ZeroMinute => write!(out, "{:02}", c.minute),
            Token::Second => write!(out, "{}", c.second),
            Token::ZeroSecond => write!(out, "{:02}", c.second),
            Token::LongYear => {
                if c.year < 0 {
                    write!(out, "-{:04}", -c.year)
                } else {
                    write!(out, "{:04}", c.year)
                }
            }
            Token::Year => write!(out, "{:02}", c.year.rem_euclid(100)),
            Token::PM => write!(out, "{}", if c.hour >= 12 { "PM" } else { "AM" }),
            Token::Pm => write!(out, "{}", if c.hour >= 12 { "pm" } else { "am" }),
            Token::TZ => write!(out, "{}", self.zone),
            Token::NumTZ {
                z,
                colon,
                seconds,
                hours_only,
            } => {
                if z && self.offset == 0 {
                    write!(out, "Z")
                } else {
                    let sign = if self.offset < 0 { '-' } else { '+' };
                    let abs = self.offset.unsigned_abs();
                    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
                    let sep = if colon { ":" } else { "" };
                    let mut r = write!(out, "{sign}{h:02}");
                    if !hours_only {
                        r = r.and_then(|()| write!(out, "{sep}{m:02}"));
                    }
                    if seconds {
                        r = r.and_then(|()| write!(out, "{sep}{s:02}"));
                    }
                    r
                }
            }
            Token::Frac { sep, digits, trim } => {
                let frac = format!("{:09}", self.nanos);
                let mut f = &frac[..digits];
                if trim {
                    f = f.trim_end_matches('0');
                    if f.is_empty() {
                        return;
                    }
                }
                write!(out, "{sep}{f}")
            }
        };
    }
}

/// Go's `time.Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format("2006-01-02 15:04:05.999999999 -0700 MST"))
    }
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
    yday: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    NumTZ {
        z: bool,
        colon: bool,
        seconds: bool,
        hours_only: bool,
    },
    Frac {
        sep: char,
        digits: usize,
        trim: bool,
    },
}

/// Go `time.nextStdChunk`: the text before the first layout token, the token, and the rest.
fn next_std_chunk(layout: &str) -> (&str, Option<Token>, &str) {
    let b = layout.as_bytes();
    let starts = |i: usize, s: &str| layout[i..].starts_with(s);
    for i in 0..b.len() {
        if !layout.is_char_boundary(i) {
            continue;
        }
        let found: Option<(Token, usize)> = match b[i] {
            b'J' if starts(i, "January") => Some((Token::LongMonth, 7)),
            b'J' if starts(i, "Jan") => Some((Token::Month, 3)),
            b'M' if starts(i, "Monday") => Some((Token::LongWeekDay, 6)),
            b'M' if starts(i, "Mon") => Some((Token::WeekDay, 3)),
            b'M' if starts(i, "MST") => Some((Token::TZ, 3)),
            b'0' if starts(i, "002") => Some((Token::ZeroYearDay, 3)),
            b'0' if i + 1 < b.len() && (b'1'..=b'6').contains(&b[i + 1]) => Some((
                match b[i + 1] {
                    b'1' => Token::ZeroMonth,
                    b'2' => Token::ZeroDay,
                    b'3' => Token::ZeroHour12,
                    b'4' => Token::ZeroMinute,
                    b'5' => Token::ZeroSecond,
                    _ => Token::Year,
                },
                2,
            )),
            b'1' if starts(i, "15") => Some((Token::Hour, 2)),
            b'1' => Some((Token::NumMonth, 1)),
            b'2' if starts(i, "2006") => Some((Token::LongYear, 4)),
            b'2' => Some((Token::Day, 1)),
            b'_' if starts(i, "_2") => {
                if starts(i, "_2006") {
                    // Go treats "_2006" as "_" followed by the year.
                    None
                } else {
                    Some((Token::UnderDay, 2))
                }
            }
            b'_' if starts(i, "__2") => Some((Token::UnderYearDay, 3)),
            b'3' => Some((Token::Hour12, 1)),
            b'4' => Some((Token::Minute, 1)),
            b'5' => Some((Token::Second, 1)),
            b'P' if starts(i, "PM") => Some((Token::PM, 2)),
            b'p' if starts(i, "pm") => Some((Token::Pm, 2)),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let tail = &layout[i + 1..];
                let forms: [(&str, bool, bool, bool); 5] = [
                    ("07:00:00", true, true, false),
                    ("070000", false, true, false),
                    ("07:00", true, false, false),
                    ("0700", false, false, false),
                    ("07", false, false, true),
                ];
                forms.iter().find(|(f, ..)| tail.starts_with(f)).map(
                    |&(f, colon, seconds, hours_only)| {
                        (
                            Token::NumTZ {
                                z,
                                colon,
                                seconds,
                                hours_only,
                            },
                            f.len() + 1,
                        )
                    },
                )
            }
            b'.' | b',' if i + 1 < b.len() && (b[i + 1] == b'0' || b[i + 1] == b'9') => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                // Only a fractional second if not followed by another digit.
                if j < b.len() && b[j].is_ascii_digit() {
                    None
                } else {
                    let digits = (j - i - 1).min(9);
                    Some((
                        Token::Frac {
                            sep: b[i] as char,
                            digits,
                            trim: ch == b'9',
                        },
                        j - i,
                    ))
                }
            }
            _ => None,
        };
        if let Some((tok, len)) = found {
            return (&layout[..i], Some(tok), &layout[i + len..]);
        }
    }
    (layout, None, "")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's reference time: Mon Jan 2 15:04:05 MST 2006 (MST = -0700).
    fn reference() -> DateTime {
        DateTime {
            unix: 1_136_239_445,
            nanos: 123_456_789,
            offset: -7 * 3600,
            zone: "MST".into(),
        }
    }

    #[test]
    fn layouts_reproduce_the_reference_time() {
        let t = reference();
        for (layout, want) in [
            ("Mon Jan 2 15:04:05 MST 2006", "Mon Jan 2 15:04:05 MST 2006"),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Monday, 02-Jan-06 15:04:05 MST",
            ),
            ("2006-01-02T15:04:05-07:00", "2006-01-02T15:04:05-07:00"),
            ("January _2 3:4:5 PM", "January  2 3:4:5 PM"),
            ("002 __2", "002   2"),
        ] {
            assert_eq!(t.format(layout), want, "{layout}");
        }
    }

    #[test]
    fn fractions_zones_and_default_print() {
        let t = reference();
        assert_eq!(t.format("05.000"), "05.123");
        assert_eq!(t.format("05,000000"), "05,123456");
        assert_eq!(t.format("15:04:05.999999999"), "15:04:05.123456789");
        assert_eq!(t.format("-0700 Z07:00 -07"), "-0700 -07:00 -07");
        assert_eq!(t.to_string(), "2006-01-02 15:04:05.123456789 -0700 MST");
        let utc = DateTime {
            unix: 0,
            nanos: 0,
            offset: 0,
            zone: "UTC".into(),
        };
        assert_eq!(utc.to_string(), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(utc.format(time_rfc3339()), "1970-01-01T00:00:00Z");
        assert_eq!(utc.format("pm 03"), "am 12");
    }

    fn time_rfc3339() -> &'static str {
        "2006-01-02T15:04:05Z07:00"
    }

    #[test]
    fn calendar_round_trip() {
        for days in [-800_000, -1, 0, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn now_is_utc_and_recent() {
        let t = DateTime::now();
        assert_eq!(t.zone, "UTC");
        assert!(t.unix > 1_700_000_000);
    }
}
