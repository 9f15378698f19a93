#include <immintrin.h>

#include "kernels/gelu.h"

namespace onnxq::kernels {
namespace {

// exp(a) for a <= ~0: a = n ln2 + r (Cody-Waite split of ln 2), exp(r) by its Taylor series to r^7 (|r| <= ln2/2:
// truncation < 6e-9 relative), then scaled by 2^n. a is clamped below so nothing turns into NaN.
inline __m512 ExpNonPositive(__m512 a) {
  a = _mm512_max_ps(a, _mm512_set1_ps(-110.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), a);  // ln2 high part (exact product with n)
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);      // ln2 low part
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __m512 Gelu16(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.707106781f));
  // |z| capped where erfc underflows (erfc(10.5) < the smallest float): inf stays finite, NaN is carried by x
  const __m512 u = _mm512_min_ps(_mm512_abs_ps(z), _mm512_set1_ps(10.5f));
  const __m512 d = _mm512_fmadd_ps(u, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
  const __m512 t0 = _mm512_rcp14_ps(d);
  const __m512 t = _mm512_fmadd_ps(t0, _mm512_fnmadd_ps(d, t0, _mm512_set1_ps(1.0f)), t0);  // one Newton step
  __m512 p = _mm512_set1_ps(0.14878999f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.7018431f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.2061648f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.7619844f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.02598934f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.027517533f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.04436502f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.38460565f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.9988685f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.2654595f));
  const __m512 erfc = _mm512_mul_ps(t, ExpNonPositive(_mm512_fnmadd_ps(u, u, p)));  // erfc(|z|)
  // 1 + erf(z): 2 - erfc(|z|) for z >= 0, erfc(|z|) below
  const __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one_plus_erf = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), erfc), erfc);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), one_plus_erf);
}

}  // namespace

void GeluAvx512(const float* x, size_t n, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, Gelu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, Gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace onnxq::kernels
