// The sparse-P path: joint probabilities over a kNN graph, and the t-SNE
// gradient and loss on a sparse P (exact repulsion, or one computed
// elsewhere). Op definitions, shape functions, kernels and registrations. A
// sparse P travels as the three components of a tf.SparseTensor (indices
// [nnz, 3] int64 in canonical row-major order, values [nnz], dense_shape [3]
// = [batch, n, n]; or, for one matrix, indices [nnz, 2] and dense_shape
// [n, n], taken as they are); the Python wrappers build and take the
// tf.SparseTensor.
// An optimiser that calls the attraction with the same P in every iteration
// converts P once (SparseCsr) and calls CsrTsneGradientFromRepulsion, which
// checks the CSR cheaply instead of converting it again. The loss's gradient
// (registered in Python) runs SparseTsneGradient with
// scale_repulsion_by_p_sum, as the dense loss does.
#include <vector>

#include "cc/compute/sparse_affinities.h"
#include "cc/compute/sparse_tsne_gradient.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

namespace {

#ifdef TSNE_OPS_WITH_CUDA
// Scratch for a sparse gradient kernel on the GPU: the kernel's workspace,
// then P's CSR view (built on the host: p_indices is HostMemory) copied after
// it on the op's stream. The host vectors must outlive the copy (the callers
// synchronise before returning).
struct DeviceCsr {
  Tensor scratch;
  void* ws = nullptr;
  const int64_t* row_ptr = nullptr;
  const int64_t* cols = nullptr;
};

template <typename T>
absl::Status CsrOnDevice(OpKernelContext* ctx, int64_t batch, int64_t n, int64_t d,
                         const std::vector<int64_t>& row_ptr, const std::vector<int64_t>& cols,
                         const char* what, DeviceCsr* out) {
  const size_t ws_bytes = kernels::SparseTsneGradientWorkspaceBytes<T>(batch, n, d);
  const size_t off_rp = ((ws_bytes + 63) / 64) * 64;
  const size_t rp_bytes = sizeof(int64_t) * row_ptr.size();
  const size_t off_cols = off_rp + ((rp_bytes + 63) / 64) * 64;
  TF_RETURN_IF_ERROR(AllocateScratch(ctx, off_cols + sizeof(int64_t) * (cols.size() + 1),
                                     &out->scratch, &out->ws));
  char* base = static_cast<char*>(out->ws);
  int64_t* rp_dev = reinterpret_cast<int64_t*>(base + off_rp);
  int64_t* cols_dev = reinterpret_cast<int64_t*>(base + off_cols);
  out->row_ptr = rp_dev;
  out->cols = cols_dev;
  cudaStream_t stream = GpuStream(ctx);
  const std::string copy = absl::StrCat(what, " (copy of p)");
  TF_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(rp_dev, row_ptr.data(), rp_bytes,
                                                cudaMemcpyHostToDevice, stream), copy.c_str()));
  if (!cols.empty()) {
    TF_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(cols_dev, cols.data(),
                                                  sizeof(int64_t) * cols.size(),
                                                  cudaMemcpyHostToDevice, stream), copy.c_str()));
  }
  return absl::OkStatus();
}

// The message for the flags LaunchCheckCsr left (first_bad, on the host):
// the few values it names are copied back (an error path only).
absl::Status DeviceCsrProblem(const int64_t* row_ptr, const int64_t* cols, int64_t rows,
                              int64_t nnz, int64_t n, const unsigned long long* first_bad,
                              const char* what) {
  if (first_bad[0] != ~0ull) {
    const int64_t u = static_cast<int64_t>(first_bad[0]);
    int64_t v[2] = {0, 0};  // row_ptr[u - 1], row_ptr[u]
    const int64_t from = u > 0 ? u - 1 : u;
    TF_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(v + (u > 0 ? 0 : 1), row_ptr + from,
                                             sizeof(int64_t) * (u - from + 1),
                                             cudaMemcpyDeviceToHost), what));
    return absl::InvalidArgumentError(kernels::CsrRowPtrMessage(u, v[0], v[1], rows, nnz));
  }
  const int64_t e = static_cast<int64_t>(first_bad[1]);
  int64_t value = 0;
  TF_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(&value, cols + e, sizeof(int64_t),
                                           cudaMemcpyDeviceToHost), what));
  return absl::InvalidArgumentError(kernels::CsrColumnMessage(e, value, n));
}
#endif

