//! [`SharedService`]: one service shared by its clones, called in place when it is free.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tower::Service;
use tower::util::Oneshot;

/// A service shared by all its clones: cloning it is one reference count, not a clone of
/// the stack it wraps.
///
/// Tower services are called through `&mut self`, so a service shared by concurrent
/// requests is usually cloned for each of them (axum, tonic and `Oneshot` all do), and
/// cloning a stack of layers costs one reference count per layer, taken and given back
/// on every request. `SharedService` keeps one instance of the wrapped service *in place*
/// and calls it directly when no other call is using it and it is ready at once; only
/// then does it fall back to a clone, whose readiness is driven inside the returned future.
/// No call ever waits for another to leave the instance in place.
///
/// `SharedService` is always ready: readiness is each call's own, in its future, as with
/// [`Oneshot`]. That suits stacks whose layers are ready at once (every Switchboard layer
/// is) and keeps a stack that is not ready from holding up callers that share it.
///
/// ```
/// use switchboard_core::SharedService;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let double = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) });
/// let shared = SharedService::new(double);
/// // Each request's clone is one reference count; the call runs on the instance in place.
/// assert_eq!(shared.clone().oneshot(21).await.unwrap(), 42);
/// # }
/// ```
pub struct SharedService<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    /// Cloned for a call when the instance in place is busy or not ready.
    template: S,
    in_place: Mutex<S>,
}

impl<S: Clone> SharedService<S> {
    /// Shares `service`.
    pub fn new(service: S) -> Self {
        Self {
            inner: Arc::new(Inner {
                in_place: Mutex::new(service.clone()),
                template: service,
            }),
        }
    }
}

impl<S> SharedService<S> {
    /// The wrapped service (the one cloned for calls that cannot be made in place).
    pub fn get_ref(&self) -> &S {
        &self.inner.template
    }

    /// Calls the instance in place when it is free and ready now, else a clone of the
    /// service, made ready inside the future. Takes `&self`: shared owners (a map of
    /// providers behind an `Arc`) call it without cloning the handle either.
    pub fn call_shared<R>(&self, request: R) -> SharedFuture<S, R>
    where
        S: Service<R> + Clone,
    {
        if let Ok(mut service) = self.inner.in_place.try_lock() {
            // Polled without a waker of ours: if it is not ready, nothing waits on it here,
            // and the clone below is driven with the caller's waker instead.
            match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => {
                    return SharedFuture {
                        kind: Kind::InPlace {
                            future: service.call(request),
                        },
                    };
                }
                Poll::Ready(Err(error)) => {
                    return SharedFuture {
                        kind: Kind::Failed { error: Some(error) },
                    };
                }
                Poll::Pending => {}
            }
        }
        SharedFuture {
            kind: Kind::Cloned {
                oneshot: Oneshot::new(self.inner.template.clone(), request),
            },
        }
    }
}

impl<S> Clone for SharedService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SharedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedService")
            .field(&self.inner.template)
            .finish()
    }
}

impl<S, R> Service<R> for SharedService<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SharedFuture<S, R>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness is each call's own, driven in its future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.call_shared(request)
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SharedService`]: the call in place, or a clone made ready and
    /// called.
    pub struct SharedFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        kind: Kind<S, R>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<S, R>
    where
        S: Service<R>,
    {
        InPlace { #[pin] future: S::Future },
        Cloned { #[pin] oneshot: Oneshot<S, R> },
        Failed { error: Option<S::Error> },
    }
}

impl<S: Service<R>, R> fmt::Debug for SharedFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFuture").finish_non_exhaustive()
    }
}

impl<S, R> Future for SharedFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::InPlace { future } => future.poll(cx),
            KindProj::Cloned { oneshot } => oneshot.poll(cx),
            KindProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled again after it failed: a future that completed stays pending.
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tower::ServiceExt;

    use super::*;

    type Answer = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

    /// Counts its clones and calls; ready only while `ready` is set; with `nested` set,
    /// its `call` calls the shared service it is given (so the instance in place is busy).
    #[derive(Default)]
    struct Probe {
        clones: AtomicUsize,
        calls: AtomicUsize,
        not_ready: AtomicBool,
        fail_ready: AtomicBool,
        wakers: Mutex<Vec<Waker>>,
        nested: Mutex<Option<SharedService<Counted>>>,
    }

    struct Counted(Arc<Probe>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.clones.fetch_add(1, Ordering::SeqCst);
            Counted(self.0.clone())
        }
    }

    impl Service<u32> for Counted {
        type Response = u32;
        type Error = String;
        type Future = Answer;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            if self.0.fail_ready.load(Ordering::SeqCst) {
                return Poll::Ready(Err("not today".into()));
            }
            if self.0.not_ready.load(Ordering::SeqCst) {
                self.0.wakers.lock().unwrap().push(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Answer {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let nested = self.0.nested.lock().unwrap().take();
            match nested {
                // Called while this instance is in use: the shared service must clone.
                Some(shared) => Box::pin(shared.call_shared(n + 1)),
                None => Box::pin(async move { Ok(n * 2) }),
            }
        }
    }

    fn probe() -> (Arc<Probe>, SharedService<Counted>, usize) {
        let probe = Arc::new(Probe::default());
        let shared = SharedService::new(Counted(probe.clone()));
        let built = probe.clones.load(Ordering::SeqCst);
        (probe, shared, built)
    }

    #[tokio::test]
    async fn a_free_ready_instance_is_called_in_place_without_a_clone() {
        let (probe, shared, built) = probe();
        for n in 0..4 {
            assert_eq!(shared.clone().oneshot(n).await, Ok(n * 2));
        }
        assert_eq!(probe.calls.load(Ordering::SeqCst), 4);
        assert_eq!(probe.clones.load(Ordering::SeqCst), built);
    }

    #[tokio::test]
    async fn a_busy_instance_sends_the_call_to_a_clone() {
        let (probe, shared, built) = probe();
        *probe.nested.lock().unwrap() = Some(shared.clone());
        // The outer call holds the instance in place while it calls the shared service.
        assert_eq!(shared.call_shared(1).await, Ok(4));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
        assert_eq!(probe.clones.load(Ordering::SeqCst), built + 1);
    }

    #[tokio::test]
    async fn a_call_waits_for_readiness_on_a_clone_and_is_woken() {
        let (probe, shared, built) = probe();
        probe.not_ready.store(true, Ordering::SeqCst);
        let mut call = std::pin::pin!(shared.call_shared(5));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(probe.clones.load(Ordering::SeqCst), built + 1);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        probe.not_ready.store(false, Ordering::SeqCst);
        let wakers: Vec<Waker> = probe.wakers.lock().unwrap().drain(..).collect();
        assert!(
            !wakers.is_empty(),
            "the clone registered the caller's waker"
        );
        assert_eq!(call.await, Ok(10));
    }

    #[tokio::test]
    async fn a_readiness_error_is_the_call_s_error() {
        let (probe, shared, _) = probe();
        probe.fail_ready.store(true, Ordering::SeqCst);
        assert_eq!(shared.call_shared(1).await, Err("not today".to_owned()));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    }
}
