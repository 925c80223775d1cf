//! Cheap-to-clone validated names: [`ProviderId`], [`Scene`], [`TenantId`].

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `&'static str` or a shared `Arc<str>`: clones never allocate.
#[derive(Clone)]
pub(crate) enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Repr {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// A name read from configuration (a deserialized name): interned, so that its clones
    /// copy a pointer instead of counting references.
    ///
    /// A request's provider, model and scene names are copied a dozen times on its way
    /// through the stack. Reference counts on `Arc<str>` names are atomic operations on
    /// cache lines every worker thread shares; a `&'static str` costs nothing to copy.
    /// Configuration names are few and live as long as the process, so each distinct one
    /// is leaked once. Past [`MAX_INTERNED`] distinct names (more than any configuration
    /// has), names are shared instead: the set cannot grow without bound.
    pub(crate) fn interned(name: &str) -> Repr {
        static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
        let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        Self::intern_in(&mut names, MAX_INTERNED, name)
    }

    /// `name` from `names`, added (leaked) while the set holds fewer than `max`.
    fn intern_in(names: &mut HashSet<&'static str>, max: usize, name: &str) -> Repr {
        if let Some(&known) = names.get(name) {
            return Repr::Static(known);
        }
        if names.len() >= max {
            return Repr::Shared(Arc::from(name));
        }
        let leaked: &'static str = Box::leak(Box::from(name));
        names.insert(leaked);
        Repr::Static(leaked)
    }
}

/// The most distinct deserialized names kept for the life of the process.
pub(crate) const MAX_INTERNED: usize = 16_384;

/// The rule a name must follow.
#[derive(Clone, Copy)]
enum Rule {
    /// `[a-z][a-z0-9_]*`: the name ends up inside snake_case reason codes and metric labels.
    Snake,
    /// Printable ASCII without spaces, quotes or backslashes: tenants come from operators' maps.
    Token,
}

const MAX_LEN: usize = 64;

const fn check(s: &str, rule: Rule) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err("must not be empty");
    }
    if b.len() > MAX_LEN {
        return Err("must be at most 64 bytes long");
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = match rule {
            Rule::Snake => c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == b'_')),
            Rule::Token => c.is_ascii_graphic() && c != b'"' && c != b'\\',
        };
        if !ok {
            return Err(match rule {
                Rule::Snake => {
                    "must be lowercase snake_case: a letter, then letters, digits or `_`"
                }
                Rule::Token => "must be printable ASCII without spaces, quotes or backslashes",
            });
        }
        i += 1;
    }
    Ok(())
}

/// A name that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    kind: &'static str,
    name: String,
    problem: &'static str,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.kind, self.name, self.problem)
    }
}

impl std::error::Error for InvalidName {}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $rule:expr) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(Repr);

        impl $name {
            /// Builds the name from a static string at no cost.
            ///
            /// # Panics
            ///
            /// Panics (at compile time in a `const`) when the name is invalid.
            pub const fn from_static(name: &'static str) -> Self {
                match check(name, $rule) {
                    Ok(()) => Self(Repr::Static(name)),
                    Err(problem) => panic!("{}", problem),
                }
            }

            /// Validates and builds the name.
            pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidName> {
                let name = name.as_ref();
                match check(name, $rule) {
                    Ok(()) => Ok(Self(Repr::Shared(Arc::from(name)))),
                    Err(problem) => Err(InvalidName { kind: $kind, name: name.to_owned(), problem }),
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                // Interned names compare by address first.
                let (a, b) = (self.as_str(), other.as_str());
                std::ptr::eq(a, b) || a == b
            }
        }

        impl Eq for $name {}

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // Deserialized names come from configuration: interned (see `Repr::interned`).
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                check(&s, $rule).map_err(|problem| {
                    serde::de::Error::custom(InvalidName { kind: $kind, name: s.to_string(), problem })
                })?;
                Ok(Self(Repr::interned(&s)))
            }
        }
    };
}

