//! Per-request draws: what one simulated call will do, decided up front from the seed.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use switchboard_core::{ChatBody, FinishReason, Usage};

use crate::config::{Answer, SimConfig};

/// How a stream that started ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Finish and usage, then the terminal event.
    Complete,
    /// Nothing more after `after` tokens: an EOF before the terminal event.
    Truncate { after: usize, reset: bool },
    /// A malformed event after `after` tokens.
    Malformed { after: usize },
    /// An `error` event (overloaded) after `after` tokens.
    ErrorEvent { after: usize },
}

/// What one call does.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Answer with an error status after a delay.
    Fail {
        after: Duration,
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Stream an answer.
    Answer(AnswerPlan),
}

#[derive(Debug, Clone)]
pub(crate) struct AnswerPlan {
    pub(crate) first_token: Duration,
    /// Gap between tokens after the first.
    pub(crate) gap: Duration,
    /// A pause before token `index`.
    pub(crate) stall: Option<(usize, Duration)>,
    pub(crate) tokens: Vec<String>,
    pub(crate) ending: Ending,
    pub(crate) finish: FinishReason,
    pub(crate) usage: Usage,
}

impl AnswerPlan {
    /// The delay before token `index` (0 is the first token).
    pub(crate) fn delay_before(&self, index: usize) -> Duration {
        let base = if index == 0 {
            self.first_token
        } else {
            self.gap
        };
        match self.stall {
            Some((at, pause)) if at == index && index > 0 => base + pause,
            _ => base,
        }
    }

    /// How many tokens are sent before the ending.
    pub(crate) fn sent_tokens(&self) -> usize {
        match self.ending {
            Ending::Complete => self.tokens.len(),
            Ending::Truncate { after, .. }
            | Ending::Malformed { after }
            | Ending::ErrorEvent { after } => after.min(self.tokens.len()),
        }
    }
}

/// SplitMix64: decorrelates the per-request seeds of consecutive sequence numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws the plan of call number `seq`, `elapsed` after the provider was created.
pub(crate) fn draw(config: &SimConfig, seq: u64, elapsed: Duration, body: &ChatBody) -> Plan {
    let mut rng = SmallRng::seed_from_u64(mix(config.seed ^ mix(seq)));
    // Always draw the same number of values in the same order, so that one knob's change
    // does not reshuffle every other draw of the scenario.
    let latency = config.first_token.sample(&mut rng);
    let first_stall = chance(&mut rng, config.first_token_stall.map(|s| s.probability));
    let error_rolls: Vec<f64> = config
        .faults
        .errors
        .iter()
        .map(|_| rng.random::<f64>())
        .collect();
    let mid_stall = chance(
        &mut rng,
        config.faults.stall_mid_stream.map(|s| s.probability),
    );
    let truncate = chance(&mut rng, config.faults.truncate.map(|t| t.probability));
    let malformed = chance(&mut rng, config.faults.malformed.map(|m| m.probability));
    let error_event = chance(&mut rng, config.faults.error_event.map(|m| m.probability));

    if let Some(outage) = config.faults.outages.iter().find(|o| o.contains(elapsed)) {
        return Plan::Fail {
            after: Duration::ZERO,
            status: outage.status,
            retry_after_secs: None,
        };
    }
    for (fault, roll) in config.faults.errors.iter().zip(error_rolls) {
        if roll < fault.probability {
            return Plan::Fail {
                after: fault.after,
                status: fault.status,
                retry_after_secs: fault.retry_after_secs,
            };
        }
    }

    let first_token = match config.first_token_stall {
        Some(stall) if first_stall => stall.duration,
        _ => latency,
    };
    let gap = match config.tokens_per_second {
        Some(tps) if tps > 0.0 && tps.is_finite() => Duration::from_secs_f64(1.0 / tps),
        _ => Duration::ZERO,
    };

    let mut tokens = split_tokens(&answer_text(&config.answer, body));
    if tokens.is_empty() {
        tokens.push(String::new());
    }
    let mut finish = FinishReason::Stop;
    if let Some(max) = body.max_tokens {
        let max = (max as usize).max(1);
        if tokens.len() > max {
            tokens.truncate(max);
            finish = FinishReason::Length;
        }
    }

    let faults = &config.faults;
    let ending = if let (true, Some(t)) = (truncate, faults.truncate) {
        Ending::Truncate {
            after: t.after_tokens as usize,
            reset: t.reset,
        }
    } else if let (true, Some(m)) = (malformed, faults.malformed) {
        Ending::Malformed {
            after: m.after_tokens as usize,
        }
    } else if let (true, Some(e)) = (error_event, faults.error_event) {
        Ending::ErrorEvent {
            after: e.after_tokens as usize,
        }
    } else {
        Ending::Complete
    };
    let stall = match faults.stall_mid_stream {
        Some(s) if mid_stall => Some(((s.after_tokens as usize).max(1), s.duration)),
        _ => None,
    };

    let usage = Usage::new(input_tokens(body), tokens.len() as u64);
    Plan::Answer(AnswerPlan {
        first_token,
        gap,
        stall,
        tokens,
        ending,
        finish,
        usage,
    })
}

