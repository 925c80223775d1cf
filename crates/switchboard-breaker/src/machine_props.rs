//! Property tests of the state machine's invariants over arbitrary event sequences.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use crate::BreakerConfig;
use crate::machine::{Admission, Cause, Machine, Outcome, State, Ticket, Transition};

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Finish the n-th outstanding call (modulo their number) with an outcome.
    Finish(usize, u8),
    Advance(u64),
    ActiveProbe,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), 0u8..4).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => (0u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::ActiveProbe),
        1 => Just(Op::Reset),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        prop::option::of(1u32..6),
        1u32..8,
        0.1f64..1.0,
        1u32..5,
        1u64..10,
        0.0f64..1.0,
    )
        .prop_map(|(consecutive, min_calls, rate, probes, base_s, jitter)| {
            BreakerConfig::default()
                .consecutive_failures(consecutive)
                .failure_rate(Duration::from_secs(30), min_calls, rate)
                .half_open_probes(probes)
                .open_period(
                    Duration::from_secs(base_s),
                    Duration::from_secs(base_s * 8),
                    2.0,
                    jitter,
                )
        })
}

fn legal(t: &Transition) -> bool {
    matches!(
        (t.from, t.to, t.cause),
        (
            State::Closed,
            State::Open { .. },
            Cause::ConsecutiveFailures | Cause::FailureRate | Cause::SlowCallRate
        ) | (
            State::Open { .. },
            State::HalfOpen {
                issued: 0,
                succeeded: 0
            },
            Cause::OpenPeriodOver | Cause::ActiveProbeSucceeded
        ) | (
            State::HalfOpen { .. },
            State::Closed,
            Cause::ProbesSucceeded
        ) | (
            State::HalfOpen { .. },
            State::Open { .. },
            Cause::ProbeFailed
        ) | (_, State::Closed, Cause::Reset)
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_more_half_open_probes_than_permitted_and_transitions_are_legal(
        config in config(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let k = config.half_open_probes;
        let base = config.open_base;
        let max = config.open_max;
        let start = Instant::now();
        let mut now = start;
        let mut m = Machine::new(config, now, 7);
        let mut outstanding: Vec<Ticket> = Vec::new();
        // Probes admitted in the current half-open episode and not returned unused.
        let mut probes_out = 0u32;

        for op in ops {
            let before = m.state();
            let acquire = matches!(op, Op::Acquire);
            let t = match op {
                Op::Acquire => {
                    let (admission, t) = m.acquire(now);
                    if let Some(t) = &t {
                        probes_out = 0;
                        let over = matches!(t.from, State::Open { until } if now >= until);
                        prop_assert!(over, "half-open only after the open period");
                    }
                    match admission {
                        Admission::Admit(ticket) => {
                            match m.state() {
                                State::Closed => prop_assert_eq!(ticket, Ticket::Normal),
                                State::HalfOpen { .. } => {
                                    prop_assert_eq!(ticket, Ticket::Probe(m.episode()));
                                    probes_out += 1;
                                }
                                State::Open { .. } => prop_assert!(false, "admitted while open"),
                            }
                            outstanding.push(ticket);
                        }
                        Admission::Reject { until } => match m.state() {
                            State::Open { until: u } => {
                                prop_assert!(now < u, "rejected after the open period");
                                prop_assert_eq!(until, Some(u));
                            }
                            State::HalfOpen { issued, .. } => prop_assert_eq!(issued, k),
                            State::Closed => prop_assert!(false, "rejected while closed"),
                        },
                    }
                    t
                }
                Op::Finish(i, o) => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let ticket = outstanding.remove(i % outstanding.len());
                    let outcome = match o {
                        0 => Outcome::Success { slow: false },
                        1 => Outcome::Success { slow: true },
                        2 => Outcome::Failure,
                        _ => Outcome::Ignored,
                    };
                    if ticket == Ticket::Probe(m.episode())
                        && outcome == Outcome::Ignored
                        && matches!(m.state(), State::HalfOpen { .. })
                    {
                        probes_out -= 1;
                    }
                    m.finish(ticket, outcome, now)
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    None
                }
                Op::ActiveProbe => m.active_probe_succeeded(),
                Op::Reset => m.reset(),
            };
            if let Some(t) = &t {
                prop_assert!(legal(t), "illegal transition {:?}", t);
                prop_assert_eq!(t.from, before);
                if !acquire {
                    // (an acquire may admit a probe right after moving to half-open)
                    prop_assert_eq!(t.to, m.state());
                }
                if let State::Open { until } = t.to {
                    let period = until - now;
                    prop_assert!(period >= base && period <= max, "open period {:?}", period);
                }
                // A new episode: probes of an old one (still outstanding) hold no slot.
                if !acquire {
                    probes_out = 0;
                }
            }
            if let State::HalfOpen { issued, succeeded } = m.state() {
                prop_assert!(issued <= k, "{} probes issued, {} permitted", issued, k);
                prop_assert!(succeeded <= issued);
                prop_assert_eq!(issued, probes_out, "slots held = probes admitted and not returned");
            }
        }
    }
}
