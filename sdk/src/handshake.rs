//! The go-plugin handshake: the constants both sides share and the one line the plugin prints,
//! kept free of I/O so its rules are unit-tested in one place.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Environment variable carrying the magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "CONFD_PLUGIN_MAGIC_COOKIE";
/// The magic cookie value; a usability guard (not security) against running a plugin by hand.
pub const MAGIC_COOKIE_VALUE: &str =
    "xtanpmnh5nqffr256vnevap59w86p3wmxkfkcp9hx4fzf5frjc3tf3tkcczcatyd";
/// go-plugin's core protocol version; never negotiated.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The app protocol versions this SDK speaks, lowest first.
pub const APP_PROTOCOL_VERSIONS: &[u32] = &[1];

/// The message go-plugin prints (on stderr) when the cookie is missing or wrong.
pub(crate) const COOKIE_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\n\
Please execute the program that consumes these plugins, which will\n\
load any plugins automatically\n";

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address (loopback).
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A parsed, accepted handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The app protocol version the plugin picked.
    pub app_version: u32,
    /// Where it listens.
    pub address: Address,
    /// The plugin's AutoMTLS certificate (DER) from field 6, when it serves TLS.
    pub server_cert: Option<Vec<u8>>,
}

/// Why a handshake line was refused; each rule has its own message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeProblem {
    /// Not 4 to 7 `|`-separated fields (also: an empty line).
    FieldCount(usize),
    /// Field 1 is not `1`.
    CoreVersion(String),
    /// Field 2 is not a version we offered.
    AppVersion { got: String, offered: Vec<u32> },
    /// Field 3 is neither `unix` nor `tcp`.
    Network(String),
    /// Field 4 is not a usable address for the network.
    Address(String),
    /// Field 5 is absent; go-plugin then assumes netrpc.
    MissingProtocol,
    /// Field 5 is `netrpc` (or anything but `grpc`).
    Protocol(String),
    /// Field 6 carries a TLS certificate although the host did not ask for AutoMTLS.
    AutoMtls,
    /// Field 6 is long enough to be a certificate but is not base64.
    Certificate(String),
    /// The host asked for AutoMTLS and the plugin answered without a certificate.
    MissingCertificate,
    /// The plugin listens on TCP without TLS, which confd never accepts.
    PlaintextTcp,
}

impl fmt::Display for HandshakeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeProblem::FieldCount(0 | 1) => f.write_str(
                "this is not a go-plugin handshake line (expected CORE|APP|NETWORK|ADDRESS|grpc); \
                 is the program a confd plugin?",
            ),
            HandshakeProblem::FieldCount(n) => write!(
                f,
                "expected 4 to 7 '|'-separated fields (CORE|APP|NETWORK|ADDRESS|grpc), got {n}"
            ),
            HandshakeProblem::CoreVersion(v) => write!(
                f,
                "incompatible core protocol version {v:?} (expected 1); the plugin probably needs to be rebuilt"
            ),
            HandshakeProblem::AppVersion { got, offered } => {
                let offered: Vec<String> = offered.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "the plugin speaks app protocol version {got:?}, but this host offered only {}",
                    offered.join(",")
                )
            }
            HandshakeProblem::Network(n) => {
                write!(f, "unsupported network {n:?} (expected unix or tcp)")
            }
            HandshakeProblem::Address(a) => write!(f, "invalid address {a:?}"),
            HandshakeProblem::MissingProtocol => f.write_str(
                "no protocol field, which go-plugin reads as netrpc; confd plugins must speak grpc",
            ),
            HandshakeProblem::AutoMtls => f.write_str(
                "the plugin serves TLS (AutoMTLS certificate in field 6) although confd did not ask \
                 for it (the plugin transport is unix)",
            ),
            HandshakeProblem::Certificate(e) => {
                write!(f, "field 6 is not a base64 certificate: {e}")
            }
            HandshakeProblem::MissingCertificate => f.write_str(
                "confd asked for AutoMTLS (plugin transport tcp) but the plugin answered without a \
                 certificate; the plugin does not support AutoMTLS, use --plugin-transport unix",
            ),
            HandshakeProblem::PlaintextTcp => f.write_str(
                "the plugin listens on TCP without TLS, which any local user could reach; confd \
                 refuses it (use a plugin that serves a Unix socket, or --plugin-transport tcp for AutoMTLS)",
            ),
            HandshakeProblem::Protocol(p) => write!(
                f,
                "the plugin speaks protocol {p:?}; confd plugins must speak grpc (netrpc is not supported)"
            ),
        }
    }
}

