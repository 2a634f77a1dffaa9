// CPU spreading and gathering for the FFT interpolation repulsion (contract
// and determinism argument in fft_interpolation.h). O(n p^d c) each, memory
// bound and small next to the attraction, so compiled once (no ISA split).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cc/compute/fft_interpolation.h"
#include "cc/compute/validation.h"

namespace tsne_ops {
namespace kernels {

template <typename T>
std::string CheckFftGrid(const T* y, const T* origin, const T* box_width, int64_t batch,
                         int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p) {
  std::string msg = CheckFftSizes(d, p, n_charges, n_boxes);
  if (!msg.empty()) return msg;
  for (int64_t b = 0; b < batch; ++b) {
    const double h = static_cast<double>(box_width[b]);
    if (!(h > 0) || !std::isfinite(h)) {
      return "box_width must be finite and > 0, but box_width[" + std::to_string(b) +
             "] = " + std::to_string(h);
    }
    for (int64_t k = 0; k < d; ++k) {
      if (!std::isfinite(static_cast<double>(origin[b * d + k]))) {
        return "origin must be finite, but origin[" + std::to_string(b) + ", " +
               std::to_string(k) + "] = " + std::to_string(static_cast<double>(origin[b * d + k]));
      }
    }
    const double side = h * static_cast<double>(n_boxes);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < d; ++k) {
        const double v = static_cast<double>(y[(b * n + i) * d + k]);
        const double s = (v - static_cast<double>(origin[b * d + k])) / side;
        if (!(s >= -1e-6 && s <= 1.0 + 1e-6)) {
          return "y must lie inside the grid [origin, origin + n_boxes * box_width], but y[" +
                 std::to_string(b) + ", " + std::to_string(i) + ", " + std::to_string(k) +
                 "] = " + std::to_string(v);
        }
      }
    }
  }
  return "";
}

template <typename T>
void FftSpreadCpu(const T* y, const T* charges, const T* origin, const T* box_width,
                  int64_t batch, int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p,
                  T* grid, const ParallelFor& parallel_for) {
  const int64_t m = n_boxes * p;
  const int64_t rows = m - p + 1;             // stencil first rows 0..m-p
  const int64_t row_nodes = d == 2 ? m : 1;   // nodes per grid row
  const int64_t plane = row_nodes * m;        // nodes per charge
  // Counting sort of the points by (batch, first stencil row along
  // y[..., 0]), stable: a unit's points come in index order.
  std::vector<int64_t> start(batch * rows + 1, 0), order(batch * n);
  std::vector<int64_t> row_of(batch * n);
  for (int64_t b = 0; b < batch; ++b) {
    // The same expression as in the unit below, so a point's row agrees.
    const double spacing = static_cast<double>(box_width[b]) / p;
    for (int64_t i = 0; i < n; ++i) {
      const double s = (static_cast<double>(y[(b * n + i) * d]) - origin[b * d]) / spacing;
      row_of[b * n + i] = b * rows + FftStencilFirst(s, m, p);
      ++start[row_of[b * n + i] + 1];
    }
  }
  for (int64_t u = 0; u < batch * rows; ++u) start[u + 1] += start[u];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < batch * n; ++e) order[fill[row_of[e]]++] = e;
  }
  // Sums in double; unit r (one batch element's first row) adds into rows
  // [r, r + p), so units of one pass (r = pass mod p) never share a node.
  std::vector<double> acc(batch * n_charges * plane, 0.0);
  const int64_t per_pass = (rows + p - 1) / p;
  for (int pass = 0; pass < p; ++pass) {
    parallel_for(batch * per_pass, 64 * p * p * n_charges * std::max<int64_t>(1, n / rows),
                 [&](int64_t begin, int64_t end) {
      double ux[kFftMaxNodes], uy[kFftMaxNodes];
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t b = unit / per_pass;
        const int64_t r = (unit % per_pass) * p + pass;
        if (r >= rows) continue;
        const double spacing = static_cast<double>(box_width[b]) / p;
        for (int64_t e = start[b * rows + r]; e < start[b * rows + r + 1]; ++e) {
          const int64_t pt = order[e];
          const T* yp = y + pt * d;
          const T* q = charges + pt * n_charges;
          FftStencil((static_cast<double>(yp[0]) - origin[b * d]) / spacing, m, p, ux);
          if (d == 1) {
            for (int64_t c = 0; c < n_charges; ++c) {
              double* out = acc.data() + (b * n_charges + c) * plane + r;
              for (int l = 0; l < p; ++l) out[l] += ux[l] * static_cast<double>(q[c]);
            }
          } else {
            const int64_t cy = FftStencil(
                (static_cast<double>(yp[1]) - origin[b * d + 1]) / spacing, m, p, uy);
            for (int64_t c = 0; c < n_charges; ++c) {
              const double qc = static_cast<double>(q[c]);
              for (int lx = 0; lx < p; ++lx) {
                double* row = acc.data() + (b * n_charges + c) * plane + (r + lx) * m + cy;
                const double a = ux[lx] * qc;
                for (int ly = 0; ly < p; ++ly) row[ly] += a * uy[ly];
              }
            }
          }
        }
      }
    });
  }
  const int64_t total = batch * n_charges * plane;
  parallel_for(total, 2, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) grid[g] = static_cast<T>(acc[g]);
  });
}

template <typename T>
void FftGatherCpu(const T* y, const T* potentials, const T* origin, const T* box_width,
                  int64_t batch, int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p,
                  T* phi, const ParallelFor& parallel_for) {
  const int64_t m = n_boxes * p;
  const int64_t row_nodes = d == 2 ? m : 1;
  const int64_t plane = row_nodes * m;
  parallel_for(batch * n, 8 * p * p * n_charges, [&](int64_t begin, int64_t end) {
    double wx[kFftMaxNodes], wy[kFftMaxNodes] = {1.0};
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / n;
      const double spacing = static_cast<double>(box_width[b]) / p;
      const T* yp = y + u * d;
      const int64_t cx =
          FftStencil((static_cast<double>(yp[0]) - origin[b * d]) / spacing, m, p, wx);
      int64_t cy = 0;
      int py = 1;
      if (d == 2) {
        cy = FftStencil((static_cast<double>(yp[1]) - origin[b * d + 1]) / spacing, m, p, wy);
        py = p;
      }
      for (int64_t c = 0; c < n_charges; ++c) {
        const T* v = potentials + (b * n_charges + c) * plane;
        double s = 0;
        for (int lx = 0; lx < p; ++lx) {
          const T* row = v + (cx + lx) * row_nodes + cy;
          double r = 0;
          for (int ly = 0; ly < py; ++ly) r += wy[ly] * static_cast<double>(row[ly]);
          s += wx[lx] * r;
        }
        phi[u * n_charges + c] = static_cast<T>(s);
      }
    }
  });
}

#define TSNE_OPS_INSTANTIATE(T)                                                              \
  template std::string CheckFftGrid<T>(const T*, const T*, const T*, int64_t, int64_t,       \
                                       int64_t, int64_t, int64_t, int);                      \
  template void FftSpreadCpu<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                int64_t, int64_t, int64_t, int, T*, const ParallelFor&);     \
  template void FftGatherCpu<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                int64_t, int64_t, int64_t, int, T*, const ParallelFor&);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
