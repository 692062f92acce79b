//! The generated gRPC code, private to the crate so protobuf types never reach the public API.
#![allow(clippy::all, missing_docs, unreachable_pub, dead_code)]

/// confd's own wire contract (`confd.plugin.v1.Database`).
pub(crate) mod v1 {
    tonic::include_proto!("confd.plugin.v1");
}

/// go-plugin's housekeeping services (`plugin.GRPCController`, `GRPCStdio`, `GRPCBroker`).
pub(crate) mod goplugin {
    tonic::include_proto!("plugin");
}

/// `GetValuesResponse` as the host decodes it. A protobuf map is on the wire exactly a repeated
/// message of `key = 1, value = 2`, so reading it as a list is the same contract; collecting
/// the list into a `BTreeMap` at once (it arrives sorted from our plugins) is several times
/// cheaper than inserting entry by entry, which dominated 10,000-key reads.
pub(crate) mod values_list {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct GetValuesResponse {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[cfg(test)]
    mod tests {
        use prost::Message as _;

        #[test]
        fn reads_the_map_encoding_with_last_duplicate_winning() {
            let map = super::super::v1::GetValuesResponse {
                values: [("/b", "2"), ("/a", "1")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            let mut bytes = map.encode_to_vec();
            // a repeated key later in the message overrides, as protobuf maps do
            bytes.extend(
                super::GetValuesResponse {
                    values: vec![super::Entry {
                        key: "/a".into(),
                        value: "3".into(),
                    }],
                }
                .encode_to_vec(),
            );
            let list = super::GetValuesResponse::decode(bytes.as_slice()).expect("decodes");
            let got: std::collections::BTreeMap<String, String> =
                list.values.into_iter().map(|e| (e.key, e.value)).collect();
            assert_eq!(got.get("/a").map(String::as_str), Some("3"));
            assert_eq!(got.get("/b").map(String::as_str), Some("2"));
        }
    }
}
