//! [`ModelName`]: a model's name, shared so that clones never allocate.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::Repr;

/// The name of a model: a logical one (`fast`) or a provider's concrete one
/// (`gpt-4o-mini`). Any string is a model name.
///
/// A request's names are copied into several values as it goes down the stack (its
/// [`Target`](crate::Target), its [`RouteDecision`](crate::RouteDecision), its
/// [`CostEstimate`](crate::CostEstimate), the answer): a `ModelName` is a `&'static str`
/// or an `Arc<str>`, so none of those copies allocates. Names deserialized (from
/// configuration) are interned for the life of the process and copy as a pointer; names
/// built with `From` (from a request) are shared and count references. It dereferences
/// to `str` and compares equal to strings.
///
/// ```
/// use switchboard_core::ModelName;
///
/// let name = ModelName::from("gpt-4o-mini");
/// let copy = name.clone(); // shares the string
/// assert_eq!(copy, "gpt-4o-mini");
/// assert!(name.starts_with("gpt-"));
/// assert_eq!(ModelName::from_static("fast").as_str(), "fast");
/// ```
#[derive(Clone)]
pub struct ModelName(Repr);

impl ModelName {
    /// A name from a static string, at no cost.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Repr::Static(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for ModelName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ModelName {
    fn from(name: &str) -> Self {
        Self(Repr::Shared(Arc::from(name)))
    }
}

impl From<&String> for ModelName {
    fn from(name: &String) -> Self {
        Self::from(name.as_str())
    }
}

impl From<String> for ModelName {
    fn from(name: String) -> Self {
        Self(Repr::Shared(Arc::from(name)))
    }
}

impl From<Arc<str>> for ModelName {
    fn from(name: Arc<str>) -> Self {
        Self(Repr::Shared(name))
    }
}

impl From<&ModelName> for ModelName {
    fn from(name: &ModelName) -> Self {
        name.clone()
    }
}

impl From<ModelName> for String {
    fn from(name: ModelName) -> Self {
        name.as_str().to_owned()
    }
}

impl fmt::Debug for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for ModelName {
    fn eq(&self, other: &Self) -> bool {
        // Interned and shared names compare by address first.
        let (a, b) = (self.as_str(), other.as_str());
        std::ptr::eq(a, b) || a == b
    }
}

impl Eq for ModelName {}

macro_rules! eq_str {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for ModelName {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == &other[..]
            }
        }

        impl PartialEq<ModelName> for $other {
            fn eq(&self, other: &ModelName) -> bool {
                &self[..] == other.as_str()
            }
        }
    )*};
}

eq_str!(str, &str, String);

impl Hash for ModelName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for ModelName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ModelName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Borrow<str> for ModelName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ModelName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for ModelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Deserialized names come from configuration: interned, so clones copy a pointer.
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self(Repr::interned(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_string() {
        let name = ModelName::from(String::from("claude-haiku-4-5"));
        let copy = name.clone();
        assert!(std::ptr::eq(name.as_str(), copy.as_str()));
        assert_eq!(copy, ModelName::from_static("claude-haiku-4-5"));
    }

    #[test]
    fn deserialized_names_are_interned() {
        let a: ModelName = serde_json::from_str(r#""interned-model-x""#).unwrap();
        let b: ModelName = serde_json::from_str(r#""interned-model-x""#).unwrap();
        assert!(matches!(a.0, Repr::Static(_)));
        assert!(
            std::ptr::eq(a.as_str(), b.as_str()),
            "one copy per distinct name"
        );
        assert!(matches!(
            ModelName::from("from-a-request").0,
            Repr::Shared(_)
        ));
    }

    #[test]
    fn compares_with_strings_both_ways_and_round_trips_json() {
        let name = ModelName::from("gpt-4o-mini");
        let (text, owned) = ("gpt-4o-mini", String::from("gpt-4o-mini"));
        assert_eq!(name, text);
        assert_eq!(text, name);
        assert_eq!(name, owned);
        assert_eq!(owned, name);
        assert_ne!(name, "gpt-4o");
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, r#""gpt-4o-mini""#);
        assert_eq!(serde_json::from_str::<ModelName>(&json).unwrap(), name);
        assert_eq!(format!("{name} {name:?}"), r#"gpt-4o-mini "gpt-4o-mini""#);
    }
}
