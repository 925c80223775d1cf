use std::sync::Arc;

use switchboard_core::Tier;
use tower::Layer;

use crate::budget::admit::Policy;
use crate::budget::service::Budget;
use crate::policy::TierPolicy;
use crate::{
    AnswerCache, BlockAction, Degrade, Estimator, JobQueue, Ledger, RequestCap, Thresholds,
};

/// Gates spend: reserves each request's cost upper bound in a [`Ledger`], applies the
/// tier's warn / degrade / block thresholds, and settles the real cost when the answer's
/// stream ends (refund on failure; a drop guard settles an abandoned stream).
///
/// Built with [`BudgetLayer::builder`].
#[derive(Debug, Clone)]
pub struct BudgetLayer<L> {
    ledger: L,
    policy: Arc<Policy>,
}

impl<L: Ledger> BudgetLayer<L> {
    /// A layer over `ledger` with the default policy: thresholds 80 / 90 / 100 % for
    /// every tier, no degrade steps, L0 exempt from degrade, block by rejecting.
    pub fn new(ledger: L) -> Self {
        Self::builder(ledger).build()
    }

    /// A builder.
    pub fn builder(ledger: L) -> BudgetLayerBuilder<L> {
        BudgetLayerBuilder {
            ledger,
            policy: Policy {
                estimator: Arc::new(Estimator::default()),
                tiers: Tier::ALL.map(TierPolicy::default_for),
                degrade: Degrade::default(),
                request_cap: None,
                cache: None,
                jobs: None,
            },
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }
}

impl<S, L: Ledger> Layer<S> for BudgetLayer<L> {
    type Service = Budget<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        Budget::new(inner, self.ledger.clone(), self.policy.clone())
    }
}

/// Builds a [`BudgetLayer`].
#[derive(Debug)]
pub struct BudgetLayerBuilder<L> {
    ledger: L,
    policy: Policy,
}

impl<L: Ledger> BudgetLayerBuilder<L> {
    /// The estimator for requests without a `CostEstimate` and for re-estimating after
    /// degrading. Share it with the `EstimateLayer`. Default: the shipped prices.
    pub fn estimator(mut self, estimator: Arc<Estimator>) -> Self {
        self.policy.estimator = estimator;
        self
    }

    /// A tier's thresholds. Default: 80 / 90 / 100 %.
    pub fn thresholds(mut self, tier: Tier, thresholds: Thresholds) -> Self {
        self.policy.tiers[tier.index()].thresholds = thresholds;
        self
    }

    /// The same thresholds for every tier.
    pub fn thresholds_all(mut self, thresholds: Thresholds) -> Self {
        for t in &mut self.policy.tiers {
            t.thresholds = thresholds;
        }
        self
    }

    /// How degrade makes a request cheaper. Default: no steps (degrade only warns).
    pub fn degrade(mut self, degrade: Degrade) -> Self {
        self.policy.degrade = degrade;
        self
    }

    /// Whether a tier is exempt from degrade. Default: L0 exempt, L1 and L2 not.
    pub fn exempt_from_degrade(mut self, tier: Tier, exempt: bool) -> Self {
        self.policy.tiers[tier.index()].degrade_exempt = exempt;
        self
    }

    /// What a tier's blocked requests get. Default: [`BlockAction::Reject`].
    pub fn on_block(mut self, tier: Tier, action: BlockAction) -> Self {
        self.policy.tiers[tier.index()].on_block = action;
        self
    }

    /// A cap on each request's cost upper bound. Default: none.
    pub fn request_cap(mut self, cap: RequestCap) -> Self {
        self.policy.request_cap = Some(cap);
        self
    }

    /// The response cache [`BlockAction::Cache`] answers from; complete answers are
    /// stored in it: a [`ResponseCache`](crate::ResponseCache) (in memory) or a shared one such as
    /// `RedisResponseCache`. Default: none.
    pub fn cache(mut self, cache: impl AnswerCache) -> Self {
        self.policy.cache = Some(Arc::new(cache));
        self
    }

    /// The job queue [`BlockAction::Enqueue`] puts blocked requests on; drain it with a
    /// [`JobWorker`](crate::JobWorker). Default: none.
    pub fn jobs(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.policy.jobs = Some(queue);
        self
    }

    /// The layer.
    pub fn build(self) -> BudgetLayer<L> {
        BudgetLayer {
            ledger: self.ledger,
            policy: Arc::new(self.policy),
        }
    }
}
