// ParallelRange: runs fn(begin, end) over disjoint chunks of [0, n) on
// ATen's intra-op thread pool — the same threads (and thread count) as the
// engine's matrix products.
//
// Why not at::parallel_for: it is a header template whose OpenMP branch is
// compiled only under -fopenmp; our sources are built without it, so in this
// code at::parallel_for silently runs serially. TensorIteratorBase::for_each
// is compiled inside libtorch (with OpenMP), so driving it over a tensor of
// chunk indices gets the real pool.
//
// fn must be safe to run concurrently on disjoint ranges and must produce
// results that do not depend on how [0, n) is split (callers rely on that for
// determinism across thread counts). Never call ATen ops from fn.
#ifndef DPFLEET_WORKER_TRAIN_PARALLEL_H_
#define DPFLEET_WORKER_TRAIN_PARALLEL_H_

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>

#include <cstdint>

namespace dpfleet::train {

// grain: the smallest number of indices worth a task of its own.
template <typename Fn>
void ParallelRange(int64_t n, int64_t grain, const Fn& fn) {
  if (n <= 0) return;
  if (n < 2 * grain || at::get_num_threads() < 2 || at::in_parallel_region()) {
    fn(int64_t{0}, n);
    return;
  }
  const at::Tensor index = at::arange(n, at::TensorOptions().dtype(at::kLong));
  at::TensorIterator iter = at::TensorIteratorConfig()
                                .add_const_input(index)
                                .check_all_same_dtype(false)
                                .build();
  // Each call gets a contiguous run of indices (1-D, contiguous input).
  iter.for_each(
      [&](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
        for (int64_t j = 0; j < size1; ++j) {
          const auto* first = reinterpret_cast<const int64_t*>(data[0] + j * strides[1]);
          if (size0 > 0) fn(first[0], first[0] + size0);
        }
      },
      grain);
}

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_PARALLEL_H_