/// Checks a handshake line strictly against what the host offered.
pub fn parse(line: &str, offered: &[u32]) -> Result<Handshake, HandshakeProblem> {
    let line = line.trim();
    let fields: Vec<&str> = if line.is_empty() {
        Vec::new()
    } else {
        line.split('|').collect()
    };
    if !(4..=7).contains(&fields.len()) {
        return Err(HandshakeProblem::FieldCount(fields.len()));
    }
    if fields[0] != CORE_PROTOCOL_VERSION.to_string() {
        return Err(HandshakeProblem::CoreVersion(fields[0].to_string()));
    }
    let app_version = fields[1]
        .parse::<u32>()
        .ok()
        .filter(|v| offered.contains(v))
        .ok_or_else(|| HandshakeProblem::AppVersion {
            got: fields[1].to_string(),
            offered: offered.to_vec(),
        })?;
    let address = match fields[2] {
        "unix" if !fields[3].is_empty() => Address::Unix(PathBuf::from(fields[3])),
        "tcp" => Address::Tcp(
            fields[3]
                .parse()
                .map_err(|_| HandshakeProblem::Address(fields[3].to_string()))?,
        ),
        "unix" => return Err(HandshakeProblem::Address(fields[3].to_string())),
        other => return Err(HandshakeProblem::Network(other.to_string())),
    };
    match fields.get(4) {
        None => return Err(HandshakeProblem::MissingProtocol),
        Some(&"grpc") => {}
        Some(other) => return Err(HandshakeProblem::Protocol((*other).to_string())),
    }
    // Field 6 counts as a certificate only when long, as in go-plugin.
    let server_cert = match fields.get(5) {
        Some(cert) if cert.len() > 50 => {
            Some(crate::tls::decode_handshake_field(cert).map_err(HandshakeProblem::Certificate)?)
        }
        _ => None,
    };
    Ok(Handshake {
        app_version,
        address,
        server_cert,
    })
}

/// The host's rule once the line is parsed: with AutoMTLS asked for (`tls`), the plugin must
/// answer with a certificate, whatever the network; without, it must not, and it must listen on
/// a Unix socket. Plaintext TCP is never accepted: any local user could read every value.
pub fn check_transport(hs: &Handshake, tls: bool) -> Result<(), HandshakeProblem> {
    match (tls, hs.server_cert.is_some(), &hs.address) {
        (true, true, _) | (false, false, Address::Unix(_)) => Ok(()),
        (true, false, _) => Err(HandshakeProblem::MissingCertificate),
        (false, true, _) => Err(HandshakeProblem::AutoMtls),
        (false, false, Address::Tcp(_)) => Err(HandshakeProblem::PlaintextTcp),
    }
}

/// The line a plugin prints once it listens; `cert` is field 6 (empty without AutoMTLS).
pub(crate) fn format(app_version: u32, address: &Address, cert: &str) -> String {
    match address {
        Address::Unix(path) => format!(
            "{CORE_PROTOCOL_VERSION}|{app_version}|unix|{}|grpc|{cert}\n",
            path.display()
        ),
        Address::Tcp(addr) => {
            format!("{CORE_PROTOCOL_VERSION}|{app_version}|tcp|{addr}|grpc|{cert}\n")
        }
    }
}

