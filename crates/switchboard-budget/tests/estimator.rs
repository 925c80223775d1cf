//! The estimator: token counts against the reference tokenizer, chat framing against a
//! recorded real usage, the right encoding per model, Claude's calibration, learned
//! output and prices. Exact counts need the `tokenizer` feature (on by default).
#![cfg(feature = "tokenizer")]

use switchboard_budget::{Estimator, TokenCounting, count_chat, shipped_prices};
use switchboard_core::{ChatBody, Cost, Message, Price, PriceTable, Scene};

/// A corpus mixing prose, code, JSON, numbers, whitespace runs, CJK, accents and emoji:
/// the cases where BPE implementations disagree if they are going to.
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "  leading spaces and trailing spaces   ",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "1234567890 3.14159 -42 1e10 0x1F",
        "東京は日本の首都です。北京是中国的首都。",
        "Größe, façade, naïve, coöperate, Ελληνικά, русский текст",
        "emoji 🎉🚀👩‍💻 and flags 🇳🇴🇯🇵",
        "tabs\tand\nnewlines\r\n\n\nmany",
        "don't won't it's we'll they've I'm",
        "https://example.com/path?query=1&x=%20y#frag",
        "",
        " ",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A longer generated document.
    let words = [
        "budget",
        " ledger",
        ",",
        " token",
        "\n",
        " 東京",
        " 🎉",
        " 2026",
        "  ",
        " reserve()",
    ];
    let mut doc = String::new();
    let mut x: u64 = 7;
    for _ in 0..5_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        doc.push_str(words[(x >> 33) as usize % words.len()]);
    }
    texts.push(doc);
    texts
}

#[test]
fn cl100k_counts_equal_the_reference_tokenizer() {
    let reference = tiktoken_rs::cl100k_base().unwrap();
    for text in corpus() {
        let expected = reference.encode_ordinary(&text).len() as u64;
        assert_eq!(
            TokenCounting::Cl100k.count(&text),
            (expected, expected),
            "{text:?}"
        );
    }
}

#[test]
fn o200k_counts_equal_the_reference_tokenizer() {
    let reference = tiktoken_rs::o200k_base().unwrap();
    for text in corpus() {
        let expected = reference.encode_ordinary(&text).len() as u64;
        assert_eq!(
            TokenCounting::O200k.count(&text),
            (expected, expected),
            "{text:?}"
        );
    }
}

#[test]
fn each_model_gets_its_encoding() {
    for (model, counting) in [
        ("gpt-4o-mini", TokenCounting::O200k),
        ("gpt-4o-2024-08-06", TokenCounting::O200k),
        ("gpt-4.1-nano", TokenCounting::O200k),
        ("gpt-5-mini", TokenCounting::O200k),
        ("o4-mini", TokenCounting::O200k),
        ("gpt-4-turbo", TokenCounting::Cl100k),
        ("gpt-3.5-turbo", TokenCounting::Cl100k),
        ("claude-sonnet-4-5", TokenCounting::Claude),
        ("claude-haiku-4-5-20251001", TokenCounting::Claude),
        ("llama-3.1-70b", TokenCounting::Bytes),
    ] {
        assert_eq!(TokenCounting::for_model(model), counting, "{model}");
    }
}

#[test]
fn chat_framing_matches_a_recorded_openai_usage() {
    // crates/switchboard-sim/testdata/openai: this request was billed prompt_tokens = 19.
    let body = ChatBody::new("gpt-4o-mini", vec![Message::user("Hello!")])
        .system("You are a helpful assistant.");
    assert_eq!(count_chat(TokenCounting::O200k, &body), (19, 19));
}

#[test]
fn claude_estimate_is_scaled_o200k_with_a_higher_bound() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let (o200k, _) = TokenCounting::O200k.count(text);
    assert_eq!(o200k, 10);
    // ×1.20 rounded up, ×1.40 rounded up.
    assert_eq!(TokenCounting::Claude.count(text), (12, 14));
}

#[test]
fn unknown_tokenizers_are_bounded_by_bytes() {
    let text = "some text: 24 bytes long";
    assert_eq!(TokenCounting::Bytes.count(text), (6, 24));
}

#[test]
fn estimate_prices_input_and_output_bounds() {
    let estimator = Estimator::default();
    let body = ChatBody::new("gpt-4o-mini", vec![Message::user("Hello!")])
        .system("You are a helpful assistant.")
        .max_tokens(256);
    let e = estimator.estimate(&body, None);
    assert_eq!(e.model, "gpt-4o-mini");
    assert_eq!((e.input_tokens, e.input_tokens_bound), (19, 19));
    assert_eq!((e.expected_output_tokens, e.max_output_tokens), (256, 256));
    // 19 × $0.15/M rounded up + 256 × $0.60/M
    assert_eq!(e.upper_bound, Cost::from_nanos(2_850 + 153_600));
    assert_eq!(e.expected, e.upper_bound);
}

