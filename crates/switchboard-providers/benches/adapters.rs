//! Decoder throughput and per-answer adapter CPU overhead.
//!
//! `cargo bench -p switchboard-providers --bench adapters`
#![allow(missing_docs)] // criterion_group! generates an undocumented public fn

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_core::{ChatBody, Message};
use switchboard_providers::__bench::{
    anthropic_request_body, map_anthropic, map_openai, openai_request_body,
};
use switchboard_providers::{MaxTokensField, SseDecoder};

/// A realistic OpenAI stream of `tokens` content chunks, as the API sends it.
fn openai_stream(tokens: usize) -> Vec<u8> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-CgA7cTfN2r9yWkQbL4xVd1HsZe8Mu\",\"object\":\"chat.completion.chunk\",\"created\":1764075745,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null,\"obfuscation\":\"5mRgX\"}}\n\n"
        )
    };
    let mut out = chunk(
        "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
        "null",
    );
    for i in 0..tokens {
        out.push_str(&chunk(&format!("{{\"content\":\" word{i}\"}}"), "null"));
    }
    out.push_str(&chunk("{}", "\"stop\""));
    out.push_str("data: {\"id\":\"chatcmpl-CgA7cTfN2r9yWkQbL4xVd1HsZe8Mu\",\"object\":\"chat.completion.chunk\",\"created\":1764075745,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":9,\"total_tokens\":28,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0}}}\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

/// A realistic Anthropic stream of `tokens` text deltas.
fn anthropic_stream(tokens: usize) -> Vec<u8> {
    let mut out = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-6\",\"id\":\"msg_01PU4SWJR43AoiPx2RA7hfcf\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":16,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
    );
    for i in 0..tokens {
        out.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"
        ));
    }
    out.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out.into_bytes()
}

fn decoder(c: &mut Criterion) {
    let stream = openai_stream(4_000); // ~1.2 MB
    let mut group = c.benchmark_group("sse_decoder");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for piece in [64usize, 1_460, 16_384] {
        group.bench_function(format!("openai_stream_in_{piece}_byte_reads"), |b| {
            let mut events = Vec::with_capacity(4_100);
            b.iter(|| {
                let mut decoder = SseDecoder::new();
                events.clear();
                for chunk in stream.chunks(piece) {
                    decoder.feed(chunk, &mut events).unwrap();
                }
                black_box(events.len())
            })
        });
    }
    group.finish();
}

fn per_answer(c: &mut Criterion) {
    let prompt = "Summarise the following paragraph in two sentences. ".repeat(20);
    let body = ChatBody::new("gpt-4o-mini", vec![Message::user(prompt)])
        .system("You are terse.")
        .max_tokens(256);
    let openai = openai_stream(100);
    let anthropic = anthropic_stream(100);
    assert_eq!(map_openai(&openai).unwrap().len(), 102);
    assert_eq!(map_anthropic(&anthropic).unwrap().len(), 102);

    let mut group = c.benchmark_group("adapter_overhead_100_token_answer");
    group.bench_function("openai_translate_request", |b| {
        b.iter(|| {
            openai_request_body(black_box(&body), MaxTokensField::MaxCompletionTokens).unwrap()
        })
    });
    group.bench_function("openai_decode_and_map_stream", |b| {
        b.iter(|| map_openai(black_box(&openai)).unwrap())
    });
    group.bench_function("anthropic_translate_request", |b| {
        b.iter(|| anthropic_request_body(black_box(&body), 4096).unwrap())
    });
    group.bench_function("anthropic_decode_and_map_stream", |b| {
        b.iter(|| map_anthropic(black_box(&anthropic)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decoder, per_answer);
criterion_main!(benches);
