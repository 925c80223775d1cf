//! The in-process simulator: distributions, speed, faults and determinism, in paused time.

use std::time::Duration;

use futures_util::StreamExt;
use switchboard_core::{
    ChatBody, ChatEvent, ChatRequest, Error, FinishReason, Message, ProviderId, Usage,
};
use switchboard_sim::{
    Answer, ErrorFault, Faults, Latency, MidStream, MidStreamStall, Outage, Rule, SimConfig,
    SimProvider, Stall, Truncate, input_tokens,
};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

const SAMPLES: usize = 10_000;

fn request(text: &str) -> ChatRequest {
    ChatRequest::new(ChatBody::new("sim-model", vec![Message::user(text)]))
}

fn sim(config: SimConfig) -> SimProvider {
    SimProvider::new(ProviderId::OPENAI, config)
}

/// Time to first token of each of `n` sequential calls, in virtual time.
async fn first_token_latencies(provider: &mut SimProvider, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let response = provider.ready().await.unwrap().call(request("x")).await;
        out.push(start.elapsed());
        drop(response);
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn assert_within(actual: Duration, expected: Duration, tolerance: f64, what: &str) {
    let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
    assert!(
        (a - e).abs() <= e * tolerance,
        "{what}: {a:.4}s is not within {:.0} % of {e:.4}s",
        tolerance * 100.0
    );
}

#[tokio::test(start_paused = true)]
async fn log_normal_hits_its_p50_and_p99_over_ten_thousand_samples() {
    let mut provider = sim(SimConfig::instant()
        .seed(1)
        .first_token(Latency::log_normal_ms(400, 2_500)));
    let latencies = first_token_latencies(&mut provider, SAMPLES).await;
    // Tolerances: the sampling error of a p50 over 10k draws is ~1 %, of a p99 ~5 %.
    assert_within(
        percentile(&latencies, 50.0),
        Duration::from_millis(400),
        0.05,
        "p50",
    );
    assert_within(
        percentile(&latencies, 99.0),
        Duration::from_millis(2_500),
        0.10,
        "p99",
    );
}

#[tokio::test(start_paused = true)]
async fn uniform_stays_in_bounds_and_centres_on_the_midpoint() {
    let mut provider = sim(SimConfig::instant().seed(2).first_token(Latency::Uniform {
        min: Duration::from_millis(100),
        max: Duration::from_millis(300),
    }));
    let latencies = first_token_latencies(&mut provider, SAMPLES).await;
    assert!(latencies[0] >= Duration::from_millis(100));
    assert!(latencies[SAMPLES - 1] <= Duration::from_millis(300));
    assert_within(
        percentile(&latencies, 50.0),
        Duration::from_millis(200),
        0.05,
        "p50",
    );
}

#[tokio::test(start_paused = true)]
async fn fixed_latency_is_exact() {
    let mut provider = sim(SimConfig::instant().first_token(Latency::fixed_ms(250)));
    let latencies = first_token_latencies(&mut provider, 100).await;
    assert!(latencies.iter().all(|l| *l == Duration::from_millis(250)));
}

#[tokio::test(start_paused = true)]
async fn first_token_stalls_fire_at_their_probability() {
    let mut config = SimConfig::instant()
        .seed(3)
        .first_token(Latency::fixed_ms(400));
    config.first_token_stall = Some(Stall {
        probability: 0.03,
        duration: Duration::from_secs(10),
    });
    let mut provider = sim(config);
    let latencies = first_token_latencies(&mut provider, SAMPLES).await;
    let stalled = latencies
        .iter()
        .filter(|l| **l == Duration::from_secs(10))
        .count();
    let rate = stalled as f64 / SAMPLES as f64;
    assert!(
        (0.025..=0.035).contains(&rate),
        "stall rate {rate} is not 3 % ± 0.5"
    );
    assert_eq!(percentile(&latencies, 50.0), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn streams_at_the_configured_tokens_per_second() {
    let mut provider = sim(SimConfig::instant()
        .first_token(Latency::fixed_ms(100))
        .tokens_per_second(20.0)
        .answer(Answer::Words { count: 11 }));
    let start = Instant::now();
    let response = provider
        .ready()
        .await
        .unwrap()
        .call(request("x"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let done = response.collect().await.unwrap();
    // 10 gaps of 50 ms after the first token.
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    assert_eq!(done.text.split(' ').count(), 11);
    assert_eq!(done.finish, Some(FinishReason::Stop));
}

#[tokio::test(start_paused = true)]
async fn usage_counts_what_was_streamed() {
    let mut provider = sim(SimConfig::instant().answer(Answer::Fixed {
        text: "one two three four".into(),
    }));
    let req = request("a question of some length");
    let expected_input = input_tokens(req.body());
    let mut response = provider.ready().await.unwrap().call(req).await.unwrap();
    let mut texts = 0;
    let mut usage = None;
    while let Some(event) = response.next().await {
        match event.unwrap() {
            ChatEvent::Text { .. } => texts += 1,
            ChatEvent::Usage(u) => usage = Some(u),
            _ => {}
        }
    }
    assert_eq!(texts, 4);
    assert_eq!(usage, Some(Usage::new(expected_input, 4)));
}

#[tokio::test(start_paused = true)]
async fn answers_echo_fixed_and_rules() {
    let rules = Answer::Rules {
        rules: vec![Rule {
            contains: "refund".into(),
            reply: "I cannot help with refunds.".into(),
        }],
        default: "Sure.".into(),
    };
    for (answer, prompt, expected) in [
        (Answer::Echo, "ping", "ping"),
        (Answer::Fixed { text: "hi!".into() }, "ping", "hi!"),
        (
            rules.clone(),
            "I want a refund now",
            "I cannot help with refunds.",
        ),
        (rules, "hello", "Sure."),
    ] {
        let mut provider = sim(SimConfig::instant().answer(answer));
        let response = provider
            .ready()
            .await
            .unwrap()
            .call(request(prompt))
            .await
            .unwrap();
        assert_eq!(response.collect().await.unwrap().text, expected);
    }
}

fn errors(status: u16, probability: f64) -> Faults {
    Faults {
        errors: vec![ErrorFault {
            status,
            probability,
            after: Duration::ZERO,
            retry_after_secs: Some(2),
        }],
        ..Faults::default()
    }
}

#[tokio::test(start_paused = true)]
async fn error_statuses_fire_at_their_probability_and_map_to_core_errors() {
    let mut provider = sim(SimConfig::instant().seed(4).faults(errors(429, 0.2)));
    let mut limited = 0;
    for _ in 0..SAMPLES {
        match provider.ready().await.unwrap().call(request("x")).await {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
                limited += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => {}
        }
    }
    let rate = limited as f64 / SAMPLES as f64;
    assert!(
        (0.19..=0.21).contains(&rate),
        "429 rate {rate} is not 20 % ± 1"
    );
    assert_eq!(provider.stats().failed(), limited);

    for (status, reason) in [
        (500, "openai_upstream_server_error"),
        (503, "openai_upstream_server_error"),
        (529, "openai_overloaded"),
        (401, "openai_upstream_auth_error"),
        (400, "openai_invalid_request"),
    ] {
        let mut provider = sim(SimConfig::instant().faults(errors(status, 1.0)));
        let err = provider
            .ready()
            .await
            .unwrap()
            .call(request("x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn outage_windows_fail_every_call_inside_and_none_outside() {
    let faults = Faults {
        outages: vec![Outage {
            start: Duration::from_secs(10),
            duration: Duration::from_secs(120),
            status: 503,
        }],
        ..Faults::default()
    };
    let mut provider = sim(SimConfig::instant().faults(faults));
    let start = Instant::now();
    let mut timeline = Vec::new();
    while start.elapsed() < Duration::from_secs(200) {
        let ok = provider
            .ready()
            .await
            .unwrap()
            .call(request("x"))
            .await
            .is_ok();
        timeline.push((start.elapsed(), ok));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (at, ok) in timeline {
        let inside = at >= Duration::from_secs(10) && at < Duration::from_secs(130);
        assert_eq!(ok, !inside, "call at {at:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn mid_stream_stall_delays_the_configured_token() {
    let faults = Faults {
        stall_mid_stream: Some(MidStreamStall {
            probability: 1.0,
            after_tokens: 3,
            duration: Duration::from_secs(5),
        }),
        ..Faults::default()
    };
    let mut provider = sim(SimConfig::instant()
        .answer(Answer::Words { count: 6 })
        .faults(faults));
    let mut response = provider
        .ready()
        .await
        .unwrap()
        .call(request("x"))
        .await
        .unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    while let Some(Ok(ChatEvent::Text { .. })) = response.next().await {
        arrivals.push(start.elapsed());
    }
    assert_eq!(arrivals.len(), 6);
    assert_eq!(arrivals[2], Duration::ZERO, "three tokens before the stall");
    assert_eq!(
        arrivals[3],
        Duration::from_secs(5),
        "the fourth waits out the stall"
    );
}

#[tokio::test(start_paused = true)]
async fn truncated_malformed_and_error_event_streams_end_in_explicit_errors() {
    let cases: [(Faults, &str); 3] = [
        (
            Faults {
                truncate: Some(Truncate {
                    probability: 1.0,
                    after_tokens: 2,
                    reset: false,
                }),
                ..Faults::default()
            },
            "openai_stream_error",
        ),
        (
            Faults {
                malformed: Some(MidStream {
                    probability: 1.0,
                    after_tokens: 2,
                }),
                ..Faults::default()
            },
            "openai_stream_error",
        ),
        (
            Faults {
                error_event: Some(MidStream {
                    probability: 1.0,
                    after_tokens: 2,
                }),
                ..Faults::default()
            },
            "openai_overloaded",
        ),
    ];
    for (faults, reason) in cases {
        let mut provider = sim(SimConfig::instant()
            .answer(Answer::Words { count: 5 })
            .faults(faults));
        let mut response = provider
            .ready()
            .await
            .unwrap()
            .call(request("x"))
            .await
            .unwrap();
        let mut texts = 0;
        let mut error = None;
        while let Some(event) = response.next().await {
            match event {
                Ok(ChatEvent::Text { .. }) => texts += 1,
                Ok(other) => panic!("no {other:?} after a broken stream"),
                Err(e) => error = Some(e),
            }
        }
        assert_eq!(texts, 2, "{reason}: two tokens before the fault");
        assert_eq!(error.map(|e| e.reason()).as_deref(), Some(reason));
        assert_eq!(provider.stats().failed(), 1);
        assert_eq!(provider.stats().completed(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_fault_before_the_first_token_fails_the_call_itself() {
    let faults = Faults {
        truncate: Some(Truncate {
            probability: 1.0,
            after_tokens: 0,
            reset: false,
        }),
        ..Faults::default()
    };
    let mut provider = sim(SimConfig::instant().faults(faults));
    let err = provider
        .ready()
        .await
        .unwrap()
        .call(request("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Stream { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_replays_the_same_run() {
    let config = SimConfig::instant()
        .seed(99)
        .first_token(Latency::log_normal_ms(300, 3_000))
        .faults(errors(503, 0.1));
    let run = |config: SimConfig| async move {
        let mut provider = sim(config);
        let mut trace = Vec::new();
        for _ in 0..500 {
            let start = Instant::now();
            let ok = provider
                .ready()
                .await
                .unwrap()
                .call(request("x"))
                .await
                .is_ok();
            trace.push((start.elapsed(), ok));
        }
        trace
    };
    let a = run(config.clone()).await;
    let b = run(config.clone()).await;
    let c = run(config.seed(100)).await;
    assert_eq!(a, b, "same seed, same run");
    assert_ne!(a, c, "another seed, another run");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_or_its_stream_counts_as_cancelled() {
    let mut provider = sim(SimConfig::instant()
        .first_token(Latency::fixed_ms(1_000))
        .tokens_per_second(10.0)
        .answer(Answer::Words { count: 50 }));
    // Dropped before the first token.
    let pending = provider.ready().await.unwrap().call(request("x"));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), pending)
            .await
            .is_err()
    );
    // Dropped mid-stream.
    let mut response = provider
        .ready()
        .await
        .unwrap()
        .call(request("x"))
        .await
        .unwrap();
    response.next().await.unwrap().unwrap();
    assert_eq!(provider.stats().in_flight(), 1);
    drop(response);
    let stats = provider.stats();
    assert_eq!(stats.calls(), 2);
    assert_eq!(stats.cancelled(), 2);
    assert_eq!(stats.in_flight(), 0);
}
