//! The rules admission applies, and the facts they look at.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};
use switchboard_core::{Scene, TenantId, Tier};

/// The header a caller names its tier in (`L0`, `L1`, `L2`).
pub const TIER_HEADER: &str = "x-switchboard-tier";
/// The header a caller names its scene in (`chat`, `code`, any snake_case tag).
pub const SCENE_HEADER: &str = "x-switchboard-scene";

/// What one rule says about a request: any of tier, scene and tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classification {
    /// The tier, if this rule decides it.
    pub tier: Option<Tier>,
    /// The scene, if this rule decides it.
    pub scene: Option<Scene>,
    /// The tenant, if this rule decides it.
    pub tenant: Option<TenantId>,
}

impl Classification {
    /// Says nothing.
    pub const fn none() -> Self {
        Self {
            tier: None,
            scene: None,
            tenant: None,
        }
    }

    /// Decides the tier.
    pub const fn tier(tier: Tier) -> Self {
        Self {
            tier: Some(tier),
            scene: None,
            tenant: None,
        }
    }

    /// Decides the scene.
    pub const fn scene(scene: Scene) -> Self {
        Self {
            tier: None,
            scene: Some(scene),
            tenant: None,
        }
    }

    /// Also decides the scene.
    pub fn with_scene(mut self, scene: Scene) -> Self {
        self.scene = Some(scene);
        self
    }

    /// Also decides the tenant.
    pub fn with_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }
}

/// What the rules can see of a request. Built from a `ChatRequest` (model, the body's
/// `extra.metadata`, and the [`RequestHead`](switchboard_core::RequestHead) an edge left)
/// or from an `http::Request` (path and headers only: the body is not read).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// URI path or gRPC method (`/pkg.Service/Method`).
    pub path: Option<&'a str>,
    /// Request headers.
    pub headers: Option<&'a HeaderMap>,
    /// The model asked for.
    pub model: Option<&'a str>,
    /// Request metadata: the body's `metadata` object (OpenAI `metadata`, Anthropic
    /// `metadata.user_id`).
    pub metadata: Option<&'a Map<String, Value>>,
}

impl<'a> RequestFacts<'a> {
    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers?.get(name)?.to_str().ok()
    }

    /// The caller's API key: `Authorization: Bearer <key>` (OpenAI style) or `x-api-key`
    /// (Anthropic style).
    pub fn api_key(&self) -> Option<&'a str> {
        if let Some(auth) = self.header("authorization") {
            let (scheme, key) = auth.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
        }
        self.header("x-api-key").map(str::trim)
    }

    /// A metadata value as text (strings as they are, other JSON values printed).
    pub fn metadata_value(&self, key: &str) -> Option<String> {
        match self.metadata?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// What an API key maps to, and how far its holder may promote itself by header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    pub(crate) tenant: TenantId,
    pub(crate) tier: Option<Tier>,
    pub(crate) scene: Option<Scene>,
    pub(crate) header_tier_ceiling: Option<Tier>,
}

impl KeyPolicy {
    /// A key belonging to `tenant`, with no tier of its own and no right to promote.
    pub const fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            tier: None,
            scene: None,
            header_tier_ceiling: None,
        }
    }

    /// The tier this key's requests get.
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// The scene this key's requests get.
    pub fn scene(mut self, scene: Scene) -> Self {
        self.scene = Some(scene);
        self
    }

    /// Lets `x-switchboard-tier` ask for tiers up to `ceiling` (`Tier::L0` allows any).
    /// Without it a header may only ask for the tier the key would get anyway or a less
    /// valuable one.
    pub fn allow_header_tier(mut self, ceiling: Tier) -> Self {
        self.header_tier_ceiling = Some(ceiling);
        self
    }
}

/// A caller-supplied rule.
pub(crate) type RuleFn = Arc<dyn Fn(&RequestFacts<'_>) -> Option<Classification> + Send + Sync>;

/// How a pattern matches a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(p) => s == p,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
        }
    }
}

