// The 1:N similarity kernel on libtorch: evaluateIdentification/searchTopK hand it one probe block
// and one gallery chunk at a time, so each call is a single (block x D) @ (D x chunk) matmul.
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import type { MatmulFunction } from './identification.js';

/** a (aRows x dim) times b (bRows x dim) transposed with libtorch (float32, multithreaded BLAS). */
export const torchMatmul: MatmulFunction = (a, aRows, b, bRows, dim) => {
  if (a.length < aRows * dim || b.length < bRows * dim) {
    throw new RangeError(`torchMatmul: inputs hold ${a.length} and ${b.length} values, ${aRows}x${dim} and ${bRows}x${dim} need ${aRows * dim} and ${bRows * dim}`);
  }
  return tidy(() => {
    const left = F.fromTypedArray(a.subarray(0, aRows * dim), [aRows, dim]);
    const right = F.fromTypedArray(b.subarray(0, bRows * dim), [bRows, dim]);
    return F.mm(left, right.t()).dataSync() as Float32Array;
  });
};
