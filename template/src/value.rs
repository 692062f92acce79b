//! The neutral value type that the shared function table works on, so that one implementation of
//! every confd function serves both template engines; each engine adapter converts to and from it.

use std::collections::BTreeMap;
use std::fmt;

use crate::datetime::{self, DateTime, Loc};
use crate::store::KvPair;

/// A DNS SRV record as confd's `lookupSRV` returns it (Go `net.SRV`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Srv {
    /// The target host name (with the trailing dot, as DNS gives it).
    pub target: String,
    /// The port.
    pub port: u16,
    /// The priority.
    pub priority: u16,
    /// The weight.
    pub weight: u16,
}

/// A template value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Go `nil`, Jinja `none`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer (Go `int`).
    Int(i64),
    /// A float (Go `float64`; every JSON number decodes to this, as in Go).
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Val>),
    /// A map with sorted keys (Go iterates maps in key order too).
    Map(BTreeMap<String, Val>),
    /// A key/value pair from the store (`Key`/`Value`, `key`/`value`).
    Pair(KvPair),
    /// An SRV record (`Target`, `Port`, `Priority`, `Weight`).
    Srv(Srv),
    /// A point in time (`datetime`), formatted with Go layouts.
    Time(DateTime),
    /// A month, 1 to 12 (Go `time.Month`: prints its name, is an integer for `%d` and `eq`).
    Month(u32),
    /// A day of the week, 0 = Sunday (Go `time.Weekday`).
    Weekday(u32),
    /// A time's location (Go `*time.Location`: prints `Local`, `UTC` or the `TZ` name).
    Location(Loc),
    /// A duration in nanoseconds (Go `time.Duration`: prints `1h0m0s`).
    Duration(i64),
}

impl Val {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Map(_) => "map",
            Val::Pair(_) => "key/value pair",
            Val::Srv(_) => "SRV record",
            Val::Time(_) => "time",
            Val::Month(_) => "month",
            Val::Weekday(_) => "weekday",
            Val::Location(_) => "location",
            Val::Duration(_) => "duration",
        }
    }

    /// The string inside a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts a decoded JSON value the way Go's `encoding/json` does into `interface{}`:
    /// every number becomes a float64.
    pub fn from_json(v: serde_json::Value) -> Val {
        match v {
            serde_json::Value::Null => Val::Nil,
            serde_json::Value::Bool(b) => Val::Bool(b),
            serde_json::Value::Number(n) => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Val::Str(s),
            serde_json::Value::Array(a) => Val::List(a.into_iter().map(Val::from_json).collect()),
            serde_json::Value::Object(o) => {
                Val::Map(o.into_iter().map(|(k, v)| (k, Val::from_json(v))).collect())
            }
        }
    }

    /// The fields a `Pair` or `Srv` exposes by name (both spellings), for attribute access.
    pub fn field(&self, name: &str) -> Option<Val> {
        match (self, name) {
            (Val::Pair(p), "Key" | "key") => Some(Val::Str(p.key.clone())),
            (Val::Pair(p), "Value" | "value") => Some(Val::Str(p.value.clone())),
            (Val::Srv(s), "Target" | "target") => Some(Val::Str(s.target.clone())),
            (Val::Srv(s), "Port" | "port") => Some(Val::Int(i64::from(s.port))),
            (Val::Srv(s), "Priority" | "priority") => Some(Val::Int(i64::from(s.priority))),
            (Val::Srv(s), "Weight" | "weight") => Some(Val::Int(i64::from(s.weight))),
            (Val::Map(m), k) => m.get(k).cloned(),
            _ => None,
        }
    }
}

