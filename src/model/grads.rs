//! Readying gradients for the next step: dropped, as PyTorch's `zero_grad()` does by default
//! (`set_to_none=True`, through the C++ shim `grads.cpp`), or zeroed in place. Dropped, their
//! memory is free during the next forward pass, where activations peak, and autograd's first
//! accumulation takes over the incoming buffer instead of adding it to zeros; which of the two a
//! step uses is `train::step`'s choice (it depends on how many backward passes a step makes).
//!
//! Also [`with_ready_hooks`]: a callback the moment one parameter's gradient is complete inside a
//! backward pass (autograd's post-accumulate-grad hook, through the same shim), which lets the
//! optimizer step each parameter and drop its gradient before the pass reaches the next layer.

#[cfg(dino_autocast)]
use std::ffi::c_void;
#[cfg(dino_autocast)]
use std::os::raw::c_char;
use tch::Tensor;

#[cfg(dino_autocast)]
extern "C" {
    fn dino_grad_reset(t: *mut c_void);
    fn dino_grad_on_ready(
        t: *mut c_void,
        ready: Option<unsafe extern "C" fn(*mut c_void, usize)>,
        ctx: *mut c_void,
        index: usize,
        err: *mut c_char,
        len: usize,
    ) -> i32;
}

/// Makes each tensor's gradient undefined (`p.grad().defined()` is false until the next backward).
/// A build without the shims zeroes them in place instead: the same next step, the old memory use.
pub fn clear<'a>(params: impl IntoIterator<Item = &'a Tensor>) {
    for p in params {
        #[cfg(dino_autocast)]
        {
            let mut p = p.shallow_clone();
            // SAFETY: `as_mut_ptr` is the live `at::Tensor*` of a tensor this function holds; the
            // shim resets that tensor's gradient field and keeps no pointer.
            unsafe { dino_grad_reset(p.as_mut_ptr().cast()) }
        }
        #[cfg(not(dino_autocast))]
        zero([p]);
    }
}

/// Zeroes each tensor's gradient in place, where it has one (its memory stays allocated).
pub fn zero<'a>(params: impl IntoIterator<Item = &'a Tensor>) {
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// What a hook calls: the caller's callback, and the first panic raised inside it (it cannot
/// unwind through libtorch's C++ frames, so it is caught there and re-raised afterwards).
#[cfg(dino_autocast)]
struct Ready<'a> {
    callback: &'a mut dyn FnMut(usize),
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// The hook's entry point: `ctx` is the `Ready` of the [`with_ready_hooks`] call on the stack.
#[cfg(dino_autocast)]
unsafe extern "C" fn on_ready(ctx: *mut c_void, index: usize) {
    // SAFETY: the hooks that pass `ctx` live only while `with_ready_hooks` runs `body`, whose
    // frame owns the `Ready`. Autograd runs a CPU graph's nodes, and so its hooks, one at a
    // time on the thread that called backward, inside that call: nothing else touches it.
    let ready = unsafe { &mut *ctx.cast::<Ready>() };
    if ready.panic.is_some() {
        return;
    }
    let callback = &mut *ready.callback;
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(index))) {
        ready.panic = Some(p);
    }
}

/// Removes the hooks it holds when dropped, `body` returning or panicking alike.
#[cfg(dino_autocast)]
struct Hooked<'a>(Vec<&'a Tensor>);

#[cfg(dino_autocast)]
impl Drop for Hooked<'_> {
    fn drop(&mut self) {
        let mut err: Vec<c_char> = vec![0; super::autocast::ERR_LEN];
        for t in &self.0 {
            let mut t = t.shallow_clone();
            // SAFETY: a live tensor handle; a null hook removes the tensor's hook and cannot fail
            // in a way that leaves a pointer to the `Ready` behind.
            unsafe { dino_grad_on_ready(t.as_mut_ptr().cast(), None, std::ptr::null_mut(), 0, err.as_mut_ptr(), err.len()) };
        }
    }
}

