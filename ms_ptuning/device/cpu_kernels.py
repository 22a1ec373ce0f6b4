"""ms_ptuning's CPU kernels: `cpu_kernels.cc`, compiled once per machine, run as MindSpore `Custom` ops of type
"aot" (compiled C++ kernels on the CPU device; no Python runs in the graph).

Why: MindSpore 2.7's CPU kernels for int32 add, multiply and shift take 3–4 ns per element (bitwise xor/and of
equal shapes 0.5 ns), and its erf GELU is a chain of ~6 elementwise kernels each way. So the CPU's choice
(`kernels.device_kernels()` False) computes
- the dropout masks (`masks_op`): `layers.keep_masks`' composed hash was ~25 kernels over every unit, a third
  of a BERT-base train step, and kept ~1.3 GB of temporaries; the kernel computes the same bits in one pass
  (tests/test_dropout.py compares them);
- GELU, erf and tanh forms, forward and backward (`activation_ops`), within ~4e-7 of the exact functions (the erf
  forward 1.2e-6, as close as torch's own), and
  of a linear layer's product plus its bias (`bias_activation_ops`), the BiasAdd and its gradient's sum folded in;
- LayerNorm forward and backward (`layer_norm_ops`), one pass over the rows each way instead of ~14 and ~25
  kernels with explicit broadcasts;
- attention's softmax(scores · scale + mask) forward and backward (`softmax_ops`), one pass each instead of 3
  and 6 kernels;
- BERT's output blocks, LayerNorm((product + bias) · dropout mask + residual), forward and backward
  (`residual_layer_norm_ops`), one pass each instead of 4 and 3 kernels;
- outside training, the linear layers' products, bias included (`matmul_ops`): oneDNN's sgemm, the GEMM
  MindSpore's MatMul runs, one band of the output per thread instead of MindSpore's spinning thread pool;
- BERT's and RoBERTa's attention (`attention_ops`): softmax(q kᵀ · scale + mask) · dropout mask · v of every
  head in one kernel each way over the projections' rows, instead of ~11 kernels forward and ~10 backward
  splitting, stacking, concatenating and merging heads around two batched products, the softmax and dropout.
Row sums (LayerNorm, softmax) are taken in 16 interleaved partial sums added in a fixed order, so they vectorize.
Ascend and GPU compute the composed forms, which their kernels run natively.

Built with `$CXX` (default g++) into `$MS_PTUNING_CACHE` (default ~/.cache/ms_ptuning)/cpu_kernels, named by
the source's and flags' hash, written atomically (concurrent msrun workers). Without a compiler or a writable
cache the composed forms run instead, with one warning: the same masks, the rest within float rounding, slower.
"""

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_kernels.cc")
# -ffp-contract=off: no fused multiply-adds, so the AVX-512, AVX2 and baseline builds of each function
# (target_clones) compute the same float operations; -fno-trapping-math lets GCC vectorize the selects
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-trapping-math")
ACTIVATIONS = {"gelu": ("Gelu", "GeluGrad"), "gelu_tanh": ("GeluTanh", "GeluTanhGrad")}
BIAS_ACTIVATIONS = {"gelu": ("BiasGelu", "BiasGeluGrad"), "gelu_tanh": ("BiasGeluTanh", "BiasGeluTanhGrad")}


def cache_dir() -> str:
    return os.path.join(os.environ.get("MS_PTUNING_CACHE", os.path.expanduser("~/.cache/ms_ptuning")), "cpu_kernels")


@functools.lru_cache(maxsize=1)
def library() -> str | None:
    """Path of the compiled kernel library, built on first use; None (and one warning) if it cannot be built."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    with open(SOURCE, "rb") as handle:
        digest = hashlib.sha256(handle.read() + " ".join(FLAGS).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"cpu_kernels-{digest}.so")
    if os.path.exists(path):
        return path
    if compiler is None:
        warnings.warn(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) found: on CPU the dropout masks, GELU, "
                      "LayerNorm and softmax run as compositions of MindSpore kernels (the same results, several "
                      "times slower); install g++ or set CXX")
        return None
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=cache_dir())
    except OSError as error:
        warnings.warn(f"cannot write the CPU kernels to {cache_dir()} ({error}): on CPU they run as compositions of "
                      "MindSpore kernels (the same results, slower); set MS_PTUNING_CACHE to a writable directory")
        return None
    os.close(handle)
    result = subprocess.run([compiler, *FLAGS, "-o", partial, SOURCE], capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(partial)
        warnings.warn(f"{compiler} could not build {SOURCE}: on CPU the dropout masks, GELU, LayerNorm and softmax "
                      f"run as compositions of MindSpore kernels (the same results, slower):\n{result.stderr[-2000:]}")
        return None
    os.replace(partial, path)
    return path


def available() -> bool:
    return library() is not None


def function_name(function: str) -> str:
    """What a Custom op of `function` records as its func_name (`audit.py` recognises the CPU kernels by it)."""
    return f"{library()}:{function}"


@functools.lru_cache(maxsize=256)
def masks_op(count: int, shape: tuple, dtype):
    """The Custom op computing `count` dropout masks of `shape` and `dtype`:
    (key (3,), site factors (count, 3), threshold (1,), scale (1,) in dtype) → count masks."""
    from mindspore import ops

    # one output as a bare shape and dtype: MindSpore reads a one-shape tuple ((2, 1),) as something else
    out_shape, out_dtype = (shape, dtype) if count == 1 else ((shape,) * count, (dtype,) * count)
    op = ops.Custom(function_name("DropoutMasks"), out_shape=out_shape, out_dtype=out_dtype, func_type="aot")
    # PyNative caches a Custom op's output shape by its inputs' signature, which is the same for masks of
    # other shapes: the shape as an attribute tells them apart
    op.add_prim_attr("mask_shape", tuple(shape))
    op.add_prim_attr("mask_count", count)
    return op


def _aot(function: str, outputs=lambda first, *rest: first):
    """The Custom op running `function` of the library; `outputs` picks the outputs' shapes and dtypes from the
    inputs' (default: one output like the first input)."""
    from mindspore import ops

    return ops.Custom(function_name(function), out_shape=outputs, out_dtype=outputs, func_type="aot")


