//! Unit tests: YAML 1.1 resolution and flattening, on inline inputs and `testdata/`.

use super::*;

fn flat(format: Format, text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten_into(format, text, &mut out).expect("test input parses");
    out
}

fn yaml(text: &str) -> BTreeMap<String, String> {
    flat(Format::Yaml, text)
}

fn lines(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}=[{v}]\n"))
        .collect::<String>()
}

fn fixture(file: &str) -> String {
    let path = format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn plain_scalars_resolve_as_yaml_v2() {
    let cases: &[(&str, Node)] = &[
        ("y", Node::Bool(true)),
        ("yes", Node::Bool(true)),
        ("No", Node::Bool(false)),
        ("on", Node::Bool(true)),
        ("OFF", Node::Bool(false)),
        ("True", Node::Bool(true)),
        ("0755", Node::Int(493)),
        ("0o755", Node::Int(493)),
        ("0x1F", Node::Int(31)),
        ("0b101", Node::Int(5)),
        ("-0b101", Node::Int(-5)),
        ("1_000", Node::Int(1000)),
        ("+12", Node::Int(12)),
        ("-17", Node::Int(-17)),
        ("0", Node::Int(0)),
        ("9223372036854775807", Node::Int(i64::MAX)),
        ("-9223372036854775808", Node::Int(i64::MIN)),
        ("12345678901234567890", Node::Dropped),
        ("08", Node::Float(8.0)),
        (".5", Node::Float(0.5)),
        ("1e3", Node::Float(1000.0)),
        ("1.", Node::Float(1.0)),
        ("1e400", Node::Str("1e400".into())),
        ("1:30", Node::Str("1:30".into())),
        ("2024-01-31", Node::Str("2024-01-31".into())),
        ("10.0.0.1", Node::Str("10.0.0.1".into())),
        ("-", Node::Str("-".into())),
        ("0x", Node::Str("0x".into())),
        (".", Node::Str(".".into())),
        ("nope", Node::Str("nope".into())),
        ("Null", Node::Null),
        ("~", Node::Null),
        ("", Node::Null),
        ("-.inf", Node::Float(f64::NEG_INFINITY)),
    ];
    for (text, want) in cases {
        assert_eq!(&resolve_plain(text), want, "{text:?}");
    }
    assert!(matches!(resolve_plain(".NaN"), Node::Float(f) if f.is_nan()));
}

#[test]
fn floats_print_like_go_format_float() {
    assert_eq!(format_float(2.0), "2");
    assert_eq!(format_float(1.1), "1.1");
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(1e-7), "0.0000001");
    assert_eq!(format_float(2.5e-3), "0.0025");
    assert_eq!(
        format_float(123456789012345678901234567890.0),
        "123456789012345680000000000000"
    );
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(f64::NAN), "NaN");
}

/// Every YAML 1.1 form gives confd-go's bytes.
#[test]
fn yaml11_scalars_give_confd_go_bytes() {
    let got = yaml(&fixture("yaml11.yaml"));
    assert_eq!(
        lines(&got),
        "/y11/big=[123456789012345680000000000000]
/y11/bin=[3]
/y11/half=[0.5]
/y11/hexa=[255]
/y11/nan=[NaN]
/y11/ninf=[-Inf]
/y11/oct_0o=[420]
/y11/oct_zero=[420]
/y11/pinf=[+Inf]
/y11/plus=[7]
/y11/sexa=[2:45]
/y11/under=[10000]
/y11/w_No=[false]
/y11/w_On=[true]
/y11/w_TRUE=[true]
/y11/w_Yes=[true]
/y11/w_off=[false]
/y11/w_y=[true]
"
    );
}

/// Scalar formatting, nulls and block scalars.
#[test]
fn scalars_nulls_and_blocks() {
    let got = yaml(&fixture("scalars.yaml"));
    assert_eq!(
        lines(&got),
        "/s/address=[192.168.0.10]
/s/big_int=[9223372036854775807]
/s/colon=[k: v]
/s/day=[2023-12-24]
/s/fold=[folded words
]
/s/frac=[2.5]
/s/frac_exp=[2000]
/s/frac_huge=[2000000000000000000000]
/s/frac_neg=[-0.75]
/s/frac_small=[0.00000012]
/s/frac_tiny_exp=[0.0035]
/s/frac_trailing=[2.1]
/s/frac_whole=[3]
/s/holes/0=[one]
/s/holes/2=[three]
/s/link=[https://example.org:9443/x?y=2]
/s/lit=[one
two
]
/s/minus=[-3]
/s/no_bool=[false]
/s/nothing=[0]
/s/single=[don't]
/s/strip=[kept without newline]
/s/text_bool=[false]
/s/text_empty=[]
/s/text_float=[2.50]
/s/text_int=[007]
/s/whole=[7]
/s/yes_bool=[true]
"
    );
}

/// Nested maps, lists of maps, lists of lists, a key with a slash, an
/// empty list leaving a gap.
#[test]
fn nested_maps_and_lists_flatten() {
    let got = yaml(&fixture("nested.yaml"));
    let want = [
        ("/store/grid/0/0", "a0"),
        ("/store/grid/0/1", "a1"),
        ("/store/grid/1/0", "b0"),
        ("/store/grid/3/0", "d0"),
        ("/store/http/host", "127.0.0.1"),
        ("/store/http/port", "8443"),
        ("/store/path/inner", "a key with a slash"),
        ("/store/title", "shop"),
        ("/store/with space", "spaced"),
        ("/store/with.dot", "dotted"),
        ("/store/workers/0/host", "10.1.0.1"),
        ("/store/workers/0/id", "w1"),
        ("/store/workers/1/host", "10.1.0.2"),
        ("/store/workers/1/id", "w2"),
        ("/store/workers/1/shares/0", "1"),
        ("/store/workers/1/shares/1", "2"),
    ];
    let mut expected: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for i in 0..12 {
        expected.insert(format!("/store/zones/{i}"), format!("z{i:02}"));
    }
    assert_eq!(got, expected);
}

#[test]
fn json_numbers_match_the_yaml_reading() {
    let got = flat(
        Format::Json,
        r#"{"a": {"int": 8080, "ratio": 1.0, "big": 1e21, "neg": -0.25,
            "u64": 12345678901234567890, "huge": 123456789012345678901234567890,
            "t": true, "n": null, "s": "0042", "list": [1, "x", null, [2]]}}"#,
    );
    assert_eq!(
        lines(&got),
        "/a/big=[1000000000000000000000]
/a/huge=[123456789012345680000000000000]
/a/int=[8080]
/a/list/0=[1]
/a/list/1=[x]
/a/list/3/0=[2]
/a/neg=[-0.25]
/a/ratio=[1]
/a/s=[0042]
/a/t=[true]
"
    );
}