/// One admission rule.
#[derive(Clone)]
pub(crate) enum Rule {
    Headers,
    ApiKeys,
    Path(Pattern, Classification),
    Model(Pattern, Classification),
    Metadata {
        key: String,
        value: String,
        class: Classification,
    },
    Custom(RuleFn),
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Headers => f.write_str("Headers"),
            Rule::ApiKeys => f.write_str("ApiKeys"),
            Rule::Path(p, c) => f.debug_tuple("Path").field(p).field(c).finish(),
            Rule::Model(p, c) => f.debug_tuple("Model").field(p).field(c).finish(),
            Rule::Metadata { key, value, class } => f
                .debug_struct("Metadata")
                .field("key", key)
                .field("value", value)
                .field("class", class)
                .finish(),
            Rule::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The tier, scene and tenant a request was admitted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The tier.
    pub tier: Tier,
    /// The scene.
    pub scene: Scene,
    /// The tenant, when a rule named one.
    pub tenant: Option<TenantId>,
}

/// The ordered rules and the defaults: the whole of admission's configuration.
#[derive(Clone)]
pub(crate) struct Classifier {
    pub(crate) rules: Vec<Rule>,
    pub(crate) keys: HashMap<String, KeyPolicy>,
    pub(crate) default_tier: Tier,
    pub(crate) default_scene: Scene,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // API keys are secrets: show how many, never which.
        f.debug_struct("Classifier")
            .field("rules", &self.rules)
            .field("api_keys", &self.keys.len())
            .field("default_tier", &self.default_tier)
            .field("default_scene", &self.default_scene)
            .finish()
    }
}

impl Classifier {
    /// Applies the rules in order. For each of tier, scene and tenant the first rule that
    /// decides it wins; what no rule decides takes the default.
    pub(crate) fn classify(&self, facts: &RequestFacts<'_>) -> Admission {
        let key = facts.api_key().and_then(|k| self.keys.get(k));
        let mut tier = None;
        let mut scene = None;
        let mut tenant = None;
        for rule in &self.rules {
            let class = match rule {
                Rule::Headers => self.by_headers(facts, key),
                Rule::ApiKeys => key.map(|k| Classification {
                    tier: k.tier,
                    scene: k.scene.clone(),
                    tenant: Some(k.tenant.clone()),
                }),
                Rule::Path(p, c) => facts.path.filter(|s| p.matches(s)).map(|_| c.clone()),
                Rule::Model(p, c) => facts.model.filter(|s| p.matches(s)).map(|_| c.clone()),
                Rule::Metadata { key, value, class } => (facts.metadata_value(key).as_deref()
                    == Some(value.as_str()))
                .then(|| class.clone()),
                Rule::Custom(f) => f(facts),
            };
            if let Some(class) = class {
                tier = tier.or(class.tier);
                scene = scene.or(class.scene);
                tenant = tenant.or(class.tenant);
            }
            if tier.is_some() && scene.is_some() && tenant.is_some() {
                break;
            }
        }
        Admission {
            tier: tier.unwrap_or(self.default_tier),
            scene: scene.unwrap_or_else(|| self.default_scene.clone()),
            tenant,
        }
    }

    fn by_headers(
        &self,
        facts: &RequestFacts<'_>,
        key: Option<&KeyPolicy>,
    ) -> Option<Classification> {
        let scene = facts
            .header(SCENE_HEADER)
            .and_then(|s| Scene::new(s.trim()).ok());
        let asked = facts
            .header(TIER_HEADER)
            .and_then(|s| s.parse::<Tier>().ok());
        // Without a grant a header may only ask for what the caller would get anyway,
        // or less: the key's own tier, else the default.
        let ceiling = key
            .and_then(|k| k.header_tier_ceiling.or(k.tier))
            .unwrap_or(self.default_tier);
        let tier = match asked {
            Some(t) if t >= ceiling => Some(t),
            Some(t) => {
                tracing::debug!(asked = %t, %ceiling, "ignored x-switchboard-tier: self-promotion not allowed for this key");
                None
            }
            None => None,
        };
        (tier.is_some() || scene.is_some()).then_some(Classification {
            tier,
            scene,
            tenant: None,
        })
    }
}
