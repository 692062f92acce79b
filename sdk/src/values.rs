//! `confd.plugin.v1.GetValuesResponse`, encoded and decoded by hand instead of by prost-generated
//! code, because its values are the whole payload of the hottest call.
//!
//! On the wire the message is `map<string, string> values = 1`, which protobuf defines as a
//! repeated message `{ string key = 1; string value = 2; }`, so any protobuf implementation (a Go
//! go-plugin host or plugin) reads and writes it as usual. What the hand-written code saves on
//! 10,000-key reads:
//! - the plugin encodes straight from the `BTreeMap` the `Database` returned and frees that map
//!   (20,000 strings) on a blocking thread instead of before the answer leaves;
//! - the streaming call (`GetValuesStream`) sends entries encoded ahead in batches
//!   ([`BatchWriter`]), so the host decodes one batch while the plugin encodes the next, and a
//!   plugin with a visitor (`ServeOpts::visit_values`) encodes from its store without copying;
//! - the host decodes entries straight into a list of `(key, value)` (no intermediate
//!   `Vec<Entry>`), parsing the message as one slice and checking UTF-8 once for all its
//!   strings; the list collects into a `BTreeMap` in bulk because our plugins send keys
//!   sorted. A key sent twice keeps its last value, as in a protobuf map.

use std::collections::BTreeMap;
use std::ops::Range;

use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{DecodeContext, WireType, decode_varint, encode_varint, encoded_len_varint};
use prost::{DecodeError, Message};

/// Maps with at least this many entries are dropped on a blocking thread; below it, handing
/// them over costs more than freeing them.
const DROP_ELSEWHERE_MIN: usize = 256;

/// The values of one `GetValues` answer, or one batch of a `GetValuesStream` answer.
#[derive(Debug, Default)]
pub(crate) struct GetValuesResponse {
    payload: Payload,
}

#[derive(Debug, Default)]
enum Payload {
    #[default]
    Empty,
    /// What a plugin answers: encoded straight from the map.
    Map(BTreeMap<String, String>),
    /// A batch of map entries encoded ahead (see [`Batcher`]).
    Encoded(Bytes),
    /// What the host decoded, in wire order, duplicates included.
    Decoded(Vec<(String, String)>),
}

impl GetValuesResponse {
    /// The answer to send for a whole map.
    pub(crate) fn from_map(values: BTreeMap<String, String>) -> GetValuesResponse {
        GetValuesResponse {
            payload: Payload::Map(values),
        }
    }

    /// A batch already encoded as map entries (field 1).
    fn encoded(bytes: Bytes) -> GetValuesResponse {
        GetValuesResponse {
            payload: Payload::Encoded(bytes),
        }
    }

    /// The decoded entries in wire order; a later duplicate must win when they become a map.
    pub(crate) fn into_entries(mut self) -> Vec<(String, String)> {
        match std::mem::take(&mut self.payload) {
            Payload::Decoded(entries) => entries,
            Payload::Empty => Vec::new(),
            Payload::Map(map) => map.into_iter().collect(),
            Payload::Encoded(bytes) => {
                let mut decoded = GetValuesResponse::default();
                match decoded.merge(bytes) {
                    Ok(()) => decoded.into_entries(),
                    // Only our own encoder makes this variant, and it writes valid entries.
                    Err(_) => Vec::new(),
                }
            }
        }
    }
}

impl Drop for GetValuesResponse {
    fn drop(&mut self) {
        if let Payload::Map(map) = &mut self.payload
            && map.len() >= DROP_ELSEWHERE_MIN
        {
            dispose(std::mem::take(map));
        }
    }
}

/// Frees a large value off the calling task: in the plugin that task is about to hand the
/// encoded answer to the transport, and freeing 20,000 strings first would delay it.
pub(crate) fn dispose<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