// p's indices and dense_shape, in either form of a tf.SparseTensor: batched,
// indices [nnz, 3] (batch, row, column) with dense_shape [3] = [batch, n, n],
// or one matrix, indices [nnz, 2] (row, column) with dense_shape [2] =
// [n, n] (batch 1: a rank-2 P as it is, with no batched copy of its
// indices). Square, sizes >= 0, batch n n within int64. Returns batch and n.
// Every op that takes p's COO form checks its structure here.
absl::Status SparsePShape(const Tensor& indices, const Tensor& shape, int64_t* batch,
                          int64_t* n) {
  if (indices.dims() != 2 || (indices.dim_size(1) != 3 && indices.dim_size(1) != 2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "p indices must be [nnz, 3] (batch, row, column) or [nnz, 2] (row, column), but have "
        "shape ", indices.shape().DebugString()));
  }
  const int64_t rank = indices.dim_size(1);
  const char* form = rank == 3 ? "[batch, n, n]" : "[n, n]";
  if (shape.dims() != 1 || shape.dim_size(0) != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "p dense_shape must be [", rank, "] (", form, ") to match p indices [nnz, ", rank,
        "], but has shape ", shape.shape().DebugString()));
  }
  auto ds = shape.vec<int64_t>();
  const std::string given =
      rank == 3 ? absl::StrCat("[", ds(0), ", ", ds(1), ", ", ds(2), "]")
                : absl::StrCat("[", ds(0), ", ", ds(1), "]");
  const int64_t b = rank == 3 ? ds(0) : 1, rows = ds(rank - 2), cols = ds(rank - 1);
  if (rows != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("p must be square ", form, ", but has dense shape ", given));
  }
  int64_t size = 0;
  if (b < 0 || rows < 0 || __builtin_mul_overflow(b, rows, &size) ||
      __builtin_mul_overflow(size, rows, &size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "p dense_shape must be >= 0 with ", rank == 3 ? "batch n n" : "n n", " < 2^63, but is ",
        given));
  }
  *batch = b;
  *n = rows;
  return absl::OkStatus();
}

// p's indices (either form, checked by SparsePShape) converted to CSR:
// row_ptr [batch n + 1], cols [nnz] (the canonical-order and range checks of
// CooToCsr).
absl::Status SparsePToCsr(const Tensor& indices, int64_t batch, int64_t n,
                          const kernels::ParallelFor& pf, int64_t* row_ptr, int64_t* cols) {
  return CheckMessage(kernels::CooToCsr(indices.flat<int64_t>().data(),
                                        static_cast<int>(indices.dim_size(1)),
                                        indices.dim_size(0), batch, n, "p", row_ptr, cols, &pf));
}

// The embedding y [batch, n, d] of a sparse gradient op: n >= 2, d >= 1.
absl::Status CheckSparseY(const Tensor& y) {
  TF_RETURN_IF_ERROR(CheckRank(y, 3, "y", "[batch, n, d]"));
  if (y.dim_size(1) < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("y needs at least 2 points, but n = ", y.dim_size(1)));
  }
  if (y.dim_size(2) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("y must have d >= 1, but has shape ", y.shape().DebugString()));
  }
  return absl::OkStatus();
}

// p's components against y [batch, n, d]; on success fills the CSR view.
absl::Status SparsePInputs(const Tensor& indices, const Tensor& values, const Tensor& shape,
                           const Tensor& y, const kernels::ParallelFor& pf,
                           std::vector<int64_t>* row_ptr, std::vector<int64_t>* cols) {
  int64_t batch = 0, n = 0;
  TF_RETURN_IF_ERROR(SparsePShape(indices, shape, &batch, &n));
  const int64_t nnz = indices.dim_size(0);
  if (values.dims() != 1 || values.dim_size(0) != nnz) {
    return absl::InvalidArgumentError(
        absl::StrCat("p values must be [nnz] = [", nnz, "] to match p indices, but have shape ",
                     values.shape().DebugString()));
  }
  TF_RETURN_IF_ERROR(CheckRank(y, 3, "y", "[batch, n, d]"));
  if (batch != y.dim_size(0) || n != y.dim_size(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "p must have dense shape [batch, n, n] = [", y.dim_size(0), ", ", y.dim_size(1), ", ",
        y.dim_size(1), "] to match y of shape ", y.shape().DebugString(),
        ", but has dense shape [", batch, ", ", n, ", ", n, "]"));
  }
  TF_RETURN_IF_ERROR(CheckSparseY(y));
  row_ptr->resize(batch * n + 1);
  cols->resize(nnz);
  return SparsePToCsr(indices, batch, n, pf, row_ptr->data(), cols->data());
}

// The CSR inputs (row_ptr, cols, p_values) of CsrTsneGradientFromRepulsion
// against y: their sizes only (O(1)); the entries are checked on the device
// that runs the kernel.
absl::Status CsrPInputs(const Tensor& row_ptr, const Tensor& cols, const Tensor& values,
                        const Tensor& y) {
  TF_RETURN_IF_ERROR(CheckSparseY(y));
  const int64_t rows = y.dim_size(0) * y.dim_size(1);
  if (row_ptr.dims() != 1 || row_ptr.dim_size(0) != rows + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "row_ptr must be [batch * n + 1] = [", rows + 1, "] for y of shape ",
        y.shape().DebugString(), ", but has shape ", row_ptr.shape().DebugString()));
  }
  if (cols.dims() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cols must be [nnz], but has shape ", cols.shape().DebugString()));
  }
  if (values.dims() != 1 || values.dim_size(0) != cols.dim_size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "p_values must be [nnz] = [", cols.dim_size(0), "] to match cols, but has shape ",
        values.shape().DebugString()));
  }
  return absl::OkStatus();
}

// The repulsion R [batch, n, d] and Z [batch] given to a FromRepulsion op:
// their shapes against y (both ops, every device) ...
absl::Status CheckRepulsionShapes(const Tensor& rep, const Tensor& z, const Tensor& y) {
  if (rep.shape() != y.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("repulsion must have the shape of y ",
                                                   y.shape().DebugString(), ", but has shape ",
                                                   rep.shape().DebugString()));
  }
  if (z.dims() != 1 || z.dim_size(0) != y.dim_size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("z must be [batch] = [", y.dim_size(0),
                                                   "], but has shape ", z.shape().DebugString()));
  }
  return absl::OkStatus();
}