/// Picks the app protocol version from `PLUGIN_PROTOCOL_VERSIONS`: the highest we share, else our
/// lowest (the host then reports the mismatch, as go-plugin does).
pub(crate) fn negotiate(offered: Option<&str>, ours: &[u32]) -> u32 {
    let lowest = ours.iter().copied().min().unwrap_or(1);
    let Some(offered) = offered else {
        return lowest;
    };
    let theirs: Vec<u32> = offered
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    ours.iter()
        .copied()
        .filter(|v| theirs.contains(v))
        .max()
        .unwrap_or(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_go_plugins_print() {
        let hs = parse("1|1|unix|/tmp/plugin950973671|grpc|\n", &[1]).expect("valid");
        assert_eq!(hs.address, Address::Unix("/tmp/plugin950973671".into()));
        assert_eq!(hs.app_version, 1);
        let hs = parse("1|1|tcp|127.0.0.1:1234|grpc", &[1]).expect("valid");
        assert_eq!(
            hs.address,
            Address::Tcp("127.0.0.1:1234".parse().expect("addr"))
        );
        parse("1|1|unix|/tmp/p|grpc||true\r\n", &[1]).expect("7 fields");
        parse("1|2|unix|/tmp/p|grpc|", &[1, 2]).expect("second offered version");
    }

    #[test]
    fn refuses_each_violation_with_its_own_problem() {
        let cases: &[(&str, HandshakeProblem)] = &[
            ("", HandshakeProblem::FieldCount(0)),
            ("hello world", HandshakeProblem::FieldCount(1)),
            ("1|1|unix", HandshakeProblem::FieldCount(3)),
            ("1|1|unix|/p|grpc|x|y|z", HandshakeProblem::FieldCount(8)),
            (
                "2|1|unix|/p|grpc",
                HandshakeProblem::CoreVersion("2".into()),
            ),
            (
                "1|7|unix|/p|grpc",
                HandshakeProblem::AppVersion {
                    got: "7".into(),
                    offered: vec![1],
                },
            ),
            ("1|1|udp|/p|grpc", HandshakeProblem::Network("udp".into())),
            (
                "1|1|tcp|nowhere|grpc",
                HandshakeProblem::Address("nowhere".into()),
            ),
            ("1|1|unix||grpc", HandshakeProblem::Address(String::new())),
            ("1|1|unix|/p", HandshakeProblem::MissingProtocol),
            (
                "1|1|unix|/p|netrpc",
                HandshakeProblem::Protocol("netrpc".into()),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line, &[1]).as_ref(), Err(want), "line {line:?}");
        }
    }

    #[test]
    fn problems_read_well() {
        assert_eq!(
            HandshakeProblem::Protocol("netrpc".into()).to_string(),
            "the plugin speaks protocol \"netrpc\"; confd plugins must speak grpc (netrpc is not supported)"
        );
        assert_eq!(
            HandshakeProblem::AppVersion {
                got: "7".into(),
                offered: vec![1]
            }
            .to_string(),
            "the plugin speaks app protocol version \"7\", but this host offered only 1"
        );
    }

    #[test]
    fn formats_with_the_trailing_empty_field() {
        assert_eq!(
            format(1, &Address::Unix("/tmp/x/plugin.sock".into()), ""),
            "1|1|unix|/tmp/x/plugin.sock|grpc|\n"
        );
        let tcp = Address::Tcp("127.0.0.1:10000".parse().expect("addr"));
        assert_eq!(format(1, &tcp, ""), "1|1|tcp|127.0.0.1:10000|grpc|\n");
        assert_eq!(
            parse(&format(1, &tcp, ""), &[1])
                .expect("round trip")
                .address,
            tcp
        );
    }

    #[test]
    fn a_certificate_travels_in_field_six() {
        let id = crate::tls::Identity::generate().expect("identity");
        let tcp = Address::Tcp("127.0.0.1:10000".parse().expect("addr"));
        let line = format(1, &tcp, &id.handshake_field());
        let hs = parse(&line, &[1]).expect("parses");
        assert_eq!(hs.server_cert.as_deref(), Some(id.certificate_der()));
        // what a Go 1.0.1 plugin prints with AutoMTLS (a P-521 certificate, cut short here)
        // decodes too; a short field 6 is ignored, as go-plugin does
        let short = parse("1|1|unix|/p|grpc|abc", &[1]).expect("short field 6");
        assert_eq!(short.server_cert, None);
        assert_eq!(
            parse(&format!("1|1|unix|/p|grpc|{}", "!".repeat(60)), &[1]),
            Err(HandshakeProblem::Certificate(
                "Invalid symbol 33, offset 0.".into()
            ))
        );
    }

    #[test]
    fn the_host_accepts_tls_when_asked_and_never_plaintext_tcp() {
        let unix = Address::Unix("/p".into());
        let tcp = Address::Tcp("127.0.0.1:1".parse().expect("addr"));
        let hs = |address: &Address, cert: bool| Handshake {
            app_version: 1,
            address: address.clone(),
            server_cert: cert.then(|| vec![1, 2, 3]),
        };
        // asked for AutoMTLS: a certificate on either network (Go plugins answer on unix)
        assert_eq!(check_transport(&hs(&tcp, true), true), Ok(()));
        assert_eq!(check_transport(&hs(&unix, true), true), Ok(()));
        assert_eq!(
            check_transport(&hs(&tcp, false), true),
            Err(HandshakeProblem::MissingCertificate)
        );
        assert_eq!(
            check_transport(&hs(&unix, false), true),
            Err(HandshakeProblem::MissingCertificate)
        );
        // not asked: a plain Unix socket only
        assert_eq!(check_transport(&hs(&unix, false), false), Ok(()));
        assert_eq!(
            check_transport(&hs(&tcp, false), false),
            Err(HandshakeProblem::PlaintextTcp)
        );
        assert_eq!(
            check_transport(&hs(&unix, true), false),
            Err(HandshakeProblem::AutoMtls)
        );
    }

    #[test]
    fn negotiates_highest_common_else_lowest() {
        assert_eq!(negotiate(Some("1"), &[1]), 1);
        assert_eq!(negotiate(Some("3,1,2"), &[1, 2]), 2);
        assert_eq!(negotiate(Some("5,7"), &[1, 2]), 1);
        assert_eq!(negotiate(Some("x, 2"), &[1, 2]), 2);
        assert_eq!(negotiate(None, &[1, 2]), 1);
    }
}