@functools.lru_cache(maxsize=None)
def activation_ops(name: str) -> tuple:
    """(forward x → y, backward (x, dy) → dx) Custom ops of activation `name` ("gelu" or "gelu_tanh"), float32."""
    forward, backward = ACTIVATIONS[name]
    return _aot(forward), _aot(backward)


@functools.lru_cache(maxsize=None)
def bias_activation_ops(name: str) -> tuple:
    """(forward (a, bias) → activation(a + bias), backward (a, bias, dy) → (da, dbias)) Custom ops of activation
    `name` ("gelu" or "gelu_tanh") over the last axis, float32."""
    forward, backward = BIAS_ACTIVATIONS[name]
    return _aot(forward), _aot(backward, lambda a, bias, dy: (a, bias))


@functools.lru_cache(maxsize=None)
def layer_norm_ops() -> tuple:
    """(forward (x, weight, bias, eps (1,)) → y, backward (x, weight, dy, eps (1,)) → (dx, dweight, dbias)) Custom
    ops of LayerNorm over the last axis, float32."""
    return _aot("LayerNorm"), _aot("LayerNormGrad", lambda x, weight, dy, eps: (x, weight, weight))


@functools.lru_cache(maxsize=None)
def softmax_ops() -> tuple:
    """(forward (scores, mask, scale (1,)) → softmax(scores · scale + mask), backward (probs, dprobs, scale (1,))
    → dscores) Custom ops over the last axis, float32."""
    return _aot("ScaledMaskedSoftmax"), _aot("ScaledSoftmaxGrad")


@functools.lru_cache(maxsize=None)
def residual_layer_norm_ops() -> tuple:
    """(forward (a, bias, [mask], residual, weight, beta, eps (1,)) → (LayerNorm(h), h = (a + bias) · mask +
    residual), backward (h, [mask], weight, dy, eps (1,)) → (da, dbias, dresidual, dweight, dbeta)) Custom ops over
    the last axis, float32; without the mask where dropout is off."""
    return (_aot("ResidualLayerNorm", lambda a, *rest: (a, a)),
            _aot("ResidualLayerNormGrad", lambda h, *rest: (h, rest[-3], h, rest[-3], rest[-3])))


@functools.lru_cache(maxsize=1)
def onednn_sgemm_found() -> bool:
    """Whether MindSpore's oneDNN library (mindspore/lib/libdnnl.so.2, which its CPU MatMul runs) exports
    dnnl_sgemm, which the MatMul kernels call."""
    import ctypes

    import mindspore

    path = os.path.join(os.path.dirname(mindspore.__file__), "lib", "libdnnl.so.2")
    try:
        return hasattr(ctypes.CDLL(path), "dnnl_sgemm")
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def matmul_ops() -> dict:
    """{"NT": (a (M, K), b (N, K)[, bias (N)]) → a · bᵀ (+ bias), "NN": (a (M, K), b (K, N)[, bias]) → a · b
    (+ bias), "TN": (a (K, M), b (K, N)) → aᵀ · b, "column_sums": (R…, N) → (N,)} Custom ops, float32."""
    from mindspore import ops

    shapes = {"NT": lambda a, b, *bias: [a[0], b[0]], "NN": lambda a, b, *bias: [a[0], b[1]],
              "TN": lambda a, b: [a[1], b[1]], "column_sums": lambda dy: [dy[-1]]}
    functions = {"NT": "MatMulNT", "NN": "MatMulNN", "TN": "MatMulTN", "column_sums": "ColumnSums"}
    return {name: ops.Custom(function_name(functions[name]), out_shape=shape,
                             out_dtype=lambda first, *rest: first, func_type="aot")
            for name, shape in shapes.items()}


@functools.lru_cache(maxsize=None)
def attention_ops(prefixed: bool) -> tuple:
    """(eval, train, backward) Custom ops of attention over the projections' rows, float32, with (`prefixed`) or
    without a layer's prefix keys and values [pk, pv] (B, heads, P, d):
    eval (q (B·T, H), k, v (B·Tk, H), [pk, pv], mask (B, heads, T, P + Tk), scale (1,)) → context (B·T, H);
    train (q, k, v, [pk, pv], mask, dropout mask like mask, scale) → (context, probs before dropout);
    backward (q, k, v, [pk, pv], probs, dropout mask, dcontext, scale) → (dq, dk, dv, [dpk, dpv])."""
    from mindspore import ops

    name = "PrefixAttention" if prefixed else "Attention"
    gradients = (lambda q, k, v, pk, pv, *rest: (q, k, v, pk, pv)) if prefixed else (lambda q, k, v, *rest: (q, k, v))
    return (_aot(name),
            _aot(f"{name}Dropout", lambda q, *rest: (q, rest[-2])),
            _aot(f"{name}Grad", gradients))
