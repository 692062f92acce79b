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
//!   `Vec<Entry>`), which collects into a `BTreeMap` in bulk because our plugins send keys
//!   sorted. A key sent twice keeps its last value, as in a protobuf map.

use std::collections::BTreeMap;

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
    let body = string_field_len(key) + string_field_len(value);
    1 + encoded_len_varint(body as u64) + body
}

fn string_field_len(s: &str) -> usize {
    1 + encoded_len_varint(s.len() as u64) + s.len()
}

fn encode_entry(key: &str, value: &str, buf: &mut impl BufMut) {
    let body = string_field_len(key) + string_field_len(value);
    buf.put_u8(0x0a); // field 1, length-delimited
    encode_varint(body as u64, buf);
    buf.put_u8(0x0a); // entry field 1 (key), length-delimited
    encode_varint(key.len() as u64, buf);
    buf.put_slice(key.as_bytes());
    buf.put_u8(0x12); // entry field 2 (value), length-delimited
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value.as_bytes());
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
        let entries = self.decoded_list(len, buf.remaining());
        // The whole message normally sits in one contiguous buffer (tonic collects it before
        // decoding), so the entry is parsed in place.
        let entry = if buf.chunk().len() >= len {
            let entry = parse_entry(&buf.chunk()[..len])?;
            buf.advance(len);
            entry
        } else {
            parse_entry(&buf.copy_to_bytes(len))?
        };
        entries.push(entry);
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
    /// The list decoded entries go to, sized on the first entry for a message of such entries:
    /// growing a 10,000-entry list by doubling cost more than the guess ever wastes.
    fn decoded_list(&mut self, first_len: usize, remaining: usize) -> &mut Vec<(String, String)> {
        if !matches!(self.payload, Payload::Decoded(_)) {
            // header (tag + length) plus body; `remaining` still holds this entry's body
            let per_entry = 1 + encoded_len_varint(first_len as u64) + first_len;
            let guess = (remaining + per_entry) / per_entry;
            // a misleading first entry must not reserve gigabytes
            self.payload = Payload::Decoded(Vec::with_capacity(guess.min(1 << 20)));
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

/// One map entry: missing fields are empty strings, a repeated field keeps its last value.
fn parse_entry(mut bytes: &[u8]) -> Result<(String, String), DecodeError> {
    let mut key: &[u8] = &[];
    let mut value: &[u8] = &[];
    while !bytes.is_empty() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut bytes)?;
        match (tag, wire_type) {
            (1 | 2, WireType::LengthDelimited) => {
                let len = usize::try_from(decode_varint(&mut bytes)?)
                    .map_err(|_| decode_error("string too long"))?;
                if len > bytes.len() {
                    return Err(decode_error("buffer underflow"));
                }
                let (field, rest) = bytes.split_at(len);
                if tag == 1 {
                    key = field;
                } else {
                    value = field;
                }
                bytes = rest;
            }
            (1 | 2, other) => {
                return Err(decode_error(format!(
                    "invalid wire type {other:?} for map entry field {tag}"
                )));
            }
            _ => prost::encoding::skip_field(wire_type, tag, &mut bytes, DecodeContext::default())?,
        }
    }
    Ok((utf8(key)?, utf8(value)?))
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(bytes)
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
        let ours = GetValuesResponse::from_map(sample());
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes.len(), ours.encoded_len());
        let theirs = Generated::decode(bytes.as_slice()).expect("prost decodes");
        assert_eq!(theirs.values, sample());
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
        let got = GetValuesResponse::decode(message.as_slice())
            .expect("decodes")
            .into_entries();
        assert_eq!(
            got,
            [
                ("y".to_string(), String::new()),
                (String::new(), "v".into())
            ]
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
