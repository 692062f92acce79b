//! A minimal DNS SRV client for `lookupSRV`: one UDP query to the system's resolver, so the
//! template crate needs no async runtime. Failures give no records, as in confd.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::value::Srv;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Go `net.LookupSRV(service, proto, name)`: queries `_service._proto.name` (or `name` when both
/// are empty). Any failure gives an empty list.
pub(crate) fn lookup_srv(service: &str, proto: &str, name: &str) -> Vec<Srv> {
    let qname = if service.is_empty() && proto.is_empty() {
        name.to_string()
    } else {
        format!("_{service}._{proto}.{name}")
    };
    for server in nameservers() {
        if let Some(records) = query(server, &qname) {
            return records;
        }
    }
    Vec::new()
}

fn nameservers() -> Vec<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers: Vec<SocketAddr> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    servers
}

fn query(server: SocketAddr, qname: &str) -> Option<Vec<Srv>> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(TIMEOUT)).ok()?;
    sock.connect(server).ok()?;
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x1234, |d| (d.subsec_nanos() & 0xffff) as u16);
    let msg = build_query(id, qname)?;
    sock.send(&msg).ok()?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    parse_response(&buf[..n], id)
}

pub(crate) fn build_query(id: u16, qname: &str) -> Option<Vec<u8>> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in qname.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&[0, 33, 0, 1]);
    Some(msg)
}

/// Parses the SRV answers; `None` when the message is not a valid answer to our query.
pub(crate) fn parse_response(buf: &[u8], id: u16) -> Option<Vec<Srv>> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?])) };
    if u16_at(0)? != id || buf.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = buf.get(3)? & 0x0f;
    if rcode != 0 {
        return Some(Vec::new());
    }
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = read_name(buf, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..ancount {
        let (_, after) = read_name(buf, pos)?;
        let rtype = u16_at(after)?;
        let rdlen = usize::from(u16_at(after + 8)?);
        let rdata = after + 10;
        if rtype == 33 {
            let (target, _) = read_name(buf, rdata + 6)?;
            out.push(Srv {
                priority: u16_at(rdata)?,
                weight: u16_at(rdata + 2)?,
                port: u16_at(rdata + 4)?,
                target,
            });
        }
        pos = rdata + rdlen;
    }
    Some(out)
}

/// Reads a possibly compressed name; returns it with a trailing dot, and the position after it.
fn read_name(buf: &[u8], start: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = start;
    let mut end = None;
    for _ in 0..128 {
        let len = *buf.get(pos)?;
        if len & 0xc0 == 0xc0 {
            let ptr = (usize::from(len & 0x3f) << 8) | usize::from(*buf.get(pos + 1)?);
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        if len == 0 {
            if name.is_empty() {
                name.push('.');
            }
            return Some((name, end.unwrap_or(pos + 1)));
        }
        let label = buf.get(pos + 1..pos + 1 + usize::from(len))?;
        name.push_str(&String::from_utf8_lossy(label));
        name.push('.');
        pos += 1 + usize::from(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_compressed_srv_answer() {
        let mut msg = build_query(7, "_http._tcp.example.com").expect("valid name");
        msg[2] |= 0x80; // response
        msg[7] = 2; // two answers
        for (prio, weight, port, target) in [(10u16, 5u16, 80u16, "b"), (1, 2, 8080, "a")] {
            msg.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&prio.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            rdata.push(1);
            rdata.extend_from_slice(target.as_bytes());
            rdata.extend_from_slice(&[0xc0, 12 + 6 + 5]); // points at "example.com" in the question
            msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            msg.extend_from_slice(&rdata);
        }
        let records = parse_response(&msg, 7).expect("valid response");
        assert_eq!(
            records,
            vec![
                Srv {
                    target: "b.example.com.".into(),
                    port: 80,
                    priority: 10,
                    weight: 5
                },
                Srv {
                    target: "a.example.com.".into(),
                    port: 8080,
                    priority: 1,
                    weight: 2
                },
            ]
        );
        assert_eq!(parse_response(&msg, 8), None, "wrong id");
    }

    #[test]
    fn invalid_names_and_unreachable_servers_give_nothing() {
        assert!(build_query(1, "a..b").is_none());
        assert!(lookup_srv("x", "tcp", "bad..name").is_empty());
    }
}