// ... and their values, on the CPU (host memory): R finite, Z finite and > 0.
template <typename T>
absl::Status CheckRepulsionValues(const Tensor& rep, const Tensor& z,
                                  const kernels::ParallelFor* pf) {
  TF_RETURN_IF_ERROR(CheckMessage(
      kernels::CheckAllFinite<T>(rep.flat<T>().data(), Dims(rep), "repulsion", pf)));
  auto zv = z.flat<T>();
  for (int64_t b = 0; b < z.dim_size(0); ++b) {
    if (!(zv(b) > 0 && std::isfinite(static_cast<double>(zv(b))))) {
      return absl::InvalidArgumentError(absl::StrCat("z must be finite and > 0, but z[", b,
                                                     "] = ", static_cast<double>(zv(b))));
    }
  }
  return absl::OkStatus();
}

// The values both sparse gradient ops check on the CPU before the kernel
// runs (cheap next to the repulsion): p's values finite and >= 0, y finite.
template <typename T>
absl::Status CheckSparseValues(const Tensor& p_val, const Tensor& y,
                               const kernels::ParallelFor* pf) {
  TF_RETURN_IF_ERROR(CheckMessage(kernels::CheckNonNegativeFinite<T>(
      p_val.flat<T>().data(), Dims(p_val), "p values", pf)));
  return CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(), Dims(y), "y", pf));
}

}  // namespace

