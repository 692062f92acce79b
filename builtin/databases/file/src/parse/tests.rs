//! Unit tests: YAML 1.1 resolution, flattening and the conformance data of cases 01-03.

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

fn case_data(case: &str, file: &str) -> String {
    let path = format!(
        "{}/../../../../shared/conformance/cases/{case}/data/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
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

/// Conformance case 03: every YAML 1.1 form gives confd-go's bytes.
#[test]
fn conformance_case_03_yaml11_scalars() {
    let got = yaml(&case_data("03-file-yaml11-scalars", "yaml11.yaml"));
    assert_eq!(
        lines(&got),
        "/v11/beyond_uint64=[123456789012345680000000000000]
/v11/binary=[5]
/v11/hex=[31]
/v11/inf=[+Inf]
/v11/leading_dot=[0.5]
/v11/nan=[NaN]
/v11/negative_inf=[-Inf]
/v11/octal_0o=[493]
/v11/octal_leading_zero=[493]
/v11/plus_sign=[12]
/v11/sexagesimal=[1:30]
/v11/underscores=[1000]
/v11/word_No=[false]
/v11/word_OFF=[false]
/v11/word_True=[true]
/v11/word_on=[true]
/v11/word_y=[true]
/v11/word_yes=[true]
"
    );
}

/// Conformance case 02: scalar formatting, nulls and empty collections.
#[test]
fn conformance_case_02_scalars() {
    let got = yaml(&case_data("02-file-scalars", "values.yaml"));
    assert_eq!(
        lines(&got),
        "/values/bool_false=[false]
/values/bool_true=[true]
/values/colon_in_quotes=[a: b]
/values/date_like=[2024-01-31]
/values/empty_string=[]
/values/float=[1.5]
/values/float_big=[1000000000000000000000]
/values/float_exp=[1000]
/values/float_neg=[-0.25]
/values/float_small=[0.0000001]
/values/float_tiny_exp=[0.0025]
/values/float_trailing_zero=[1.1]
/values/float_whole=[2]
/values/folded_block=[folded text
]
/values/int=[42]
/values/int64_max=[9223372036854775807]
/values/ip=[10.0.0.1]
/values/list_with_null/0=[first]
/values/list_with_null/2=[third]
/values/literal_block=[first line
second line
]
/values/negative=[-17]
/values/quoted_bool=[true]
/values/quoted_float=[1.50]
/values/quoted_int=[0042]
/values/single_quoted=[it's]
/values/stripped_block=[no trailing newline]
/values/url=[http://example.com:8080/path?q=1]
/values/zero=[0]
"
    );
}

/// Conformance case 01: nested maps, lists of maps, lists of lists, a
/// key with a slash, an empty list leaving a gap.
#[test]
fn conformance_case_01_nested_flatten() {
    let got = yaml(&case_data("01-file-nested-flatten", "service.yaml"));
    let want = [
        ("/service/backends/0/addr", "10.0.0.1"),
        ("/service/backends/0/name", "alpha"),
        ("/service/backends/1/addr", "10.0.0.2"),
        ("/service/backends/1/name", "beta"),
        ("/service/backends/1/weights/0", "3"),
        ("/service/backends/1/weights/1", "7"),
        ("/service/dotted.name", "dotted"),
        ("/service/listen/address", "0.0.0.0"),
        ("/service/listen/port", "9000"),
        ("/service/matrix/0/0", "x1"),
        ("/service/matrix/0/1", "x2"),
        ("/service/matrix/1/0", "y1"),
        ("/service/matrix/3/0", "z1"),
        ("/service/name", "billing"),
        ("/service/spaced name", "spaced"),
        ("/service/split/inside", "a map key containing a slash"),
    ];
    let mut expected: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for i in 0..12 {
        expected.insert(format!("/service/regions/{i}"), format!("r{i:02}"));
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
    assert_eq!(lines(&yaml("a: 1\n---\na: 2\nb: 3\n")), "/a=[2]\n/b=[3]\n");
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