/// Go's number of arguments and their types for a method call, as Go's template engine reports a
/// mismatch.
fn want_args(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn int_arg(v: &Val, want: &str) -> Result<i64, String> {
    match v {
        Val::Int(i) | Val::Duration(i) => Ok(*i),
        Val::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        other => Err(format!(
            "wrong type for value; expected {want}; got {}",
            other.type_name()
        )),
    }
}

fn time_arg(v: &Val) -> Result<&DateTime, String> {
    match v {
        Val::Time(t) => Ok(t),
        other => Err(format!(
            "wrong type for value; expected time.Time; got {}",
            other.type_name()
        )),
    }
}

impl Val {
    /// Calls the method (or reads the field) `name` of a value the way a Go template does:
    /// `time.Time`'s methods (`Format`, `UTC`, `Local`, `Unix`, `Year`, `Month`, `Add`,
    /// `Truncate`, ...), the `String` method of months, weekdays, locations and durations, and the
    /// fields of pairs, SRV records and maps. `Ok(None)`: the value has no such method or field.
    pub fn method(&self, name: &str, args: &[Val]) -> Result<Option<Val>, String> {
        let niladic = |v: Val| -> Result<Option<Val>, String> {
            want_args(name, args, 0)?;
            Ok(Some(v))
        };
        match self {
            Val::Time(t) => match name {
                "Format" => {
                    want_args(name, args, 1)?;
                    match &args[0] {
                        Val::Str(layout) => Ok(Some(Val::Str(t.format(layout)))),
                        other => Err(format!(
                            "wrong type for value; expected string; got {}",
                            other.type_name()
                        )),
                    }
                }
                "String" => niladic(Val::Str(t.to_string())),
                "UTC" => niladic(Val::Time(t.utc())),
                "Local" => niladic(Val::Time(t.local())),
                "Unix" => niladic(Val::Int(t.unix)),
                "UnixMilli" => niladic(Val::Int(
                    t.unix.wrapping_mul(1000) + i64::from(t.nanos / 1_000_000),
                )),
                "UnixMicro" => niladic(Val::Int(
                    t.unix.wrapping_mul(1_000_000) + i64::from(t.nanos / 1000),
                )),
                "UnixNano" => niladic(Val::Int(t.unix_nano())),
                "Year" => niladic(Val::Int(t.year())),
                "Month" => niladic(Val::Month(t.month())),
                "Day" => niladic(Val::Int(i64::from(t.day()))),
                "Hour" => niladic(Val::Int(i64::from(t.hour()))),
                "Minute" => niladic(Val::Int(i64::from(t.minute()))),
                "Second" => niladic(Val::Int(i64::from(t.second()))),
                "Nanosecond" => niladic(Val::Int(i64::from(t.nanos))),
                "Weekday" => niladic(Val::Weekday(t.weekday())),
                "YearDay" => niladic(Val::Int(i64::from(t.year_day()))),
                "Location" => niladic(Val::Location(t.loc)),
                "IsZero" => niladic(Val::Bool(t.unix == -62_135_596_800 && t.nanos == 0)),
                "Add" => {
                    want_args(name, args, 1)?;
                    Ok(Some(Val::Time(t.add(int_arg(&args[0], "time.Duration")?))))
                }
                "Truncate" => {
                    want_args(name, args, 1)?;
                    Ok(Some(Val::Time(
                        t.truncate(int_arg(&args[0], "time.Duration")?),
                    )))
                }
                "Round" => {
                    want_args(name, args, 1)?;
                    Ok(Some(Val::Time(
                        t.round(int_arg(&args[0], "time.Duration")?),
                    )))
                }
                "AddDate" => {
                    want_args(name, args, 3)?;
                    Ok(Some(Val::Time(t.add_date(
                        int_arg(&args[0], "int")?,
                        int_arg(&args[1], "int")?,
                        int_arg(&args[2], "int")?,
                    ))))
                }
                "Sub" => {
                    want_args(name, args, 1)?;
                    Ok(Some(Val::Duration(t.sub(time_arg(&args[0])?))))
                }
                "After" | "Before" | "Equal" => {
                    want_args(name, args, 1)?;
                    let u = time_arg(&args[0])?;
                    let (a, b) = ((t.unix, t.nanos), (u.unix, u.nanos));
                    Ok(Some(Val::Bool(match name {
                        "After" => a > b,
                        "Before" => a < b,
                        _ => a == b,
                    })))
                }
                _ => Ok(None),
            },
            Val::Month(_) | Val::Weekday(_) | Val::Location(_) if name == "String" => {
                niladic(Val::Str(self.to_string()))
            }
            Val::Duration(d) => {
                let d = *d;
                match name {
                    "String" => niladic(Val::Str(self.to_string())),
                    "Nanoseconds" => niladic(Val::Int(d)),
                    "Microseconds" => niladic(Val::Int(d / 1000)),
                    "Milliseconds" => niladic(Val::Int(d / 1_000_000)),
                    "Seconds" => niladic(Val::Float(d as f64 / 1e9)),
                    "Minutes" => niladic(Val::Float(d as f64 / 6e10)),
                    "Hours" => niladic(Val::Float(d as f64 / 3.6e12)),
                    _ => Ok(None),
                }
            }
            _ => match self.field(name) {
                Some(v) if matches!(self, Val::Pair(_) | Val::Srv(_)) => niladic(v),
                other => Ok(other),
            },
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): `8080`, `1.5`, `1e+06`, `1e-05`.
pub fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Shortest round-trip digits, then strconv's rule for the shortest %g: scientific notation
    // when the exponent is < -4 or >= 6 (eprec is fixed at 6 for the shortest form).
    let sci = format!("{:e}", f); // like "1.5e3" or "-8.08e3"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let mut m = String::new();
        if neg {
            m.push('-');
        }
        m.push_str(&digits[..1]);
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let abs = exp.unsigned_abs();
        if abs < 10 {
            format!("{m}e{sign}0{abs}")
        } else {
            format!("{m}e{sign}{abs}")
        }
    } else {
        let mut out = String::new();
        if neg {
            out.push('-');
        }
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
        out
    }
}

/// Prints like Go's `fmt.Print` (`%v`) does for the equivalent Go value, which is what a Go
/// template outputs for `{{ value }}`.
impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Nil => f.write_str("<nil>"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Float(x) => f.write_str(&format_go_float(*x)),
            Val::Str(s) => f.write_str(s),
            Val::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Val::Map(m) => {
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
            Val::Pair(p) => write!(f, "{{{} {}}}", p.key, p.value),
            Val::Srv(s) => write!(f, "{{{} {} {} {}}}", s.target, s.port, s.priority, s.weight),
            Val::Time(t) => write!(f, "{t}"),
            Val::Month(m) => f.write_str(&datetime::month_name(*m)),
            Val::Weekday(d) => f.write_str(&datetime::weekday_name(*d)),
            Val::Location(Loc::Utc) => f.write_str("UTC"),
            Val::Location(Loc::Local) => f.write_str(datetime::local_name()),
            Val::Duration(d) => f.write_str(&datetime::duration_string(*d)),
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Str(s.to_string())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Str(s)
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}

impl From<Vec<String>> for Val {
    fn from(v: Vec<String>) -> Self {
        Val::List(v.into_iter().map(Val::Str).collect())
    }
}

impl From<KvPair> for Val {
    fn from(p: KvPair) -> Self {
        Val::Pair(p)
    }
}

impl From<Vec<KvPair>> for Val {
    fn from(v: Vec<KvPair>) -> Self {
        Val::List(v.into_iter().map(Val::Pair).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formatting() {
        for (f, want) in [
            (8080.0, "8080"),
            (1.5, "1.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (3.0e-7, "3e-07"),
            (1.0e100, "1e+100"),
            (100.0, "100"),
            (12345678.0, "1.2345678e+07"),
        ] {
            assert_eq!(format_go_float(f), want, "{f}");
        }
    }

    #[test]
    fn json_numbers_become_floats_and_maps_sort() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": [true, null, "x", 2.5]}"#).expect("json");
        let v = Val::from_json(v);
        assert_eq!(v.to_string(), "map[a:[true <nil> x 2.5] b:1]");
    }

    #[test]
    fn pair_and_srv_fields() {
        let p = Val::Pair(KvPair {
            key: "/k".into(),
            value: "v".into(),
        });
        assert_eq!(p.field("Key"), Some(Val::from("/k")));
        assert_eq!(p.field("value"), Some(Val::from("v")));
        assert_eq!(p.field("Other"), None);
        assert_eq!(p.to_string(), "{/k v}");
        let s = Val::Srv(Srv {
            target: "a.".into(),
            port: 80,
            priority: 1,
            weight: 2,
        });
        assert_eq!(s.field("Port"), Some(Val::Int(80)));
        assert_eq!(s.to_string(), "{a. 80 1 2}");
    }
}