/// Bytes of field `1` (a length-delimited map entry) holding `key` and `value`.
fn entry_len(key: &str, value: &str) -> usize {
    let body = field_len(key.as_bytes()) + field_len(value.as_bytes());
    1 + encoded_len_varint(body as u64) + body
}

/// Bytes of a length-delimited field holding `bytes`.
fn field_len(bytes: &[u8]) -> usize {
    1 + encoded_len_varint(bytes.len() as u64) + bytes.len()
}

fn encode_entry(key: &str, value: &str, buf: &mut impl BufMut) {
    let (key, value) = (key.as_bytes(), value.as_bytes());
    let body = key.len() + value.len() + 4;
    if body < 0x80 {
        // Every length fits in one byte: four slices instead of a dozen single-byte writes,
        // which is most of what a plugin spends per entry of a large answer.
        buf.put_slice(&[ENTRY_KEY, body as u8, ENTRY_KEY, key.len() as u8]);
        buf.put_slice(key);
        buf.put_slice(&[VALUE_KEY, value.len() as u8]);
        buf.put_slice(value);
        return;
    }
    let body = field_len(key) + field_len(value);
    buf.put_u8(ENTRY_KEY); // field 1, length-delimited
    encode_varint(body as u64, buf);
    buf.put_u8(ENTRY_KEY); // entry field 1 (key), length-delimited
    encode_varint(key.len() as u64, buf);
    buf.put_slice(key);
    buf.put_u8(VALUE_KEY); // entry field 2 (value), length-delimited
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

impl Message for GetValuesResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.payload {
            Payload::Empty => {}
            Payload::Map(map) => {
                for (key, value) in map {
                    encode_entry(key, value, buf);
                }
            }
            Payload::Encoded(bytes) => buf.put_slice(bytes),
            Payload::Decoded(entries) => {
                for (key, value) in entries {
                    encode_entry(key, value, buf);
                }
            }
        }
    }

    /// tonic hands a decoder the whole message in one contiguous buffer, so the entries are
    /// parsed from that slice directly; any other buffer is gathered into one first.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), DecodeError> {
        let len = buf.remaining();
        if buf.chunk().len() == len {
            self.merge_slice(buf.chunk())?;
            buf.advance(len);
            Ok(())
        } else {
            self.merge_slice(&buf.copy_to_bytes(len))
        }
    }

    /// Only reached when this message is decoded as part of another (prost's length-delimited
    /// and nested decoding); `merge` reads whole messages without it.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != 1 {
            return prost::encoding::skip_field(wire_type, tag, buf, ctx);
        }
        prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len =
            usize::try_from(decode_varint(buf)?).map_err(|_| decode_error("map entry too long"))?;
        if len > buf.remaining() {
            return Err(decode_error("buffer underflow"));
        }
        let bytes = buf.copy_to_bytes(len);
        let entry = parse_entry(&bytes, None, 0..len)?;
        self.entries_mut().push(entry);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        match &self.payload {
            Payload::Empty => 0,
            Payload::Map(map) => map.iter().map(|(k, v)| entry_len(k, v)).sum(),
            Payload::Encoded(bytes) => bytes.len(),
            Payload::Decoded(entries) => entries.iter().map(|(k, v)| entry_len(k, v)).sum(),
        }
    }

    fn clear(&mut self) {
        self.payload = Payload::Empty;
    }
}

impl GetValuesResponse {
    /// Every field of a whole message held in `bytes`.
    fn merge_slice(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let entries = self.entries_mut();
        if entries.is_empty() {
            entries.reserve(entries_guess(bytes));
        }
        decode_entries(bytes, entries)
    }

    /// The list decoded entries go to.
    fn entries_mut(&mut self) -> &mut Vec<(String, String)> {
        if !matches!(self.payload, Payload::Decoded(_)) {
            self.payload = Payload::Decoded(Vec::new());
        }
        match &mut self.payload {
            Payload::Decoded(entries) => entries,
            _ => unreachable!("set to Decoded just above"),
        }
    }
}