REGISTER_OP("TSNE>KnnJointProbabilities")
    .Input("indices: int64")
    .Input("sq_distances: T")
    .Output("p_indices: int64")
    .Output("p_values: T")
    .Output("p_dense_shape: int64")
    .Attr("T: {float, double}")
    .Attr("perplexity: float")
    .Attr("tolerance: float = 1e-5")
    .Attr("max_iter: int = 200")
    .Attr("index_rank: int = 3")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle idx, d2;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &idx));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &d2));
      TF_RETURN_IF_ERROR(c->Merge(idx, d2, &idx));
      int64_t rank = 3;
      TF_RETURN_IF_ERROR(c->GetAttr("index_rank", &rank));
      if (rank != 2 && rank != 3) {
        return absl::InvalidArgumentError(
            absl::StrCat("index_rank must be 2 or 3, but is ", rank));
      }
      DimensionHandle nnz = c->UnknownDim();
      c->set_output(0, c->MakeShape({nnz, rank}));
      c->set_output(1, c->MakeShape({nnz}));
      c->set_output(2, c->MakeShape({rank}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Symmetric joint probabilities P over a k-nearest-neighbour graph, sparse.

Each row's conditional P(j|i) over its k neighbours is calibrated to the
perplexity by the search of PerplexityAffinities (same tolerance; rows that
cannot reach it keep their closest beta and are counted in a warning); then
P = (P_cond + P_cond^T) / sum per batch element, as scikit-learn's
_joint_probabilities_nn. The result is a SparseTensor's components in
canonical row-major order over the union of the graph and its transpose.

indices: [batch, n, k] int64 neighbours of each point (distinct, not itself).
sq_distances: [batch, n, k] their squared distances (finite, >= 0).
p_indices: [nnz, 3] (batch, row, column); [nnz, 2] (row, column) with
  index_rank 2.
p_values: [nnz].
p_dense_shape: [batch, n, n]; [n, n] with index_rank 2.
perplexity: the target perplexity, in (0, k).
tolerance: entropy tolerance, nats.
max_iter: the most search steps per row.
index_rank: 3, or 2 for batch 1: the components of a rank-2 SparseTensor,
  written as such (no [nnz, 3] list to slice).
)doc");

REGISTER_OP("TSNE>SparseTsneGradient")
    .Input("p_indices: int64")
    .Input("p_values: T")
    .Input("p_dense_shape: int64")
    .Input("y: T")
    .Input("exaggeration: T")
    .Input("dof: T")
    .Output("grad: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .Attr("compute_kl: bool = true")
    .Attr("scale_repulsion_by_p_sum: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, &y));
      bool compute_kl = true;
      TF_RETURN_IF_ERROR(c->GetAttr("compute_kl", &compute_kl));
      c->set_output(0, y);
      c->set_output(1, compute_kl ? c->MakeShape({c->Dim(y, 0)}) : c->MakeShape({0}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The t-SNE gradient and KL divergence for a sparse P, exact repulsion.

The same quantities as TsneGradient on the dense P: attraction over P's
stored entries (row by row, O(nnz d)), repulsion and Z over every pair in
tiles (O(n^2 d) time, O(n d) memory). Stored diagonal entries are ignored.

p_indices: [nnz, 3] int64 (batch, row, column), or [nnz, 2] (row, column) for
  batch 1; canonical row-major order, no duplicates.
p_values: [nnz] joint probabilities (finite, >= 0).
p_dense_shape: [batch, n, n], or [n, n] with [nnz, 2] indices.
y: [batch, n, d] embedding.
exaggeration: scalar, multiplies the attractive term, > 0.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
grad: [batch, n, d].
kl: [batch], or [0] when compute_kl is false.
compute_kl: whether to compute kl.
scale_repulsion_by_p_sum: scale the repulsive term by sum(p).
)doc");

REGISTER_OP("TSNE>SparseTsneLoss")
    .Input("p_indices: int64")
    .Input("p_values: T")
    .Input("p_dense_shape: int64")
    .Input("y: T")
    .Input("dof: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, &y));
      c->set_output(0, c->MakeShape({c->Dim(y, 0)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The t-SNE loss KL(P || Q) per batch for a sparse P. Differentiable in y (the
gradient runs SparseTsneGradient), not in p.

p_indices: [nnz, 3] int64 (batch, row, column), or [nnz, 2] (row, column) for
  batch 1; canonical row-major order, no duplicates.
p_values: [nnz] joint probabilities (finite, >= 0).
p_dense_shape: [batch, n, n], or [n, n] with [nnz, 2] indices.
y: [batch, n, d] embedding.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
kl: [batch].
)doc");

namespace {

// Both FromRepulsion ops take y, repulsion and z as inputs 3, 4 and 5.
absl::Status FromRepulsionShape(InferenceContext* c) {
  ShapeHandle y, r, z;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, &y));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 3, &r));
  TF_RETURN_IF_ERROR(c->Merge(y, r, &y));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 1, &z));
  DimensionHandle b;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(y, 0), c->Dim(z, 0), &b));
  bool compute_kl = true;
  TF_RETURN_IF_ERROR(c->GetAttr("compute_kl", &compute_kl));
  c->set_output(0, y);
  c->set_output(1, compute_kl ? c->MakeShape({b}) : c->MakeShape({0}));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("TSNE>SparseTsneGradientFromRepulsion")
    .Input("p_indices: int64")
    .Input("p_values: T")
    .Input("p_dense_shape: int64")
    .Input("y: T")
    .Input("repulsion: T")
    .Input("z: T")
    .Input("exaggeration: T")
    .Input("dof: T")
    .Output("grad: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .Attr("compute_kl: bool = true")
    .Attr("scale_repulsion_by_p_sum: bool = false")
    .SetShapeFn(FromRepulsionShape)
    .Doc(R"doc(
The t-SNE gradient and KL for a sparse P from a repulsion computed elsewhere.

The attraction runs over P's stored entries as in SparseTsneGradient; the
repulsion R and its normaliser Z come from an approximation (FFT
interpolation, Barnes-Hut): grad = (2 (a + 1) / a) (exaggeration A - s R / Z),
kl = sum p log p - sum p log w + s log Z. Given the exact R and Z, the result
equals SparseTsneGradient's.

p_indices: [nnz, 3] int64 (batch, row, column), or [nnz, 2] (row, column) for
  batch 1; canonical row-major order, no duplicates.
p_values: [nnz] joint probabilities (finite, >= 0).
p_dense_shape: [batch, n, n], or [n, n] with [nnz, 2] indices.
y: [batch, n, d] embedding.
repulsion: [batch, n, d], R_i = sum_{j != i} w_ij u_ij (y_i - y_j) (finite).
z: [batch], Z = sum_{i != j} w_ij (finite, > 0).
exaggeration: scalar, multiplies the attractive term, > 0.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
grad: [batch, n, d].
kl: [batch], or [0] when compute_kl is false.
compute_kl: whether to compute kl.
scale_repulsion_by_p_sum: scale the repulsive term by sum(p).
)doc");

REGISTER_OP("TSNE>SparseCsr")
    .Input("p_indices: int64")
    .Input("p_dense_shape: int64")
    .Output("row_ptr: int64")
    .Output("cols: int64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle idx, shape;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &idx));
      const DimensionHandle rank = c->Dim(idx, 1);
      if (c->ValueKnown(rank) && c->Value(rank) != 2 && c->Value(rank) != 3) {
        return absl::InvalidArgumentError(absl::StrCat(
            "p indices must be [nnz, 3] (batch, row, column) or [nnz, 2] (row, column), but "
            "have ", c->Value(rank), " columns"));
      }
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &shape));
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->Dim(idx, 0)));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The CSR view of a sparse P, for CsrTsneGradientFromRepulsion: built once
when P serves many calls (an optimiser's iterations), where the COO ops
check and convert P's indices in every call. Checked as the COO ops check
p (in range, canonical row-major order, no duplicates). Takes either form of
a tf.SparseTensor: batched, or one [n, n] matrix (rank-2 indices, read as
they are: no batched copy). Not differentiable.

p_indices: [nnz, 3] int64 (batch, row, column), or [nnz, 2] (row, column) for
  one [n, n] matrix; canonical row-major order, no duplicates.
p_dense_shape: [batch, n, n], or [n, n] with [nnz, 2] indices (batch 1).
row_ptr: [batch * n + 1] int64, row u = b * n + i holds entries
  [row_ptr[u], row_ptr[u + 1]) (absolute offsets; row_ptr[0] = 0,
  row_ptr[batch * n] = nnz).
cols: [nnz] int64, the column (in [0, n)) of each entry, in p's order (so
  p's values serve the CSR view unchanged).
)doc");