name_type!(
    /// The name of a configured provider: `openai`, `anthropic`, or any name an operator
    /// gives (`azure_eu`, `vllm_local`). Lowercase snake_case, at most 64 bytes, because it
    /// becomes part of reason codes (`openai_first_token_timeout`) and metric labels.
    ///
    /// Cloning never allocates.
    ///
    /// ```
    /// use switchboard_core::ProviderId;
    /// let id: ProviderId = "azure_eu".parse().unwrap();
    /// assert_eq!(id, "azure_eu");
    /// assert!("Azure EU".parse::<ProviderId>().is_err());
    /// assert_eq!(ProviderId::OPENAI.as_str(), "openai");
    /// ```
    ProviderId,
    "provider id",
    Rule::Snake
);

impl ProviderId {
    /// `openai`.
    pub const OPENAI: ProviderId = ProviderId::from_static("openai");
    /// `anthropic`.
    pub const ANTHROPIC: ProviderId = ProviderId::from_static("anthropic");
}

name_type!(
    /// A scene tag: what the request is for (`chat`, `code`, `summary`, or any tag an
    /// operator defines). Lowercase snake_case, at most 64 bytes.
    Scene,
    "scene",
    Rule::Snake
);

impl Scene {
    /// `chat`: conversational traffic.
    pub const CHAT: Scene = Scene::from_static("chat");
    /// `code`: code generation and review.
    pub const CODE: Scene = Scene::from_static("code");
    /// `summary`: summarisation of supplied text.
    pub const SUMMARY: Scene = Scene::from_static("summary");
}

name_type!(
    /// The tenant a request is billed to (a team, a customer, an API key's owner).
    /// Printable ASCII without spaces, quotes or backslashes, at most 64 bytes.
    TenantId,
    "tenant id",
    Rule::Token
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interned_set_stops_growing_at_its_bound() {
        let mut names = HashSet::new();
        assert!(matches!(
            Repr::intern_in(&mut names, 2, "a"),
            Repr::Static("a")
        ));
        assert!(matches!(
            Repr::intern_in(&mut names, 2, "b"),
            Repr::Static("b")
        ));
        // Full: a new name is shared, not added; known names stay interned.
        assert!(matches!(Repr::intern_in(&mut names, 2, "c"), Repr::Shared(ref s) if &**s == "c"));
        assert!(matches!(
            Repr::intern_in(&mut names, 2, "a"),
            Repr::Static("a")
        ));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn deserialized_names_are_validated_and_interned() {
        let a: ProviderId = serde_json::from_str(r#""interned_provider""#).unwrap();
        let b: ProviderId = serde_json::from_str(r#""interned_provider""#).unwrap();
        assert!(matches!(a.0, Repr::Static(_)));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let err = serde_json::from_str::<ProviderId>(r#""Not Snake""#).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid provider id \"Not Snake\""),
            "{err}"
        );
        assert!(matches!(
            ProviderId::new("from_request").unwrap().0,
            Repr::Shared(_)
        ));
    }

    #[test]
    fn provider_ids_are_snake_case() {
        assert!(ProviderId::new("openai").is_ok());
        assert!(ProviderId::new("azure_eu2").is_ok());
        for bad in [
            "",
            "OpenAI",
            "2openai",
            "open-ai",
            "open ai",
            &"a".repeat(65),
        ] {
            let err = ProviderId::new(bad).expect_err(bad);
            assert!(err.to_string().starts_with("invalid provider id"), "{err}");
        }
    }

    #[test]
    fn tenants_allow_tokens_but_not_spaces() {
        assert!(TenantId::new("team-42:prod@eu").is_ok());
        assert!(TenantId::new("team 42").is_err());
        assert!(TenantId::new("a\"b").is_err());
    }

    #[test]
    fn static_and_shared_names_compare_equal_and_hash_alike() {
        use std::collections::HashSet;
        let shared = ProviderId::new("openai").unwrap();
        assert_eq!(shared, ProviderId::OPENAI);
        let set: HashSet<ProviderId> = [ProviderId::OPENAI].into_iter().collect();
        assert!(set.contains(&shared));
        assert!(set.contains("openai"));
    }

    #[test]
    fn serde_round_trip_and_rejects_invalid() {
        let json = serde_json::to_string(&Scene::CODE).unwrap();
        assert_eq!(json, "\"code\"");
        let back: Scene = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Scene::CODE);
        let err = serde_json::from_str::<Scene>("\"Code Review\"").unwrap_err();
        assert!(err.to_string().contains("invalid scene"), "{err}");
    }
}