/// prost offers no other way for a hand-written message to report malformed input.
#[allow(deprecated)]
fn decode_error(message: impl Into<std::borrow::Cow<'static, str>>) -> DecodeError {
    DecodeError::new(message)
}

/// How many entries a message of entries like its first one holds: growing a 10,000-entry list
/// by doubling cost more than the guess ever wastes, but a misleading first entry must not
/// reserve gigabytes.
fn entries_guess(bytes: &[u8]) -> usize {
    match bytes {
        [ENTRY_KEY, len, ..] if *len < 0x80 => (bytes.len() / (2 + usize::from(*len))).min(1 << 20),
        _ => 0,
    }
}

/// Appends the entries of the message in `bytes` to `entries`.
fn decode_entries(bytes: &[u8], entries: &mut Vec<(String, String)>) -> Result<(), DecodeError> {
    // One UTF-8 pass over the whole message instead of one call per string: it passes
    // whenever the strings are UTF-8 and every length fits in one varint byte (the framing
    // bytes are ASCII then), and each string is then a slice of it. Otherwise, or where a
    // slice does not fall on character boundaries, each string is checked on its own.
    let text = std::str::from_utf8(bytes).ok();
    let mut pos = 0;
    while pos < bytes.len() {
        if let Some((key, value)) = short_entry(bytes, pos) {
            pos = value.end;
            entries.push((string(bytes, text, key)?, string(bytes, text, value)?));
            continue;
        }
        let (tag, wire_type) = {
            let mut rest = &bytes[pos..];
            let key = prost::encoding::decode_key(&mut rest)?;
            pos = bytes.len() - rest.len();
            key
        };
        if tag != 1 {
            let mut rest = &bytes[pos..];
            prost::encoding::skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
            pos = bytes.len() - rest.len();
            continue;
        }
        prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = length(bytes, &mut pos, "map entry too long")?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| decode_error("buffer underflow"))?;
        entries.push(parse_entry(bytes, text, pos..end)?);
        pos = end;
    }
    Ok(())
}

/// The key and value of the entry at `bytes[pos..]` when it has the layout encoders write for
/// short strings, `0a <len> 0a <key len> key 12 <value len> value` with one-byte lengths; any
/// other entry goes through [`parse_entry`].
fn short_entry(bytes: &[u8], pos: usize) -> Option<(Range<usize>, Range<usize>)> {
    let head = bytes.get(pos..pos + 4)?;
    let (len, key_len) = (usize::from(head[1]), usize::from(head[3]));
    if head[0] != ENTRY_KEY || head[2] != ENTRY_KEY || len >= 0x80 || key_len >= 0x80 {
        return None;
    }
    let key = pos + 4..pos + 4 + key_len;
    let value_head = bytes.get(key.end..key.end + 2)?;
    let value_len = usize::from(value_head[1]);
    if value_head[0] != VALUE_KEY || value_len >= 0x80 || len != key_len + value_len + 4 {
        return None;
    }
    let value = key.end + 2..key.end + 2 + value_len;
    (value.end <= bytes.len()).then_some((key, value))
}

/// The key of field 1 (and of a map entry's key) when length-delimited, in its one-byte form.
const ENTRY_KEY: u8 = 0x0a;
/// The key of a map entry's field 2 (the value), length-delimited.
const VALUE_KEY: u8 = 0x12;

/// A varint length at `bytes[*pos..]`, moving `pos` past it.
fn length(bytes: &[u8], pos: &mut usize, too_long: &'static str) -> Result<usize, DecodeError> {
    let value = match bytes.get(*pos) {
        Some(&byte) if byte < 0x80 => {
            *pos += 1;
            u64::from(byte)
        }
        _ => {
            let mut rest = bytes.get(*pos..).unwrap_or_default();
            let value = decode_varint(&mut rest)?;
            *pos = bytes.len() - rest.len();
            value
        }
    };
    usize::try_from(value).map_err(|_| decode_error(too_long))
}