REGISTER_OP("TSNE>CsrTsneGradientFromRepulsion")
    .Input("row_ptr: int64")
    .Input("cols: int64")
    .Input("p_values: T")
    .Input("y: T")
    .Input("repulsion: T")
    .Input("z: T")
    .Input("exaggeration: T")
    .Input("dof: T")
    .Output("grad: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .Attr("compute_kl: bool = true")
    .Attr("scale_repulsion_by_p_sum: bool = false")
    .SetShapeFn(FromRepulsionShape)
    .Doc(R"doc(
SparseTsneGradientFromRepulsion on P's CSR view (SparseCsr's outputs): the
same kernels and the same bits, without converting P in every call. The CSR
is checked in every call, cheaply: row_ptr starts at 0, never decreases and
ends at nnz (O(batch n)); every column lies in [0, n) and, on the CPU, every
value is finite and >= 0 (on the CPU both checked as the attraction reads
them; on the GPU the columns by a check kernel that the attraction waits on,
nothing copied back unless it fails).

row_ptr: [batch * n + 1] int64 (SparseCsr's row_ptr).
cols: [nnz] int64 (SparseCsr's cols).
p_values: [nnz] joint probabilities (finite, >= 0), p's values.
y: [batch, n, d] embedding.
repulsion: [batch, n, d], R_i = sum_{j != i} w_ij u_ij (y_i - y_j) (finite).
z: [batch], Z = sum_{i != j} w_ij (finite, > 0).
exaggeration: scalar, multiplies the attractive term, > 0.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
grad: [batch, n, d].
kl: [batch], or [0] when compute_kl is false.
compute_kl: whether to compute kl.
scale_repulsion_by_p_sum: scale the repulsive term by sum(p).
)doc");

template <typename Device, typename T>
class KnnJointProbabilitiesOp : public OpKernel {
 public:
  explicit KnnJointProbabilitiesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, search_.Read(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("index_rank", &index_rank_));
    OP_REQUIRES(ctx, index_rank_ == 2 || index_rank_ == 3,
                absl::InvalidArgumentError(
                    absl::StrCat("index_rank must be 2 or 3, but is ", index_rank_)));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& idx = ctx->input(0);
    const Tensor& d2 = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(idx, 3, "indices", "[batch, n, k]"));
    OP_REQUIRES_OK(ctx, CheckRank(d2, 3, "sq_distances", "[batch, n, k]"));
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckKnnShapes(Dims(idx), Dims(d2))));
    const int64_t batch = idx.dim_size(0), n = idx.dim_size(1), k = idx.dim_size(2);
    OP_REQUIRES(ctx, index_rank_ == 3 || batch == 1,
                absl::InvalidArgumentError(absl::StrCat(
                    "index_rank 2 writes one [n, n] matrix, so indices must be [1, n, k], but "
                    "have shape ", idx.shape().DebugString())));
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckKnnPerplexity(search_.perplexity, k)));
    // indices stay on the host on every device (HostMemory): they are checked
    // here, and nnz must be known on the host to allocate the outputs.
    kernels::ParallelFor pf = kCpu ? CpuParallelFor(ctx) : kernels::SerialFor();
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckKnnIndices(idx.flat<int64_t>().data(), batch,
                                                              n, k, "indices", &pf)));
    Tensor* shape_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({index_rank_}), &shape_out));
    auto so = shape_out->vec<int64_t>();
    if (index_rank_ == 3) so(0) = batch;
    so(index_rank_ - 2) = n;
    so(index_rank_ - 1) = n;
    int64_t unconverged = 0;
    if constexpr (kCpu) {
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckNonNegativeFinite<T>(
                              d2.flat<T>().data(), Dims(d2), "sq_distances", &pf)));
      absl::Status alloc_status;
      kernels::SparseAllocator<T> allocate = [&](int64_t nnz, int64_t** ip, T** vp) {
        Tensor* it = nullptr;
        Tensor* vt = nullptr;
        alloc_status = ctx->allocate_output(0, TensorShape({nnz, index_rank_}), &it);
        if (alloc_status.ok()) alloc_status = ctx->allocate_output(1, TensorShape({nnz}), &vt);
        if (!alloc_status.ok()) return false;
        *ip = it->flat<int64_t>().data();
        *vp = vt->flat<T>().data();
        return true;
      };
      kernels::KnnJointProbabilitiesCpu<T>(idx.flat<int64_t>().data(), d2.flat<T>().data(),
                                           batch, n, k, search_.perplexity, search_.tolerance,
                                           search_.max_iter, allocate, &unconverged, pf,
                                           static_cast<int>(index_rank_));
      OP_REQUIRES_OK(ctx, alloc_status);
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      // The indices go to the device once, after the host-side check.
      const size_t ws_bytes = kernels::KnnJointWorkspaceBytes<T>(batch, n, k);
      const size_t idx_bytes = sizeof(int64_t) * batch * n * k;
      Tensor scratch;
      void* ws = nullptr;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx, ws_bytes + idx_bytes + 64, &scratch, &ws));
      int64_t* idx_dev = reinterpret_cast<int64_t*>(static_cast<char*>(ws) +
                                                    ((ws_bytes + 63) / 64) * 64);
      cudaStream_t stream = GpuStream(ctx);
      OP_REQUIRES_OK(ctx, CudaStatus(cudaMemcpyAsync(idx_dev, idx.flat<int64_t>().data(),
                                                     idx_bytes, cudaMemcpyHostToDevice, stream),
                                     "KnnJointProbabilities (copy of indices)"));
      Tensor count_t;
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT64, TensorShape({1}), &count_t));
      int64_t nnz = 0;
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchKnnJointPrepare<T>(
                                         stream, idx_dev, d2.flat<T>().data(), batch, n, k,
                                         search_.perplexity, search_.tolerance, search_.max_iter,
                                         count_t.flat<int64_t>().data(), ws, &nnz),
                                     "KnnJointProbabilities"));
      OP_REQUIRES_OK(ctx, CudaStatus(cudaMemcpy(&unconverged, count_t.flat<int64_t>().data(),
                                                sizeof(int64_t), cudaMemcpyDeviceToHost),
                                     "KnnJointProbabilities (count)"));
      Tensor* it = nullptr;
      Tensor* vt = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({nnz, index_rank_}), &it));
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({nnz}), &vt));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchKnnJointWrite<T>(
                                         stream, batch, n, k, ws, nnz,
                                         it->flat<int64_t>().data(), vt->flat<T>().data(),
                                         static_cast<int>(index_rank_)),
                                     "KnnJointProbabilities"));
