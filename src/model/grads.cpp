// Gradients set to "none", as PyTorch's `zero_grad(set_to_none=True)` (its default since 2.0):
// tch can zero a gradient in place but not drop it. Resetting a tensor handle cannot throw.
//
// And a callback the moment a parameter's gradient is complete in a backward pass: autograd's
// post-accumulate-grad hook (Python's `register_post_accumulate_grad_hook`), which tch does not
// expose. `train::optim` steps each parameter there and drops its gradient, so the gradients of
// the whole network never exist at once ("optimizer step in backward").
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "../shim_guard.hpp"

namespace {

using GradReady = void (*)(void* ctx, size_t index);

// Calls `ready(ctx, index)` after autograd has accumulated the tensor's gradient. Rust catches
// its own panics inside `ready`, so nothing unwinds through here.
struct GradReadyHook final : torch::autograd::PostAccumulateGradHook {
  GradReadyHook(GradReady ready, void* ctx, size_t index) : ready(ready), ctx(ctx), index(index) {}
  void operator()(const torch::autograd::Variable&) override { ready(ctx, index); }
  GradReady ready;
  void* ctx;
  size_t index;
};

}  // namespace

extern "C" {

// `t` is a tch tensor (an `at::Tensor*`); its `.grad` becomes undefined.
void dino_grad_reset(void* t) { static_cast<at::Tensor*>(t)->mutable_grad().reset(); }

// Sets (replacing any) the post-accumulate hook of the leaf tensor `t`; `ready` null removes it.
int dino_grad_on_ready(void* t, GradReady ready, void* ctx, size_t index, char* err, size_t len) {
  return dino_shim::guarded("grads.cpp", err, len, [&] {
    const auto& tensor = *static_cast<at::Tensor*>(t);
    std::unique_ptr<torch::autograd::PostAccumulateGradHook> hook;
    if (ready != nullptr) hook = std::make_unique<GradReadyHook>(ready, ctx, index);
    torch::autograd::impl::set_post_acc_grad_hooks(tensor, std::move(hook));
  });
}

}  // extern "C"
