// Input validation for every front end of the kernels, framework free.
//
// Each check returns an empty string when the input is fine, or a message
// that names the argument and the value it was given ("dof must be a finite
// number > 0, but is -0.5"). The op library turns a message into
// absl::InvalidArgumentError (cc/tf_ops/op_utils.h: CheckMessage), the pybind11
// module into ValueError (python/binding_helpers.h: CheckMessage), so that
// both say the same thing in the same words.
//
// Shapes are passed as they are ([n, k] for a batch of one, or [batch, n, k]);
// a check reads the last two dimensions, and quotes the whole shape as
// "[2,5,3]" (TensorFlow's TensorShape::DebugString format).
#ifndef TSNE_OPS_CC_COMPUTE_VALIDATION_H_
#define TSNE_OPS_CC_COMPUTE_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/common.h"

namespace tsne_ops {
namespace kernels {

using Shape = std::vector<int64_t>;

// "[2,5,3]".
std::string ShapeString(const Shape& shape);
// %g with six significant digits ("5", "-0.5", "1e-05"); "nan", "inf", "-inf".
std::string NumberString(double value);

// ---------------------------------------------------------------- values ---

// Scans the whole array (sharded over `parallel_for` when given one) and
// names the first offending element: "x must be finite, but x[0, 3, 1] = nan".
template <typename T>
std::string CheckAllFinite(const T* data, const Shape& shape, const char* name,
                           const ParallelFor* parallel_for = nullptr);
// Finite and >= 0 (distances, affinities).
template <typename T>
std::string CheckNonNegativeFinite(const T* data, const Shape& shape, const char* name,
                                   const ParallelFor* parallel_for = nullptr);

// Finite inputs can still overflow |x - y|^2 (float32 data near 1e19): names
// the first pair of points whose squared distance in `d` [batch, n, m] is not
// finite. `cross`: the distances are between x and y, not x and x.
template <typename T>
std::string CheckDistancesFinite(const T* d, int64_t batch, int64_t n, int64_t m, bool cross);

// ---------------------------------------------------------------- scalars --

// "NAME must be a finite number > 0, but is V" (dof, exaggeration, tolerance).
std::string CheckPositiveFinite(double value, const char* name);
// "NAME must be >= MIN, but is V" (max_iter, sizes of the raw-pointer API).
std::string CheckAtLeast(int64_t value, int64_t min, const char* name);
// perplexity in (0, n - 1).
std::string CheckPerplexity(double perplexity, int64_t n);
// The perplexity search's tolerance (> 0, finite) and max_iter (>= 1).
std::string CheckPerplexitySearch(double tolerance, int64_t max_iter);

// ----------------------------------------------------------------- shapes --

// Exactly `rank` dimensions: "NAME must be rank 3 LAYOUT, but has shape S".
std::string CheckRank(const Shape& shape, int rank, const char* name, const char* layout);
// Rank 2 (a batch of one) or 3: "NAME must be rank 2 [n, k] or rank 3
// [batch, n, k], but has shape S" with `layout` = "[n, k]".
std::string CheckRank2Or3(const Shape& shape, const char* name, const char* layout);
// The shape `expected`: "NAME must have shape E, but has shape S".
std::string CheckShapeIs(const Shape& shape, const Shape& expected, const char* name);

// Points [.., n, dim]: dim >= 1 and at least `min_points` points.
std::string CheckPoints(const Shape& shape, const char* name, int64_t min_points);
// Two point sets paired batch by batch: the same rank, batch size and dim.
std::string CheckSameBatchAndDim(const Shape& x, const char* x_name, const Shape& y,
                                 const char* y_name);
// A self-distance or affinity matrix [.., n, n] with n >= 2.
std::string CheckSquare(const Shape& shape, const char* name);
// p [.., n, n] and the embedding y [.., n, d] of the t-SNE gradient and loss:
// the same rank and batch size, n >= 2, d >= 1.
std::string CheckGradientShapes(const Shape& p, const Shape& y);

// The kNN graph of the sparse P: indices and sq_distances [.., n, k] of the
// same shape, n >= 2, 1 <= k <= n - 1 (the index values: CheckKnnIndices).
std::string CheckKnnShapes(const Shape& indices, const Shape& sq_distances);
// perplexity in (0, k) for k neighbours.
std::string CheckKnnPerplexity(double perplexity, int64_t k);

// ------------------------------------------------ exact nearest neighbours --

// The points of nearest_neighbors (rank checked by the front end: the op
// takes [batch, n, dim], the module also [n, dim]): x with dim >= 1 and at
// least 2 points (1 with `y`), y (may be null) with dim >= 1 and one point,
// paired with x batch by batch.
std::string CheckNearestNeighborsShapes(const Shape& x, const Shape* y);
// 1 <= k <= n - 1 (`self`: the neighbours of x among its own n points) or
// 1 <= k <= m (among the m points of y).
std::string CheckNearestNeighborsK(int64_t k, int64_t n, int64_t m, bool self);

// ---------------------------------------------------- FFT interpolation ----

// y [batch, n, d] with d = 1 or 2, origin [batch, d], box_width [batch].
std::string CheckFftShapes(const Shape& y, const Shape& origin, const Shape& box_width);
// The spread's charges [batch, n, c], paired with y [batch, n, d].
std::string CheckFftCharges(const Shape& charges, const Shape& y);
// n_boxes >= 1, and at most 2^31 grid nodes (n_boxes p per dimension).
std::string CheckFftBoxes(int64_t n_boxes, int p, int64_t d);
// The gather's potentials [batch, c, m] (d = 1) or [batch, c, m, m] (d = 2)
// with m a multiple of p, for y [batch, n, d]; p in [1, kFftMaxNodes].
std::string CheckFftPotentials(const Shape& potentials, const Shape& y, int p);
// The sizes the kernels take: d in {1, 2}, 1 <= p <= 8 nodes per box,
// 1 <= c <= 8 charges, n_boxes >= 1 (cc/compute/fft_interpolation.h's
// kFftMaxNodes and kFftMaxCharges; CheckFftGrid also checks the values).
std::string CheckFftSizes(int64_t d, int p, int64_t n_charges, int64_t n_boxes);

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_VALIDATION_H_