#endif
    }
    if (unconverged > 0) {
      LOG(WARNING) << "tsne_ops: " << unconverged << " of " << batch * n
                   << " rows did not reach perplexity " << search_.perplexity << " within "
                   << search_.tolerance << " nats in " << search_.max_iter
                   << " steps (duplicate points or ties?); the closest beta was kept.";
    }
  }

 private:
  PerplexitySearchAttrs search_;
  int64_t index_rank_ = 3;
};

template <typename Device, typename T, bool LossOnly>
class SparseTsneGradientOp : public OpKernel {
 public:
  explicit SparseTsneGradientOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (!LossOnly) OP_REQUIRES_OK(ctx, ReadGradientAttrs(ctx, &compute_kl_, &scale_by_p_sum_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& p_idx = ctx->input(0);
    const Tensor& p_val = ctx->input(1);
    const Tensor& p_shape = ctx->input(2);
    const Tensor& y = ctx->input(3);
    std::vector<int64_t> row_ptr, cols;
    OP_REQUIRES_OK(ctx,
                   SparsePInputs(p_idx, p_val, p_shape, y, CpuParallelFor(ctx), &row_ptr, &cols));
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    GradientOutputs<T> out;
    OP_REQUIRES_OK(ctx, AllocateGradientOutputs<T>(ctx, y, LossOnly ? -1 : 4, LossOnly ? 4 : 5,
                                                   compute_kl_, scale_by_p_sum_, &out));
    if (batch == 0) return;
    const kernels::TsneGradientOptions& options = out.options;
    T* grad_ptr = out.grad;
    T* kl_ptr = out.kl;
    if constexpr (kCpu) {
      kernels::ParallelFor pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckSparseValues<T>(p_val, y, &pf));
      kernels::SparseTsneGradientCpu<T>(row_ptr.data(), cols.data(), p_val.flat<T>().data(),
                                        y.flat<T>().data(), batch, n, d, options, grad_ptr,
                                        kl_ptr, pf);
      OP_REQUIRES(ctx, out.Finite(),
                  absl::InvalidArgumentError(
                      "the t-SNE gradient overflowed (inputs are finite); is y too large "
                      "or p not normalised?"));
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      // The CSR view is built on the host (p_indices is HostMemory) and
      // copied next to the kernel's workspace.
      DeviceCsr csr;
      OP_REQUIRES_OK(ctx, CsrOnDevice<T>(ctx, batch, n, d, row_ptr, cols, "SparseTsneGradient",
                                         &csr));
      cudaStream_t stream = GpuStream(ctx);
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchSparseTsneGradient<T>(
                                         stream, csr.row_ptr, csr.cols, p_val.flat<T>().data(),
                                         y.flat<T>().data(), batch, n, d, options, grad_ptr,
                                         kl_ptr, csr.ws),
                                     "SparseTsneGradient"));
      // row_ptr and cols are pageable host vectors freed on return.
      OP_REQUIRES_OK(ctx, CudaStatus(cudaStreamSynchronize(stream), "SparseTsneGradient"));
#endif
    }
  }

 private:
  bool compute_kl_ = true;
  bool scale_by_p_sum_ = false;
};

template <typename Device>
class SparseCsrOp : public OpKernel {
 public:
  explicit SparseCsrOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& p_idx = ctx->input(0);
    int64_t batch = 0, n = 0;
    OP_REQUIRES_OK(ctx, SparsePShape(p_idx, ctx->input(1), &batch, &n));
    const int64_t rows = batch * n, nnz = p_idx.dim_size(0);
    Tensor* rp_t = nullptr;
    Tensor* cols_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows + 1}), &rp_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({nnz}), &cols_t));
    const kernels::ParallelFor pf = CpuParallelFor(ctx);
    if constexpr (kCpu) {
      OP_REQUIRES_OK(ctx, SparsePToCsr(p_idx, batch, n, pf, rp_t->flat<int64_t>().data(),
                                       cols_t->flat<int64_t>().data()));
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      // p_indices is HostMemory: build on the host, copy once.
      std::vector<int64_t> row_ptr(rows + 1), cols(nnz);
      OP_REQUIRES_OK(ctx, SparsePToCsr(p_idx, batch, n, pf, row_ptr.data(), cols.data()));
      cudaStream_t stream = GpuStream(ctx);
      OP_REQUIRES_OK(ctx, CudaStatus(cudaMemcpyAsync(rp_t->flat<int64_t>().data(), row_ptr.data(),
                                                     sizeof(int64_t) * (rows + 1),
                                                     cudaMemcpyHostToDevice, stream),
                                     "SparseCsr (copy of row_ptr)"));
      if (nnz > 0) {
        OP_REQUIRES_OK(ctx, CudaStatus(cudaMemcpyAsync(cols_t->flat<int64_t>().data(),
                                                       cols.data(), sizeof(int64_t) * nnz,
                                                       cudaMemcpyHostToDevice, stream),
                                       "SparseCsr (copy of cols)"));
      }
      // The host vectors are freed on return.
      OP_REQUIRES_OK(ctx, CudaStatus(cudaStreamSynchronize(stream), "SparseCsr"));
#endif
    }
  }
};