fn chance(rng: &mut SmallRng, probability: Option<f64>) -> bool {
    let roll: f64 = rng.random();
    probability.is_some_and(|p| roll < p)
}

fn answer_text(answer: &Answer, body: &ChatBody) -> String {
    match answer {
        Answer::Echo => body.last_user_text().unwrap_or_default(),
        Answer::Fixed { text } => text.clone(),
        Answer::Words { count } => (0..*count)
            .map(|i| format!("token{i}"))
            .collect::<Vec<_>>()
            .join(" "),
        Answer::Rules { rules, default } => {
            let prompt = body.last_user_text().unwrap_or_default();
            rules
                .iter()
                .find(|r| prompt.contains(&r.contains))
                .map_or_else(|| default.clone(), |r| r.reply.clone())
        }
    }
}

/// The simulator's notion of a token: a word with its leading whitespace. Deterministic
/// and cheap; not any real model's tokenizer.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                tokens.push(text[start..i].to_owned());
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        tokens.push(text[start..].to_owned());
    }
    tokens
}

/// The simulator's input token count: one per four bytes of each word (at least one), plus
/// four per message and three for the reply's framing, like OpenAI's chat accounting.
pub fn input_tokens(body: &ChatBody) -> u64 {
    fn count(text: &str) -> u64 {
        text.split_whitespace()
            .map(|w| (w.len() as u64).div_ceil(4))
            .sum()
    }
    let system = body.system.as_deref().map_or(0, |s| count(s) + 4);
    let messages: u64 = body
        .messages
        .iter()
        .map(|m| count(&m.content.text()) + 4)
        .sum();
    system + messages + 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::Message;

    #[test]
    fn tokens_keep_their_leading_whitespace_and_rejoin_exactly() {
        let text = "Hello there,  world!\nBye";
        let tokens = split_tokens(text);
        assert_eq!(tokens, vec!["Hello", " there,", "  world!", "\nBye"]);
        assert_eq!(tokens.concat(), text);
        assert!(split_tokens("").is_empty());
    }

    #[test]
    fn max_tokens_cuts_the_answer_and_says_length() {
        let config = SimConfig::instant().answer(Answer::Words { count: 10 });
        let body = ChatBody::new("m", vec![Message::user("x")]).max_tokens(3);
        let Plan::Answer(plan) = draw(&config, 0, Duration::ZERO, &body) else {
            panic!("expected an answer");
        };
        assert_eq!(plan.tokens.len(), 3);
        assert_eq!(plan.finish, FinishReason::Length);
        assert_eq!(plan.usage.output_tokens, 3);
    }

    #[test]
    fn same_seed_same_plan() {
        let config = SimConfig::instant()
            .seed(42)
            .first_token(crate::Latency::log_normal_ms(400, 2000));
        let body = ChatBody::new("m", vec![Message::user("x")]);
        for seq in 0..20 {
            let a = draw(&config, seq, Duration::ZERO, &body);
            let b = draw(&config, seq, Duration::ZERO, &body);
            match (a, b) {
                (Plan::Answer(a), Plan::Answer(b)) => assert_eq!(a.first_token, b.first_token),
                _ => panic!("expected answers"),
            }
        }
    }
}