/// The map entry in `bytes[entry]`: missing fields are empty strings, a repeated field keeps
/// its last value, unknown fields are skipped. `text` is `bytes` when it is UTF-8 as a whole.
fn parse_entry(
    bytes: &[u8],
    text: Option<&str>,
    entry: Range<usize>,
) -> Result<(String, String), DecodeError> {
    let fields = &bytes[..entry.end];
    let mut pos = entry.start;
    let mut key = 0..0;
    let mut value = 0..0;
    while pos < fields.len() {
        let (tag, wire_type) = match fields[pos] {
            ENTRY_KEY => {
                pos += 1;
                (1, WireType::LengthDelimited)
            }
            VALUE_KEY => {
                pos += 1;
                (2, WireType::LengthDelimited)
            }
            _ => {
                let mut rest = &fields[pos..];
                let key = prost::encoding::decode_key(&mut rest)?;
                pos = fields.len() - rest.len();
                key
            }
        };
        match (tag, wire_type) {
            (1 | 2, WireType::LengthDelimited) => {
                let len = length(fields, &mut pos, "string too long")?;
                let end = pos
                    .checked_add(len)
                    .filter(|&end| end <= fields.len())
                    .ok_or_else(|| decode_error("buffer underflow"))?;
                if tag == 1 {
                    key = pos..end;
                } else {
                    value = pos..end;
                }
                pos = end;
            }
            (1 | 2, other) => {
                return Err(decode_error(format!(
                    "invalid wire type {other:?} for map entry field {tag}"
                )));
            }
            _ => {
                let mut rest = &fields[pos..];
                prost::encoding::skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
                pos = fields.len() - rest.len();
            }
        }
    }
    Ok((string(bytes, text, key)?, string(bytes, text, value)?))
}

/// `bytes[range]` as a string: a slice of `text` when that is at hand, else checked on its own.
fn string(bytes: &[u8], text: Option<&str>, range: Range<usize>) -> Result<String, DecodeError> {
    if let Some(s) = text.and_then(|text| text.get(range.clone())) {
        return Ok(s.to_owned());
    }
    std::str::from_utf8(&bytes[range])
        .map(str::to_owned)
        .map_err(|_| decode_error("invalid string value: data is not UTF-8 encoded"))
}

/// Collects entries into `GetValuesStream` batches of about `batch_bytes` each.
pub(crate) struct BatchWriter {
    batch_bytes: usize,
    buf: BytesMut,
}

impl BatchWriter {
    pub(crate) fn new(batch_bytes: usize) -> BatchWriter {
        BatchWriter {
            batch_bytes,
            buf: BytesMut::new(),
        }
    }

    /// Adds an entry; returns the batch once it is full.
    pub(crate) fn push(&mut self, key: &str, value: &str) -> Option<GetValuesResponse> {
        if self.buf.is_empty() {
            self.buf.reserve(self.batch_bytes + entry_len(key, value));
        }
        encode_entry(key, value, &mut self.buf);
        (self.buf.len() >= self.batch_bytes)
            .then(|| GetValuesResponse::encoded(self.buf.split().freeze()))
    }

    /// The last, partly filled batch, if any entry is left.
    pub(crate) fn finish(self) -> Option<GetValuesResponse> {
        (!self.buf.is_empty()).then(|| GetValuesResponse::encoded(self.buf.freeze()))
    }
}

/// Splits a map into `GetValuesStream` batches of about `batch_bytes` each, encoded ahead.
pub(crate) struct Batcher {
    batch_bytes: usize,
}

impl Batcher {
    pub(crate) fn new(batch_bytes: usize) -> Batcher {
        Batcher { batch_bytes }
    }