// SparseTsneGradientFromRepulsion (kCsr false: P as COO, converted on the
// host in every call) and CsrTsneGradientFromRepulsion (kCsr true: P's CSR
// view from SparseCsr, checked in every call): everything but P's inputs is
// shared, and so is the kernel.
template <typename Device, typename T, bool kCsr>
class TsneGradientFromRepulsionOp : public OpKernel {
 public:
  explicit TsneGradientFromRepulsionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGradientAttrs(ctx, &compute_kl_, &scale_by_p_sum_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const char* name = kCsr ? "CsrTsneGradientFromRepulsion" : "SparseTsneGradientFromRepulsion";
    const Tensor& p_val = ctx->input(kCsr ? 2 : 1);
    const Tensor& y = ctx->input(3);
    const Tensor& rep = ctx->input(4);
    const Tensor& z = ctx->input(5);
    std::vector<int64_t> coo_row_ptr, coo_cols;  // COO: the CSR built here
    const int64_t* row_ptr = nullptr;
    const int64_t* cols = nullptr;
    if constexpr (kCsr) {
      OP_REQUIRES_OK(ctx, CsrPInputs(ctx->input(0), ctx->input(1), p_val, y));
      row_ptr = ctx->input(0).flat<int64_t>().data();
      cols = ctx->input(1).flat<int64_t>().data();
    } else {
      OP_REQUIRES_OK(ctx, SparsePInputs(ctx->input(0), p_val, ctx->input(2), y,
                                        CpuParallelFor(ctx), &coo_row_ptr, &coo_cols));
      row_ptr = coo_row_ptr.data();
      cols = coo_cols.data();
    }
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    const int64_t nnz = p_val.dim_size(0);
    OP_REQUIRES_OK(ctx, CheckRepulsionShapes(rep, z, y));
    GradientOutputs<T> out;
    OP_REQUIRES_OK(ctx, AllocateGradientOutputs<T>(ctx, y, 6, 7, compute_kl_, scale_by_p_sum_,
                                                   &out));
    if (batch == 0) return;
    if constexpr (kCpu) {
      kernels::ParallelFor pf = CpuParallelFor(ctx);
      // CSR: row_ptr checked here (O(batch n)); the columns and p's values
      // by the kernel as it reads them (first_bad_entry), with no second
      // pass over either. COO: the values before the kernel.
      if (kCsr) {
        OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckCsrRowPtr(row_ptr, batch * n, nnz)));
        OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(),
                                                                    Dims(y), "y", &pf)));
      } else {
        OP_REQUIRES_OK(ctx, CheckSparseValues<T>(p_val, y, &pf));
      }
      OP_REQUIRES_OK(ctx, CheckRepulsionValues<T>(rep, z, &pf));
      int64_t first_bad = nnz;
      kernels::SparseTsneGradientFromRepulsionCpu<T>(
          row_ptr, cols, p_val.flat<T>().data(), y.flat<T>().data(), batch, n, d, out.options,
          rep.flat<T>().data(), z.flat<T>().data(), out.grad, out.kl, pf,
          kCsr ? &first_bad : nullptr);
      if (first_bad < nnz) {
        // A bad column, or else a bad value: the full check names the
        // first (entries are checked in order, so it is this one).
        OP_REQUIRES(ctx, !kernels::CsrColumnBad(cols[first_bad], n),
                    absl::InvalidArgumentError(
                        kernels::CsrColumnMessage(first_bad, cols[first_bad], n)));
        OP_REQUIRES_OK(ctx, CheckSparseValues<T>(p_val, y, &pf));
        OP_REQUIRES(ctx, false, absl::InternalError(absl::StrCat(
                                    name, ": p entry ", first_bad, " failed a check")));
      }
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      // COO: the CSR built on the host is copied after the kernel's
      // workspace. CSR: already on the device; a check kernel writes two
      // flags after the workspace, the attraction pass skips a bad CSR, and
      // the flags come back with the synchronisation the path already has.
      // z stays on the device (the output of a device reduction); the
      // caller's approximation guarantees it is > 0.
      cudaStream_t stream = GpuStream(ctx);
      DeviceCsr csr;
      unsigned long long* guard = nullptr;
      if constexpr (kCsr) {
        const size_t ws_bytes = kernels::SparseTsneGradientWorkspaceBytes<T>(batch, n, d);
        const size_t off_guard = ((ws_bytes + 63) / 64) * 64;
        OP_REQUIRES_OK(ctx, AllocateScratch(ctx, off_guard + 2 * sizeof(unsigned long long),
                                            &csr.scratch, &csr.ws));
        guard = reinterpret_cast<unsigned long long*>(static_cast<char*>(csr.ws) + off_guard);
        csr.row_ptr = row_ptr;
        csr.cols = cols;
        OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchCheckCsr(stream, row_ptr, batch * n, cols,
                                                               nnz, n, guard),
                                       name));
      } else {
        OP_REQUIRES_OK(ctx, CsrOnDevice<T>(ctx, batch, n, d, coo_row_ptr, coo_cols, name, &csr));
      }
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchSparseTsneGradientFromRepulsion<T>(
                                         stream, csr.row_ptr, csr.cols, p_val.flat<T>().data(),
                                         y.flat<T>().data(), batch, n, d, out.options,
                                         rep.flat<T>().data(), z.flat<T>().data(), out.grad,
                                         out.kl, csr.ws, guard),
                                     name));
      unsigned long long first_bad[2] = {~0ull, ~0ull};
      if (guard != nullptr) {
        OP_REQUIRES_OK(ctx, CudaStatus(cudaMemcpyAsync(first_bad, guard, sizeof(first_bad),
                                                       cudaMemcpyDeviceToHost, stream),
                                       name));
      }
      OP_REQUIRES_OK(ctx, CudaStatus(cudaStreamSynchronize(stream), name));
      if (first_bad[0] != ~0ull || first_bad[1] != ~0ull) {
        OP_REQUIRES_OK(ctx, DeviceCsrProblem(row_ptr, cols, batch * n, nnz, n, first_bad, name));
      }
