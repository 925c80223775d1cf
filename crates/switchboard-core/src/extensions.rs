//! [`Extensions`]: the type map through which layers talk to each other, with a typed slot
//! for each of Switchboard's own values.

use std::any::{Any, TypeId};
use std::fmt;

use crate::{
    AttemptKind, Attempts, BudgetStatus, CostEstimate, Deadline, Degraded, FirstTokenAt, JobTicket,
    RequestHead, Route, RouteDecision, Scene, Target, TenantId, Tier, TraceId,
};

/// A type map of a request's or a response's metadata, with the API of
/// [`http::Extensions`].
///
/// The values Switchboard's own layers exchange (a [`Tier`], a [`Route`], a
/// [`CostEstimate`], a [`Deadline`], the [`Attempts`] made, …) live in typed slots inside
/// one allocation, made at the first insert; any other type goes to an inner
/// [`http::Extensions`] (one box per value). Which store a type uses is decided at compile
/// time, so `get::<Tier>()` is a field read, not a hash lookup. A request carries a dozen of
/// these values through a dozen layers: keeping them out of a hash map of boxes is what
/// keeps the standard stack's per-request cost down.
///
/// ```
/// use switchboard_core::{Extensions, Tier};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Shard(u16);
///
/// let mut ext = Extensions::new();
/// assert!(ext.insert(Tier::L0).is_none());
/// ext.insert(Shard(7)); // any `Clone + Send + Sync` type
/// assert_eq!(ext.insert(Tier::L2), Some(Tier::L0));
/// assert_eq!(ext.get::<Tier>(), Some(&Tier::L2));
/// assert_eq!(ext.get::<Shard>(), Some(&Shard(7)));
/// assert_eq!(ext.len(), 2);
/// assert_eq!(ext.remove::<Shard>(), Some(Shard(7)));
/// assert_eq!(ext.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Extensions {
    slots: Option<Box<Slots>>,
    other: http::Extensions,
}

macro_rules! slots {
    ($($field:ident: $ty:ty,)*) => {
        #[derive(Clone, Default, Debug)]
        struct Slots {
            $($field: Option<$ty>,)*
        }

        impl Slots {
            /// Whether `T` has a slot (folds to a constant for each `T`).
            fn holds<T: 'static>() -> bool {
                $(TypeId::of::<T>() == TypeId::of::<$ty>())||*
            }

            fn slot<T: 'static>(&self) -> Option<&Option<T>> {
                $(
                    if let Some(slot) = (&self.$field as &dyn Any).downcast_ref::<Option<T>>() {
                        return Some(slot);
                    }
                )*
                None
            }

            fn slot_mut<T: 'static>(&mut self) -> Option<&mut Option<T>> {
                $(
                    if let Some(slot) =
                        (&mut self.$field as &mut dyn Any).downcast_mut::<Option<T>>()
                    {
                        return Some(slot);
                    }
                )*
                None
            }

            fn len(&self) -> usize {
                0 $(+ usize::from(self.$field.is_some()))*
            }

            fn merge(&mut self, other: Slots) {
                $(
                    if let Some(value) = other.$field {
                        self.$field = Some(value);
                    }
                )*
            }

            fn into_http(self, into: &mut http::Extensions) {
                $(
                    if let Some(value) = self.$field {
                        into.insert(value);
                    }
                )*
            }
        }
    };
}

slots! {
    tier: Tier,
    scene: Scene,
    tenant: TenantId,
    trace: TraceId,
    head: RequestHead,
    estimate: CostEstimate,
    budget: BudgetStatus,
    deadline: Deadline,
    route: Route,
    target: Target,
    attempt_kind: AttemptKind,
    decision: RouteDecision,
    attempts: Attempts,
    degraded: Degraded,
    job: JobTicket,
    first_token: FirstTokenAt,
}

