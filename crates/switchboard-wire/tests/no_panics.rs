//! Bad input gets an error, never a panic: arbitrary bytes and arbitrary JSON through both
//! request parsers, and arbitrary events through both stream encoders.

use proptest::prelude::*;
use serde_json::Value;
use switchboard_core::{ChatEvent, FinishReason, Usage};
use switchboard_wire::{anthropic, openai};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("model".to_owned()),
            Just("messages".to_owned()),
            Just("role".to_owned()),
            Just("content".to_owned()),
            Just("type".to_owned()),
            Just("text".to_owned()),
            Just("max_tokens".to_owned()),
            Just("tools".to_owned()),
            Just("tool_choice".to_owned()),
            Just("tool_calls".to_owned()),
            Just("stop".to_owned()),
            Just("system".to_owned()),
            Just("stream".to_owned()),
            Just("source".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = ChatEvent> {
    prop_oneof![
        ".{0,20}".prop_map(ChatEvent::text),
        (
            0u32..4,
            proptest::option::of("[a-z]{1,5}"),
            proptest::option::of("[a-z]{1,5}"),
            ".{0,10}"
        )
            .prop_map(|(index, id, name, arguments)| ChatEvent::ToolCall {
                index,
                id,
                name,
                arguments
            }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(i, o)| ChatEvent::Usage(Usage::new(i.into(), o.into()))),
        Just(ChatEvent::Finish(FinishReason::Length)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_not_panicked_on(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = openai::parse_request(&bytes) {
            prop_assert_eq!(e.status, 400);
        }
        if let Err(e) = anthropic::parse_request(&bytes) {
            prop_assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn arbitrary_json_is_parsed_or_refused_with_a_400(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Err(e) = openai::parse_request(&bytes) {
            prop_assert_eq!(e.status, 400);
            prop_assert!(!e.message.is_empty());
        }
        if let Err(e) = anthropic::parse_request(&bytes) {
            prop_assert_eq!(e.status, 400);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn any_event_sequence_encodes_to_parseable_sse(events in prop::collection::vec(event(), 0..20)) {
        let mut o = openai::StreamEncoder::new("id", "m", 0, true);
        let mut a = anthropic::StreamEncoder::new("msg", "m", 0);
        let (mut ob, mut ab) = (Vec::new(), Vec::new());
        o.start(&mut ob);
        a.start(&mut ab);
        for e in &events {
            o.event(e, &mut ob);
            a.event(e, &mut ab);
        }
        o.end(&mut ob);
        a.end(&mut ab);
        for (bytes, terminal) in [(ob, "[DONE]"), (ab, "{\"type\":\"message_stop\"}")] {
            let text = String::from_utf8(bytes).unwrap();
            let datas: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            prop_assert_eq!(*datas.last().unwrap(), terminal);
            for d in &datas[..datas.len() - 1] {
                prop_assert!(serde_json::from_str::<Value>(d).is_ok(), "{}", d);
            }
        }
    }
}