#[test]
fn keys_are_source_text_and_tags_are_honoured() {
    let got = yaml(
        "on: 1\n1: one\n~: tilde\n'q': !!str 12\nt: !!int \"7\"\nc: !custom 0x10\nn: !!null x\n",
    );
    assert_eq!(
        lines(&got),
        "/1=[one]\n/c=[0x10]\n/on=[1]\n/q=[12]\n/t=[7]\n/~=[tilde]\n"
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let got = yaml(
        "base: &b {host: h, port: 1}\n\
         extra: &e {tls: on, port: 2}\n\
         svc:\n  <<: [*b, *e]\n  port: 3\n\
         copy: *b\n\
         name: &n web\n\
         again: *n\n\
         *n : keyed\n",
    );
    assert_eq!(
        lines(&got),
        "/again=[web]
/base/host=[h]
/base/port=[1]
/copy/host=[h]
/copy/port=[1]
/extra/port=[2]
/extra/tls=[true]
/name=[web]
/svc/host=[h]
/svc/port=[3]
/svc/tls=[true]
/web=[keyed]
"
    );
}

#[test]
fn a_repeated_key_replaces_the_whole_value() {
    let got = yaml("a: {x: 1, y: 2}\na: {x: 3}\n");
    assert_eq!(lines(&got), "/a/x=[3]\n");
}

#[test]
fn documents_and_root_lists() {
    // Go confd (yaml.v2 Unmarshal) reads the first document only, and does not even parse the
    // others.
    assert_eq!(lines(&yaml("a: 1\n---\na: 2\nb: 3\n")), "/a=[1]\n");
    assert_eq!(lines(&yaml("---\na: 1\n---\n[broken\n")), "/a=[1]\n");
    assert_eq!(lines(&yaml("- x\n- y\n")), "/0=[x]\n/1=[true]\n");
    assert_eq!(lines(&yaml("")), "");
    assert_eq!(lines(&yaml("# only a comment\n")), "");
    let mut out = BTreeMap::new();
    let err = flatten_into(Format::Yaml, "just text\n", &mut out)
        .expect_err("a scalar document has no keys");
    assert!(err.message.contains("top level"), "{err:?}");
}

#[test]
fn bad_yaml_reports_the_line() {
    let mut out = BTreeMap::new();
    let err = flatten_into(
        Format::Yaml,
        "app:\n  name: demo\n  list: [a, b\n",
        &mut out,
    )
    .expect_err("unterminated flow list");
    assert!(err.line.is_some_and(|l| l >= 3), "{err:?}");
    let err = flatten_into(Format::Yaml, "a: 1\n? [x]\n: y\n", &mut out).expect_err("complex key");
    assert_eq!(err.line, Some(2), "{err:?}");
    let err = flatten_into(Format::Json, "{\n\"a\": }", &mut out).expect_err("bad json");
    assert_eq!(err.line, Some(2), "{err:?}");
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let mut out = BTreeMap::new();
    let err = flatten_into(Format::Yaml, &text, &mut out).expect_err("too many nodes");
    assert!(err.message.contains("aliases expand"), "{err:?}");
}

#[test]
fn formats_follow_extensions() {
    assert_eq!(Format::for_path(Path::new("a.yaml")), Ok(Format::Yaml));
    assert_eq!(Format::for_path(Path::new("a.YML")), Ok(Format::Yaml));
    assert_eq!(Format::for_path(Path::new("c")), Ok(Format::Yaml));
    assert_eq!(Format::for_path(Path::new(".hidden")), Ok(Format::Yaml));
    assert_eq!(Format::for_path(Path::new("b.json")), Ok(Format::Json));
    assert_eq!(
        Format::for_path(Path::new("notes.txt")),
        Err("txt".to_string())
    );
}