    /// Encodes `map` batch by batch, handing each to `send` as soon as it is full; stops early
    /// when `send` says the receiver is gone. The map is then freed off the caller's task.
    pub(crate) async fn run<F, Fut>(self, map: BTreeMap<String, String>, mut send: F)
    where
        F: FnMut(GetValuesResponse) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut batches = BatchWriter::new(self.batch_bytes);
        for (key, value) in &map {
            if let Some(batch) = batches.push(key, value)
                && !send(batch).await
            {
                dispose(map);
                return;
            }
        }
        if let Some(batch) = batches.finish() {
            send(batch).await;
        }
        dispose(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map message as prost generates it, to check wire compatibility both ways.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(btree_map = "string, string", tag = "1")]
        values: BTreeMap<String, String>,
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample() -> BTreeMap<String, String> {
        let long = "ß".repeat(200);
        map(&[("/a", "1"), ("/b", ""), ("", "empty key"), ("/ü", &long)])
    }

    #[test]
    fn prost_reads_what_we_encode() {
        for map in varied_maps() {
            let ours = GetValuesResponse::from_map(map.clone());
            let bytes = ours.encode_to_vec();
            assert_eq!(bytes.len(), ours.encoded_len());
            let theirs = Generated::decode(bytes.as_slice()).expect("prost decodes");
            assert_eq!(theirs.values, map);
        }
    }

    #[test]
    fn we_read_what_prost_encodes_with_last_duplicate_winning() {
        let mut bytes = Generated { values: sample() }.encode_to_vec();
        // a repeated key later in the message overrides, as protobuf maps do
        bytes.extend(
            Generated {
                values: map(&[("/a", "3")]),
            }
            .encode_to_vec(),
        );
        let entries = GetValuesResponse::decode(bytes.as_slice())
            .expect("decodes")
            .into_entries();
        assert_eq!(entries.len(), 5);
        let got: BTreeMap<String, String> = entries.into_iter().collect();
        let mut want = sample();
        want.insert("/a".into(), "3".into());
        assert_eq!(got, want);
    }

    #[test]
    fn entries_may_omit_fields_repeat_them_and_carry_unknown_ones() {
        let mut entry = Vec::new();
        entry.extend([0x0a, 1, b'x']); // key "x"
        entry.extend([0x18, 7]); // unknown varint field 3
        entry.extend([0x0a, 1, b'y']); // key again: the last one counts
        let mut message = vec![0x0a, entry.len() as u8];
        message.extend(&entry);
        message.extend([0x0a, 3, 0x12, 1, b'v']); // value only: key ""
        message.extend([0x10, 1]); // unknown top-level field 2
        message.extend([0x0a, 8, 0x0a, 1, b'k', 0x12, 1, b'w', 0x18, 5]); // unknown after both
        let got = GetValuesResponse::decode(message.as_slice())
            .expect("decodes")
            .into_entries();
        assert_eq!(
            got,
            [
                ("y".to_string(), String::new()),
                (String::new(), "v".into()),
                ("k".into(), "w".into())
            ]
        );
    }

    /// Maps that take each path of the decoder: short ASCII (one UTF-8 pass for the message),
    /// strings of 128 bytes and more (two-byte lengths, checked one by one), multi-byte
    /// characters, empty keys and values.
    fn varied_maps() -> Vec<BTreeMap<String, String>> {
        let mut seed = 0x2545_f491_u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let alphabet = ["a", "/", "-", "ü", "€", "𝄞", "0", " "];
        let mut maps = vec![sample()];
        for round in 0..40 {
            let mut map = BTreeMap::new();
            for _ in 0..next(60) {
                let mut text = |max: u64| {
                    (0..next(max))
                        .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                        .collect::<String>()
                };
                // every fourth map has long values
                let value = text(if round % 4 == 3 { 400 } else { 20 });
                map.insert(text(12), value);
            }
            maps.push(map);
        }
        maps
    }

    /// A decoded message as the map the host builds from it.
    fn as_map(decoded: Result<GetValuesResponse, DecodeError>) -> BTreeMap<String, String> {
        decoded
            .expect("decodes")
            .into_entries()
            .into_iter()
            .collect()
    }

