#ifndef DPFLEET_WORKER_TRAIN_SPLIT_TENSORS_H_
#define DPFLEET_WORKER_TRAIN_SPLIT_TENSORS_H_

// Tensor copies of an encoded split (common/pums/dataset.h), float32 on the
// CPU: the features [rows, dim] and the 0/1 labels [rows]. A split without
// rows gives [0, dim] and [0].

#include <torch/types.h>

#include "common/pums/dataset.h"

namespace dpfleet::train {

inline torch::Tensor FeatureTensor(const data::EncodedSplit& s) {
  if (s.rows == 0) return torch::zeros({0, s.dim}, torch::kFloat32);
  return torch::from_blob(const_cast<float*>(s.x.data()), {s.rows, s.dim}, torch::kFloat32).clone();
}

inline torch::Tensor LabelTensor(const data::EncodedSplit& s) {
  if (s.rows == 0) return torch::zeros({0}, torch::kFloat32);
  return torch::from_blob(const_cast<float*>(s.y.data()), {s.rows}, torch::kFloat32).clone();
}

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_SPLIT_TENSORS_H_