#endif
    }
  }

 private:
  bool compute_kl_ = true;
  bool scale_by_p_sum_ = false;
};

#define TSNE_OPS_REGISTER_CPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(                                                                   \
      Name("TSNE>KnnJointProbabilities").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      KnnJointProbabilitiesOp<CPUDevice, T>);                                                \
  REGISTER_KERNEL_BUILDER(                                                                   \
      Name("TSNE>SparseTsneGradient").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      SparseTsneGradientOp<CPUDevice, T, false>);                                            \
  REGISTER_KERNEL_BUILDER(                                                                   \
      Name("TSNE>SparseTsneLoss").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
      SparseTsneGradientOp<CPUDevice, T, true>);                                             \
  REGISTER_KERNEL_BUILDER(Name("TSNE>SparseTsneGradientFromRepulsion")                       \
                              .Device(tensorflow::DEVICE_CPU)                                \
                              .TypeConstraint<T>("T"),                                       \
                          TsneGradientFromRepulsionOp<CPUDevice, T, false>);                 \
  REGISTER_KERNEL_BUILDER(Name("TSNE>CsrTsneGradientFromRepulsion")                          \
                              .Device(tensorflow::DEVICE_CPU)                                \
                              .TypeConstraint<T>("T"),                                       \
                          TsneGradientFromRepulsionOp<CPUDevice, T, true>);
TSNE_OPS_REGISTER_CPU(float)
TSNE_OPS_REGISTER_CPU(double)
#undef TSNE_OPS_REGISTER_CPU
REGISTER_KERNEL_BUILDER(Name("TSNE>SparseCsr").Device(tensorflow::DEVICE_CPU),
                        SparseCsrOp<CPUDevice>);

#ifdef TSNE_OPS_WITH_CUDA
#define TSNE_OPS_REGISTER_GPU(T)                                                           \
  REGISTER_KERNEL_BUILDER(Name("TSNE>KnnJointProbabilities")                               \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("indices")                                       \
                              .HostMemory("p_dense_shape"),                                \
                          KnnJointProbabilitiesOp<GPUDevice, T>);                          \
  REGISTER_KERNEL_BUILDER(Name("TSNE>SparseTsneGradient")                                  \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("p_indices")                                     \
                              .HostMemory("p_dense_shape")                                 \
                              .HostMemory("exaggeration")                                  \
                              .HostMemory("dof"),                                          \
                          SparseTsneGradientOp<GPUDevice, T, false>);                      \
  REGISTER_KERNEL_BUILDER(Name("TSNE>SparseTsneLoss")                                      \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("p_indices")                                     \
                              .HostMemory("p_dense_shape")                                 \
                              .HostMemory("dof"),                                          \
                          SparseTsneGradientOp<GPUDevice, T, true>);                       \
  REGISTER_KERNEL_BUILDER(Name("TSNE>SparseTsneGradientFromRepulsion")                     \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("p_indices")                                     \
                              .HostMemory("p_dense_shape")                                 \
                              .HostMemory("exaggeration")                                  \
                              .HostMemory("dof"),                                          \
                          TsneGradientFromRepulsionOp<GPUDevice, T, false>);               \
  REGISTER_KERNEL_BUILDER(Name("TSNE>CsrTsneGradientFromRepulsion")                        \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("exaggeration")                                  \
                              .HostMemory("dof"),                                          \
                          TsneGradientFromRepulsionOp<GPUDevice, T, true>);
TSNE_OPS_REGISTER_GPU(float)
TSNE_OPS_REGISTER_GPU(double)
#undef TSNE_OPS_REGISTER_GPU
// The CSR is built on the host from host indices and lives on the device.
REGISTER_KERNEL_BUILDER(Name("TSNE>SparseCsr")
                            .Device(tensorflow::DEVICE_GPU)
                            .HostMemory("p_indices")
                            .HostMemory("p_dense_shape"),
                        SparseCsrOp<GPUDevice>);
#endif

}  // namespace tsne_ops