#[test]
fn without_max_tokens_the_bound_is_the_models_output_limit() {
    let estimator = Estimator::default();
    let body = ChatBody::new("claude-sonnet-4-5", vec![Message::user("hi")]);
    let e = estimator.estimate(&body, None);
    assert_eq!(e.max_output_tokens, 64_000);
    assert_eq!(e.expected_output_tokens, 1_024, "the default expectation");
    let custom = Estimator::builder()
        .max_output_tokens("claude-sonnet-4-5", 8_192)
        .default_expected_output_tokens(300)
        .build();
    let e = custom.estimate(&body, None);
    assert_eq!(
        (e.expected_output_tokens, e.max_output_tokens),
        (300, 8_192)
    );
}

#[test]
fn learned_percentile_replaces_max_tokens_once_a_scene_has_enough_samples() {
    let estimator = Estimator::builder()
        .min_samples(10)
        .output_percentile(90)
        .build();
    let scene = Scene::SUMMARY;
    let body = ChatBody::new("gpt-4o", vec![Message::user("summarize")]).max_tokens(4_000);
    for n in 1..=9u64 {
        estimator.observe_output(&scene, n * 10);
    }
    assert_eq!(
        estimator.learned_output(&scene),
        None,
        "nine samples are not enough"
    );
    assert_eq!(
        estimator
            .estimate(&body, Some(&scene))
            .expected_output_tokens,
        4_000
    );
    estimator.observe_output(&scene, 100);
    // p90 of 10..=100 is 90, reported as its histogram bucket's upper bound (≤ 12.5 % high).
    let learned = estimator.learned_output(&scene).unwrap();
    assert!((90..=101).contains(&learned), "p90 ≈ 90, got {learned}");
    let e = estimator.estimate(&body, Some(&scene));
    assert_eq!(e.expected_output_tokens, learned);
    assert_eq!(e.max_output_tokens, 4_000, "the bound stays max_tokens");
    assert_eq!(
        estimator.learned_output(&Scene::CODE),
        None,
        "scenes learn separately"
    );
}

#[test]
fn shipped_prices_cover_current_models() {
    let table = shipped_prices();
    let price = |m: &str| *table.get(m).unwrap_or_else(|| panic!("{m} is shipped"));
    let p = |i: &str, o: &str, c: &str| {
        Price::per_million(i, o)
            .unwrap()
            .with_cached_input(c)
            .unwrap()
    };
    assert_eq!(price("gpt-4o-mini"), p("0.15", "0.60", "0.075"));
    assert_eq!(price("gpt-4o"), p("2.50", "10", "1.25"));
    assert_eq!(price("gpt-4.1"), p("2", "8", "0.50"));
    assert_eq!(price("gpt-4.1-mini"), p("0.40", "1.60", "0.10"));
    assert_eq!(price("gpt-4.1-nano"), p("0.10", "0.40", "0.025"));
    assert_eq!(price("claude-haiku-4-5"), p("1", "5", "0.10"));
    assert_eq!(price("claude-sonnet-4-5"), p("3", "15", "0.30"));
    assert_eq!(price("claude-sonnet-4-6"), p("3", "15", "0.30"));
}

#[test]
fn snapshots_aliases_overrides_and_unknown_models_are_priced_safely() {
    let mut overrides = PriceTable::new();
    overrides.insert("gpt-4o-mini", Price::per_million("0.20", "0.80").unwrap());
    let estimator = Estimator::builder()
        .prices(overrides)
        .alias("fast", "gpt-4.1-nano")
        .build();
    let table = shipped_prices();
    assert_eq!(
        estimator.price_of("gpt-4o-mini-2024-07-18"),
        Price::per_million("0.20", "0.80").unwrap(),
        "a dated snapshot takes its base model's (overridden) price"
    );
    assert_eq!(
        estimator.price_of("gpt-4o-2024-08-06"),
        *table.get("gpt-4o").unwrap()
    );
    assert_eq!(
        estimator.price_of("fast"),
        *table.get("gpt-4.1-nano").unwrap()
    );
    assert_eq!(estimator.known_price("mystery-model"), None);
    assert_eq!(
        estimator.price_of("mystery-model"),
        *table.get("claude-opus-4-1").unwrap(),
        "unknown models are priced at the most expensive entry"
    );
}
