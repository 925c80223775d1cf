//! Settlement: commit the real cost when the stream ends, refund a call that never
//! started, and settle from a drop guard when the caller walks away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use pin_project_lite::pin_project;
use switchboard_core::{
    ChatBody, ChatEvent, Cost, CostEstimate, Error, EventStream, Price, ProviderId, Usage,
};

use crate::{AnswerCache, Hold, Ledger};

/// A hold and what is needed to price its call. Dropping it unsettled settles the
/// partial cost (see [`Settlement::partial_cost`]).
pub(crate) struct Settlement<L: Ledger> {
    ledger: L,
    hold: Option<Hold>,
    estimate: CostEstimate,
    price: Price,
    usage: Option<Usage>,
    content_events: u64,
    record: Option<Record>,
}

struct Record {
    cache: Arc<dyn AnswerCache>,
    body: Arc<ChatBody>,
    answer: Option<(ProviderId, String)>,
    events: Vec<ChatEvent>,
}

impl<L: Ledger> Settlement<L> {
    pub(crate) fn new(
        ledger: L,
        hold: Hold,
        estimate: CostEstimate,
        record: Option<(Arc<dyn AnswerCache>, Arc<ChatBody>)>,
    ) -> Self {
        Self {
            ledger,
            hold: Some(hold),
            price: estimate.price,
            estimate,
            usage: None,
            content_events: 0,
            record: record.map(|(cache, body)| Record {
                cache,
                body,
                answer: None,
                events: Vec::new(),
            }),
        }
    }

    /// Prices the rest of the call at the model that actually answered, when known.
    /// Whether `model` is the one the estimate priced (its price is already known).
    pub(crate) fn priced(&self, model: &str) -> bool {
        *self.estimate.model == *model
    }

    pub(crate) fn answered_by(&mut self, provider: ProviderId, model: &str, price: Option<Price>) {
        if let Some(price) = price {
            self.price = price;
        }
        if let Some(r) = &mut self.record {
            r.answer = Some((provider, model.to_owned()));
        }
    }

    /// The call failed before its first token: nothing was generated, nothing is owed.
    pub(crate) fn refund(mut self) {
        if let Some(hold) = self.hold.take() {
            self.ledger.settle(hold, Cost::ZERO);
        }
    }

    fn observe(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::Usage(u) => self.usage.get_or_insert_with(Usage::default).merge_max(*u),
            e if e.is_content() => self.content_events += 1,
            _ => {}
        }
        if let Some(r) = &mut self.record {
            r.events.push(event.clone());
        }
    }

    /// The cost of a call that did not report its usage: the estimated input plus one
    /// output token per content event seen (providers stream about one token per event),
    /// at most the output bound.
    fn partial_cost(&self) -> Cost {
        let usage = self.usage.unwrap_or(Usage::new(
            self.estimate.input_tokens,
            self.content_events.min(self.estimate.max_output_tokens),
        ));
        self.price.cost_of(&usage).unwrap_or(Cost::MAX)
    }

    /// The stream ended cleanly: commit the reported usage.
    fn complete(&mut self) {
        if let Some(hold) = self.hold.take() {
            let actual = self.partial_cost();
            self.ledger.settle(hold, actual);
        }
        if let Some(r) = self.record.take() {
            if let Some((provider, model)) = r.answer {
                r.cache.store(&r.body, provider, model, r.events);
            }
        }
    }

    /// The stream broke, or was abandoned: commit what was probably spent.
    fn abandon(&mut self) {
        self.record = None;
        if let Some(hold) = self.hold.take() {
            let actual = self.partial_cost();
            self.ledger.settle(hold, actual);
        }
    }
}

impl<L: Ledger> Drop for Settlement<L> {
    fn drop(&mut self) {
        self.abandon();
    }
}

pin_project! {
    /// An answer's events, passed through unchanged; the budget hold is settled when the
    /// stream ends (real usage), breaks or is dropped (the partial cost).
    pub struct SettledEvents<L: Ledger> {
        #[pin]
        events: EventStream,
        settlement: Settlement<L>,
    }
}

impl<L: Ledger> SettledEvents<L> {
    pub(crate) fn new(events: EventStream, settlement: Settlement<L>) -> Self {
        Self { events, settlement }
    }
}

impl<L: Ledger> std::fmt::Debug for SettledEvents<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettledEvents").finish_non_exhaustive()
    }
}

impl<L: Ledger> Stream for SettledEvents<L> {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let item = ready!(this.events.poll_next(cx));
        match &item {
            Some(Ok(event)) => this.settlement.observe(event),
            Some(Err(_)) => this.settlement.abandon(),
            None => this.settlement.complete(),
        }
        Poll::Ready(item)
    }
}
