// Gradients set to "none", as PyTorch's `zero_grad(set_to_none=True)` (its default since 2.0):
// tch can zero a gradient in place but not drop it. Resetting a tensor handle cannot throw.
#include <ATen/core/Tensor.h>

extern "C" {

// `t` is a tch tensor (an `at::Tensor*`); its `.grad` becomes undefined.
void dino_grad_reset(void* t) { static_cast<at::Tensor*>(t)->mutable_grad().reset(); }

}  // extern "C"
