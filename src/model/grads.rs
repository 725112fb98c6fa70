//! Readying gradients for the next step: dropped, as PyTorch's `zero_grad()` does by default
//! (`set_to_none=True`, through the C++ shim `grads.cpp`), or zeroed in place. Dropped, their
//! memory is free during the next forward pass, where activations peak, and autograd's first
//! accumulation takes over the incoming buffer instead of adding it to zeros; which of the two a
//! step uses is `train::step`'s choice (it depends on how many backward passes a step makes).

use tch::Tensor;

#[cfg(dino_autocast)]
extern "C" {
    fn dino_grad_reset(t: *mut std::ffi::c_void);
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
}