/// Runs `body` with `ready(i)` called the moment `params[i]`'s gradient is complete in a backward
/// pass that `body` runs: after autograd has summed every contribution into `.grad` (a weight
/// used by several forward passes included) and before the pass goes on. By then no later node
/// of the pass reads the parameter, so `ready` may update it in place and drop its gradient.
/// `params` must be leaf CPU tensors that require gradients (on CUDA autograd would call `ready`
/// from its device thread). A panic in `ready` is re-raised once `body` has returned (later
/// calls are skipped). `Err` (the shim's message, or that this build has no shim) means `body`
/// did not run: the caller takes a path without hooks.
pub fn with_ready_hooks<R>(params: &[&Tensor], ready: &mut dyn FnMut(usize), body: impl FnOnce() -> R) -> Result<R, String> {
    #[cfg(dino_autocast)]
    {
        let mut state = Ready { callback: ready, panic: None };
        let ctx: *mut Ready = &mut state;
        let mut hooked = Hooked(Vec::with_capacity(params.len()));
        let mut err: Vec<c_char> = vec![0; super::autocast::ERR_LEN];
        for (i, p) in params.iter().enumerate() {
            let mut t = p.shallow_clone();
            // SAFETY: a live tensor handle, a function of the right signature, and `ctx`, which
            // outlives the hook: `hooked` removes it before `state` goes out of scope.
            let rc = unsafe { dino_grad_on_ready(t.as_mut_ptr().cast(), Some(on_ready), ctx.cast(), i, err.as_mut_ptr(), err.len()) };
            if rc != 0 {
                return Err(format!("post-accumulate-grad hook: {}", super::autocast::message(&err)));
            }
            hooked.0.push(p);
        }
        let out = body();
        drop(hooked);
        if let Some(p) = state.panic.take() {
            std::panic::resume_unwind(p);
        }
        Ok(out)
    }
    #[cfg(not(dino_autocast))]
    {
        let _ = (params, ready, body);
        Err("this build has no libtorch shim".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn a_cleared_gradient_is_undefined_and_the_next_backward_recreates_it() {
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&p * 2.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![2.0; 3]);
        clear([&p]);
        if cfg!(dino_autocast) {
            assert!(!p.grad().defined(), "the gradient is dropped, not zeroed");
        }
        (&p * 3.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![3.0; 3], "a fresh gradient, nothing accumulated");
    }

    /// The hook fires once per backward pass for a tensor used twice (after both contributions
    /// are summed), sees the complete gradient, is gone after the call, and a panic inside it
    /// comes back out of `with_ready_hooks` instead of unwinding through C++.
    #[test]
    fn ready_hooks_fire_once_with_the_whole_gradient_and_are_removed() {
        if !cfg!(dino_autocast) {
            return;
        }
        let a = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut seen = vec![];
        let mut ready = |i: usize| seen.push((i, [&a, &b][i].grad().sum(Kind::Float).double_value(&[])));
        with_ready_hooks(&[&a, &b], &mut ready, || {
            ((&a * 2.0).sum(Kind::Float) + (&a * 3.0).sum(Kind::Float) + b.sum(Kind::Float)).backward()
        })
        .unwrap();
        seen.sort_by_key(|s| s.0);
        assert_eq!(seen, vec![(0, 10.0), (1, 3.0)]);
        clear([&a, &b]);
        (&a * 1.0).sum(Kind::Float).backward();
        assert_eq!(seen.len(), 2, "no hook after the call");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_ready_hooks(&[&a], &mut |_| panic!("in the hook"), || (&a * 1.0).sum(Kind::Float).backward())
        }));
        assert!(panicked.is_err(), "the hook's panic is re-raised");
        (&a * 1.0).sum(Kind::Float).backward(); // and the hook is gone: no second panic
    }
}
