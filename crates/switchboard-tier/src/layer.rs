use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::{Scene, Tier};
use tower::Layer;

use crate::rule::{Classification, Classifier, KeyPolicy, Pattern, RequestFacts, Rule};
use crate::service::Classify;

/// Classifies every request into a [`Tier`], a [`Scene`] and (when a rule names one) a
/// tenant, and leaves them in the request's extensions.
///
/// Built with [`TierLayer::builder`]; [`TierLayer::new`] is a layer with no rules that
/// gives every request the default tier (`L1`) and scene (`chat`).
#[derive(Debug, Clone)]
pub struct TierLayer {
    classifier: Arc<Classifier>,
}

impl TierLayer {
    /// A layer without rules: every request gets `L1` and `chat`.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder; rules apply in the order they are added.
    pub fn builder() -> TierLayerBuilder {
        TierLayerBuilder {
            classifier: Classifier {
                rules: Vec::new(),
                keys: HashMap::new(),
                default_tier: Tier::L1,
                default_scene: Scene::CHAT,
            },
        }
    }

    /// Classifies request facts without a service: what the layer would decide.
    pub fn classify(&self, facts: &RequestFacts<'_>) -> crate::Admission {
        self.classifier.classify(facts)
    }
}

impl Default for TierLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TierLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::new(inner, self.classifier.clone())
    }
}

/// Builds a [`TierLayer`]. For each of tier, scene and tenant, the first rule (in the
/// order added) that decides it wins; what no rule decides takes the default.
#[derive(Debug, Clone)]
pub struct TierLayerBuilder {
    classifier: Classifier,
}

impl TierLayerBuilder {
    /// The tier of requests no rule classifies. Default: `L1`.
    pub fn default_tier(mut self, tier: Tier) -> Self {
        self.classifier.default_tier = tier;
        self
    }

    /// The scene of requests no rule classifies. Default: `chat`.
    pub fn default_scene(mut self, scene: Scene) -> Self {
        self.classifier.default_scene = scene;
        self
    }

    /// Rule: the `x-switchboard-tier` and `x-switchboard-scene` headers. A header may ask
    /// for a tier more valuable than the caller's key (or the default) would get only if
    /// that key's policy [allows it](KeyPolicy::allow_header_tier); otherwise the header's
    /// tier is ignored and later rules decide.
    pub fn headers(mut self) -> Self {
        self.classifier.rules.push(Rule::Headers);
        self
    }

    /// Rule: the caller's API key (`Authorization: Bearer` or `x-api-key`) → tenant, and
    /// the key's tier and scene if its policy sets them. Adds the rule on first use; more
    /// keys join the same rule.
    pub fn api_key(mut self, key: impl Into<String>, policy: KeyPolicy) -> Self {
        if !self
            .classifier
            .rules
            .iter()
            .any(|r| matches!(r, Rule::ApiKeys))
        {
            self.classifier.rules.push(Rule::ApiKeys);
        }
        self.classifier.keys.insert(key.into(), policy);
        self
    }

    /// Rule: the request path is exactly `path`.
    pub fn path(mut self, path: impl Into<String>, class: Classification) -> Self {
        self.classifier
            .rules
            .push(Rule::Path(Pattern::Exact(path.into()), class));
        self
    }

    /// Rule: the request path starts with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>, class: Classification) -> Self {
        self.classifier
            .rules
            .push(Rule::Path(Pattern::Prefix(prefix.into()), class));
        self
    }

    /// Rule: the gRPC method is `method` (`/package.Service/Method`, the HTTP/2 path
    /// tonic routes on).
    pub fn grpc_method(self, method: impl Into<String>, class: Classification) -> Self {
        self.path(method, class)
    }

    /// Rule: the requested model is exactly `model`.
    pub fn model(mut self, model: impl Into<String>, class: Classification) -> Self {
        self.classifier
            .rules
            .push(Rule::Model(Pattern::Exact(model.into()), class));
        self
    }

    /// Rule: the requested model starts with `prefix`.
    pub fn model_prefix(mut self, prefix: impl Into<String>, class: Classification) -> Self {
        self.classifier
            .rules
            .push(Rule::Model(Pattern::Prefix(prefix.into()), class));
        self
    }

    /// Rule: request metadata `key` equals `value`.
    pub fn metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        class: Classification,
    ) -> Self {
        self.classifier.rules.push(Rule::Metadata {
            key: key.into(),
            value: value.into(),
            class,
        });
        self
    }

    /// Rule: a closure over the request's facts.
    pub fn rule_fn<F>(mut self, rule: F) -> Self
    where
        F: Fn(&RequestFacts<'_>) -> Option<Classification> + Send + Sync + 'static,
    {
        self.classifier.rules.push(Rule::Custom(Arc::new(rule)));
        self
    }

    /// The layer.
    pub fn build(self) -> TierLayer {
        TierLayer {
            classifier: Arc::new(self.classifier),
        }
    }
}