    #[test]
    fn contiguous_and_split_buffers_decode_like_prost() {
        for map in varied_maps() {
            let bytes = Generated {
                values: map.clone(),
            }
            .encode_to_vec();
            assert_eq!(as_map(GetValuesResponse::decode(bytes.as_slice())), map);
            // a buffer in two pieces is gathered first
            for cut in [1, bytes.len() / 3, bytes.len().saturating_sub(1)] {
                let cut = cut.min(bytes.len());
                let (a, b) = bytes.split_at(cut);
                let split = as_map(GetValuesResponse::decode(a.chain(b)));
                assert_eq!(split, map, "cut at {cut}");
            }
        }
    }

    #[test]
    fn length_delimited_decoding_goes_field_by_field_like_prost() {
        for map in varied_maps() {
            let bytes = Generated {
                values: map.clone(),
            }
            .encode_length_delimited_to_vec();
            let got = as_map(GetValuesResponse::decode_length_delimited(bytes.as_slice()));
            assert_eq!(got, map);
        }
    }

    #[test]
    fn a_string_cut_inside_a_character_is_refused_even_when_the_message_is_utf8() {
        // key = [0xc3], then an unknown fixed64 field whose key starts with 0xa9: the message
        // as a whole reads as valid UTF-8 ("\u{e9}"), the key alone is not.
        let mut entry = vec![0x0a, 1, 0xc3, 0xa9, 0x01];
        entry.extend(*b"abcdefgh");
        let mut message = vec![0x0a, entry.len() as u8];
        message.extend(&entry);
        assert!(std::str::from_utf8(&message).is_ok());
        let err = GetValuesResponse::decode(message.as_slice()).expect_err("not UTF-8");
        assert!(err.to_string().contains("UTF-8"), "{err}");
        assert!(
            Generated::decode(message.as_slice()).is_err(),
            "prost agrees"
        );
    }

    #[test]
    fn refuses_broken_input() {
        for (what, bytes) in [
            ("entry longer than the message", vec![0x0a, 5, 0x0a]),
            ("string longer than the entry", vec![0x0a, 2, 0x0a, 9]),
            ("not UTF-8", vec![0x0a, 3, 0x0a, 1, 0xff]),
            ("key as a varint", vec![0x0a, 2, 0x08, 1]),
            ("entries as a varint", vec![0x08, 1]),
        ] {
            assert!(
                GetValuesResponse::decode(bytes.as_slice()).is_err(),
                "{what} must not decode"
            );
        }
    }

    #[test]
    fn empty_message_is_no_entries() {
        let empty = GetValuesResponse::from_map(BTreeMap::new());
        assert_eq!(empty.encoded_len(), 0);
        let got = GetValuesResponse::decode(&[][..]).expect("decodes");
        assert!(got.into_entries().is_empty());
    }

    #[tokio::test]
    async fn batches_concatenate_to_the_whole_map() {
        let values: BTreeMap<String, String> = (0..1000)
            .map(|i| (format!("/k{i:04}"), format!("v{i}")))
            .collect();
        let whole = GetValuesResponse::from_map(values.clone()).encode_to_vec();
        let mut batches = Vec::new();
        Batcher::new(1024)
            .run(values.clone(), |batch| {
                batches.push(batch.encode_to_vec());
                async { true }
            })
            .await;
        assert!(batches.len() > 10, "{} batches", batches.len());
        assert!(batches.iter().all(|b| b.len() < 1024 + 32));
        assert_eq!(batches.concat(), whole);
    }

    #[tokio::test]
    async fn batching_stops_when_the_receiver_is_gone() {
        let values: BTreeMap<String, String> = (0..1000)
            .map(|i| (format!("/k{i:04}"), "v".into()))
            .collect();
        let mut sent = 0;
        Batcher::new(100)
            .run(values, |_| {
                sent += 1;
                async move { sent < 3 }
            })
            .await;
        assert_eq!(sent, 3);
    }
}