impl Extensions {
    /// An empty map; it allocates nothing until the first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a value, returning the one of the same type it replaces.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        if Slots::holds::<T>() {
            let slots = self.slots.get_or_insert_with(Box::default);
            if let Some(slot) = slots.slot_mut::<T>() {
                return slot.replace(value);
            }
        }
        self.other.insert(value)
    }

    /// The value of type `T`, if there is one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        match self.slots.as_deref().and_then(Slots::slot::<T>) {
            Some(Some(value)) => Some(value),
            _ => self.other.get(),
        }
    }

    /// The value of type `T` for editing, if there is one.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        match self.slots.as_deref_mut().and_then(Slots::slot_mut::<T>) {
            Some(Some(value)) => Some(value),
            _ => self.other.get_mut(),
        }
    }

    /// The value of type `T`, inserting `make()` first if there is none.
    pub fn get_or_insert_with<T: Clone + Send + Sync + 'static>(
        &mut self,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        if Slots::holds::<T>() {
            let slots = self.slots.get_or_insert_with(Box::default);
            if let Some(slot) = slots.slot_mut::<T>() {
                return slot.get_or_insert_with(make);
            }
        }
        self.other.get_or_insert_with(make)
    }

    /// The value of type `T`, inserting `T::default()` first if there is none.
    pub fn get_or_insert_default<T: Default + Clone + Send + Sync + 'static>(&mut self) -> &mut T {
        self.get_or_insert_with(T::default)
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        if let Some(slot) = self.slots.as_deref_mut().and_then(Slots::slot_mut::<T>)
            && slot.is_some()
        {
            return slot.take();
        }
        self.other.remove()
    }

    /// Removes every value (keeping the slots' allocation).
    pub fn clear(&mut self) {
        if let Some(slots) = &mut self.slots {
            **slots = Slots::default();
        }
        self.other.clear();
    }

    /// How many values the map holds.
    pub fn len(&self) -> usize {
        self.slots.as_deref().map_or(0, Slots::len) + self.other.len()
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every value of `other` in, replacing values of the same type.
    pub fn extend(&mut self, other: Extensions) {
        if let Some(theirs) = other.slots {
            match &mut self.slots {
                Some(ours) => ours.merge(*theirs),
                None => self.slots = Some(theirs),
            }
        }
        self.other.extend(other.other);
    }

    /// The values as an [`http::Extensions`] (to hand them to an `http` request or
    /// response).
    pub fn into_http(self) -> http::Extensions {
        let mut out = self.other;
        if let Some(slots) = self.slots {
            slots.into_http(&mut out);
        }
        out
    }
}

/// Takes over an [`http::Extensions`]' values. They stay in the inner map and `get` finds
/// them; an insert of one of Switchboard's own types then shadows the taken-over value of
/// that type.
impl From<http::Extensions> for Extensions {
    fn from(other: http::Extensions) -> Self {
        Self { slots: None, other }
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("slots", &self.slots)
            .field("other", &self.other)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProviderId;

    #[derive(Clone, Debug, PartialEq, Default)]
    struct Custom(u32);

    #[test]
    fn own_types_use_slots_and_others_the_inner_map() {
        let mut ext = Extensions::new();
        assert!(ext.is_empty());
        assert!(ext.slots.is_none(), "nothing allocated before an insert");
        ext.insert(Custom(1));
        assert!(ext.slots.is_none(), "a foreign type goes to the inner map");
        ext.insert(Target::new(ProviderId::OPENAI, "gpt-4o-mini"));
        let slots = ext
            .slots
            .as_deref()
            .expect("an own type allocates the slots");
        assert_eq!(
            slots.target.as_ref().map(|t| &*t.model),
            Some("gpt-4o-mini")
        );
        assert_eq!(ext.other.len(), 1);
        assert_eq!(ext.len(), 2);
    }

    #[test]
    fn get_mut_remove_and_default_work_for_both_stores() {
        let mut ext = Extensions::new();
        ext.get_or_insert_default::<Degraded>()
            .push("hedge", "late");
        ext.get_or_insert_default::<Custom>().0 += 3;
        ext.get_mut::<Custom>().unwrap().0 += 1;
        assert_eq!(ext.get::<Custom>(), Some(&Custom(4)));
        assert_eq!(ext.get::<Degraded>().map(|d| d.iter().count()), Some(1));
        ext.get_mut::<Degraded>().unwrap().push("budget", "cap");
        assert_eq!(ext.remove::<Degraded>().map(|d| d.iter().count()), Some(2));
        assert_eq!(ext.remove::<Degraded>(), None);
        assert_eq!(ext.remove::<Custom>(), Some(Custom(4)));
        assert!(ext.is_empty());
    }

    #[test]
    fn clones_are_independent() {
        let mut ext = Extensions::new();
        ext.insert(Tier::L0);
        let mut copy = ext.clone();
        copy.insert(Tier::L2);
        assert_eq!(ext.get::<Tier>(), Some(&Tier::L0));
        assert_eq!(copy.get::<Tier>(), Some(&Tier::L2));
    }

    #[test]
    fn extend_replaces_same_types_and_keeps_the_rest() {
        let mut ours = Extensions::new();
        ours.insert(Tier::L0);
        ours.insert(Scene::CHAT);
        let mut theirs = Extensions::new();
        theirs.insert(Tier::L2);
        theirs.insert(Custom(9));
        ours.extend(theirs);
        assert_eq!(ours.get::<Tier>(), Some(&Tier::L2));
        assert_eq!(ours.get::<Scene>(), Some(&Scene::CHAT));
        assert_eq!(ours.get::<Custom>(), Some(&Custom(9)));
        ours.clear();
        assert!(ours.is_empty());
        assert_eq!(ours.get::<Tier>(), None);
    }

    #[test]
    fn converts_to_and_from_http_extensions() {
        let mut ext = Extensions::new();
        ext.insert(Tier::L1);
        ext.insert(Custom(2));
        let http = ext.into_http();
        assert_eq!(http.get::<Tier>(), Some(&Tier::L1));
        assert_eq!(http.get::<Custom>(), Some(&Custom(2)));
        let back = Extensions::from(http);
        assert_eq!(back.get::<Custom>(), Some(&Custom(2)));
        assert_eq!(back.len(), 2);
    }
}
