// The one pybind11 file: numpy arrays in and out. Every argument is checked here (dtype, ndim,
// shape, contiguity, writability) and a mistake raises TypeError or ValueError naming what was
// expected and what was received. Inputs that are not C-contiguous are copied once; outputs are
// never silently copied: an `out` array must already be right. The GIL is released around kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "conv.h"
#include "cpu_features.h"
#include "dispatch.h"
#include "engine.h"
#include "gemm.h"
#include "ops.h"
#include "peak.h"
#include "pool.h"
#include "thread_pool.h"

namespace py = pybind11;
using namespace nncore;

namespace {

std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    if (a.ndim() == 1) s << ",";
    s << ")";
    return s.str();
}

std::string shape_str(const std::vector<py::ssize_t>& shape) {
    std::ostringstream s;
    s << "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) s << ",";
    s << ")";
    return s.str();
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

enum class Float { f32, f64 };

// Accepts anything numpy can turn into an array, then insists on float32 or float64.
py::array as_array(const py::handle& obj, const char* op, const char* name) {
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(std::string(op) + ": " + name + " must be an array, got " + py::str(py::type::of(obj)).cast<std::string>());
    return a;
}

// numpy's equality of dtypes, not identity: an array that was pickled, made by ctypes or viewed
// with a rebuilt dtype carries an equal dtype object that is not numpy's own float32 instance.
bool same_dtype(const py::dtype& a, const py::dtype& b) {
    return a.is(b) || py::detail::npy_api::get().PyArray_EquivTypes_(a.ptr(), b.ptr());
}

Float float_kind(const py::array& a, const char* op, const char* name) {
    if (same_dtype(a.dtype(), py::dtype::of<float>())) return Float::f32;
    if (same_dtype(a.dtype(), py::dtype::of<double>())) return Float::f64;
    throw py::type_error(std::string(op) + ": expected " + name + " of dtype float32 or float64, got " + dtype_str(a));
}

void require_same_dtype(const py::array& a, const py::array& b, const char* op, const char* name_a, const char* name_b) {
    if (!same_dtype(a.dtype(), b.dtype()))
        throw py::type_error(std::string(op) + ": " + name_a + " and " + name_b + " must have the same dtype, got " +
                             dtype_str(a) + " and " + dtype_str(b));
}

void require_ndim(const py::array& a, py::ssize_t ndim, const char* op, const char* name) {
    if (a.ndim() != ndim)
        throw py::value_error(std::string(op) + ": expected " + name + " with " + std::to_string(ndim) +
                              " dimensions, got shape " + shape_str(a));
}

void require_same_shape(const py::array& a, const py::array& b, const char* op, const char* name_a, const char* name_b) {
    bool same = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
    if (!same)
        throw py::value_error(std::string(op) + ": " + name_a + " and " + name_b + " must have the same shape, got " +
                              shape_str(a) + " and " + shape_str(b));
}

// A C-contiguous view of an input, copying only when the layout requires it.
template <class T>
py::array_t<T, py::array::c_style> contiguous(const py::handle& a) {
    return py::array_t<T, py::array::c_style>::ensure(a);
}

bool overlaps(const py::array& a, const py::array& b) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return false;
    // Conservative byte ranges covering every element, for any strides.
    auto range = [](const py::array& x) {
        auto lo = reinterpret_cast<std::uintptr_t>(x.data()), hi = lo;
        for (py::ssize_t i = 0; i < x.ndim(); ++i) {
            const py::ssize_t extent = (x.shape(i) - 1) * x.strides(i);
            if (extent < 0) lo += extent; else hi += extent;
        }
        return std::make_pair(lo, hi + x.itemsize());
    };
    auto ra = range(a), rb = range(b);
    return ra.first < rb.second && rb.first < ra.second;
}

// Results of at least kCachedMinBytes live in blocks that are recycled when their array is freed,
// instead of going back to the system allocator: glibc hands such sizes to mmap or trims them off
// the heap, so every training step's activations and gradients of a CNN were fresh pages, each
// zeroed by the kernel on first touch (measured in this VM: ~780 page faults and ~2 ms for one
// 3.2 MB ReLU output of LeNet at batch 64, against ~0.15 ms for the computation itself). Blocks are
// kept per exact size, at most kCachedMaxBytes in all (the most recently freed win); the arrays are
// ordinary numpy arrays whose base object gives the block back.
class BlockCache {
public:
    static constexpr std::size_t kCachedMinBytes = std::size_t(256) << 10;
    static constexpr std::size_t kCachedMaxBytes = std::size_t(64) << 20;
    static constexpr std::size_t kHeader = 64;  // the block's size, kept in front of the data (aligned)

    void* take(std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto found = free_.find(bytes);
            if (found != free_.end() && !found->second.empty()) {
                void* data = found->second.back();
                found->second.pop_back();
                cached_ -= bytes;
                return data;
            }
        }
        char* block = static_cast<char*>(std::aligned_alloc(64, (kHeader + bytes + 63) / 64 * 64));
        if (block == nullptr) throw std::bad_alloc();
        *reinterpret_cast<std::size_t*>(block) = bytes;
        return block + kHeader;
    }

    // Keeps the block for its size; when that would pass kCachedMaxBytes, blocks of other sizes
    // (or older ones of this size) are released first, so the sizes in use now stay cached.
    void give(void* data) {
        const std::size_t bytes = *reinterpret_cast<std::size_t*>(static_cast<char*>(data) - kHeader);
        if (bytes > kCachedMaxBytes) {
            std::free(static_cast<char*>(data) - kHeader);
            return;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto entry = free_.begin(); cached_ + bytes > kCachedMaxBytes && entry != free_.end();) {
            if (entry->first == bytes || entry->second.empty()) {
                ++entry;
                continue;
            }
            std::free(static_cast<char*>(entry->second.back()) - kHeader);
            entry->second.pop_back();
            cached_ -= entry->first;
        }
        auto& same = free_[bytes];
        while (cached_ + bytes > kCachedMaxBytes && !same.empty()) {
            std::free(static_cast<char*>(same.front()) - kHeader);
            same.erase(same.begin());
            cached_ -= bytes;
        }
        same.push_back(data);
        cached_ += bytes;
    }

private:
    std::mutex mutex_;
    std::unordered_map<std::size_t, std::vector<void*>> free_;
    std::size_t cached_ = 0;
};

// Never destroyed: arrays may be freed during interpreter shutdown, after static destructors.
BlockCache& block_cache() {
    static BlockCache* cache = new BlockCache();
    return *cache;
}

// Releases the GIL for the native work of a call (in elements, or multiply-adds) when there is
// more than kHoldGilMaxWork of it. Releasing and retaking the GIL costs ~0.1-0.3 us (Intel Xeon,
// KVM, medians): Sequential.predict of one MNIST-MLP sample 7.7-7.8 -> 7.3-7.5 us, tanh and exp of
// 1024 floats 0.65 -> 0.58 and 0.45 -> 0.38 us. Work below the limit takes at most some tens of
// microseconds (elementwise) or ~2 us (products), far below the 5 ms for which the interpreter
// itself lets one thread keep the GIL. (The pool's workers never need the GIL.)
class ReleaseGilFor {
public:
    static constexpr double kHoldGilMaxWork = 1 << 18;
    explicit ReleaseGilFor(double work) {
        if (work > kHoldGilMaxWork) release_.emplace();
    }

private:
    std::optional<py::gil_scoped_release> release_;
};

// A new C-contiguous array (contents undefined) of the given shape.
template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
    std::size_t bytes = sizeof(T);
    for (py::ssize_t extent : shape) bytes *= static_cast<std::size_t>(extent);
    if (bytes < BlockCache::kCachedMinBytes) return py::array_t<T>(shape);
    void* data = block_cache().take(bytes);
    py::capsule owner(data, [](void* p) { block_cache().give(p); });
    return py::array_t<T>(shape, static_cast<T*>(data), owner);
}

// Returns `out` when given (after checking it is exactly what the kernel will write), or a new
// array of the given shape.
template <class T>
py::array_t<T> output_array(const py::object& out, const std::vector<py::ssize_t>& shape, const char* op,
                            std::initializer_list<const py::array*> inputs_that_must_not_overlap = {}) {
    if (out.is_none()) return new_array<T>(shape);
    if (!py::isinstance<py::array>(out))
        throw py::type_error(std::string(op) + ": out must be a numpy array, got " + py::str(py::type::of(out)).cast<std::string>());
    py::array o = py::reinterpret_borrow<py::array>(out);
    if (!same_dtype(o.dtype(), py::dtype::of<T>()))
        throw py::type_error(std::string(op) + ": out must have dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
                             ", got " + dtype_str(o));
    bool same = o.ndim() == static_cast<py::ssize_t>(shape.size());
    for (py::ssize_t i = 0; same && i < o.ndim(); ++i) same = o.shape(i) == shape[i];
    if (!same)
        throw py::value_error(std::string(op) + ": out must have shape " + shape_str(shape) + ", got " + shape_str(o));
    if (!o.writeable()) throw py::value_error(std::string(op) + ": out is read-only");
    if (!(o.flags() & py::array::c_style))
        throw py::value_error(std::string(op) + ": out must be C-contiguous (it is written in place, so it is never copied)");
    for (const py::array* in : inputs_that_must_not_overlap)
        if (overlaps(o, *in)) throw py::value_error(std::string(op) + ": out must not share memory with the inputs");
    return py::reinterpret_borrow<py::array_t<T>>(o);
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()); }

// An `out` that partly overlaps the input would be read after it is written; a kernel may run
// in place (out is the input itself), but any other overlap gets a private copy of the input.
template <class T>
void separate_from_output(py::array_t<T, py::array::c_style>& input, const py::array& output) {
    if (overlaps(input, output) && input.data() != output.data())
        input = py::array_t<T, py::array::c_style>(py::array(input.dtype(), shape_of(input), input.data()));
}

Act parse_act(const std::string& name, const char* op) {
    if (name == "identity" || name == "linear" || name == "none") return Act::identity;
    if (name == "relu") return Act::relu;
    if (name == "leaky_relu") return Act::leaky_relu;
    if (name == "tanh") return Act::tanh;
    if (name == "sigmoid") return Act::sigmoid;
    if (name == "gelu") return Act::gelu;
    if (name == "gelu_tanh") return Act::gelu_tanh;
    throw py::value_error(std::string(op) + ": unknown activation '" + name +
                          "'; expected one of identity, relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh");
}

// Element strides of a 2-D array, or false when a stride is not a whole number of elements.
bool element_strides(const py::array& a, index_t* rs, index_t* cs) {
    const auto item = a.itemsize();
    if (a.strides(0) % item || a.strides(1) % item) return false;
    *rs = a.strides(0) / item;
    *cs = a.strides(1) / item;
    return true;
}

template <class T>
py::array matmul_impl(py::array a, py::array b, bool transpose_a, bool transpose_b, const py::object& out) {
    const char* op = "matmul";
    index_t rs_a, cs_a, rs_b, cs_b;
    if (!element_strides(a, &rs_a, &cs_a)) { a = contiguous<T>(a); element_strides(a, &rs_a, &cs_a); }
    if (!element_strides(b, &rs_b, &cs_b)) { b = contiguous<T>(b); element_strides(b, &rs_b, &cs_b); }
    index_t m = a.shape(0), k = a.shape(1), k2 = b.shape(0), n = b.shape(1);
    if (transpose_a) { std::swap(m, k); std::swap(rs_a, cs_a); }
    if (transpose_b) { std::swap(k2, n); std::swap(rs_b, cs_b); }
    if (k != k2) {
        std::ostringstream s;
        s << "matmul: inner dimensions differ: a" << (transpose_a ? ".T" : "") << " has shape (" << m << ", " << k
          << ") and b" << (transpose_b ? ".T" : "") << " has shape (" << k2 << ", " << n << ")";
        throw py::value_error(s.str());
    }
    auto c = output_array<T>(out, {m, n}, op, {&a, &b});
    const T* pa = static_cast<const T*>(a.data());
    const T* pb = static_cast<const T*>(b.data());
    T* pc = c.mutable_data();
    {
        ReleaseGilFor release(static_cast<double>(m) * n * k);
        gemm(active_table<T>(), m, n, k, ConstMatrix<T>{pa, rs_a, cs_a}, ConstMatrix<T>{pb, rs_b, cs_b}, pc, n,
             Epilogue<T>{}, get_num_threads());
    }
    return std::move(c);
}

// A flag argument: True/False or a numpy bool, nothing else (pybind11's bool would also take 1 or
// an object with __bool__). Checked here rather than in the Python wrapper, where the check cost
// ~0.5 us per call, a sixth of a small product's time.
bool flag_arg(const py::handle& h, const char* op, const char* name) {
    if (h.ptr() == Py_True) return true;
    if (h.ptr() == Py_False) return false;
    const std::string type_name = Py_TYPE(h.ptr())->tp_name;
    if (type_name == "numpy.bool_" || type_name == "numpy.bool") return PyObject_IsTrue(h.ptr()) == 1;
    throw py::type_error(std::string(op) + ": expected " + name + " to be a bool, got " +
                         py::type::of(h).attr("__name__").cast<std::string>());
}

py::array matmul(const py::object& a_obj, const py::object& b_obj, const py::handle& transpose_a_obj,
                 const py::handle& transpose_b_obj, const py::object& out) {
    const bool transpose_a = flag_arg(transpose_a_obj, "matmul", "transpose_a");
    const bool transpose_b = flag_arg(transpose_b_obj, "matmul", "transpose_b");
    py::array a = as_array(a_obj, "matmul", "a"), b = as_array(b_obj, "matmul", "b");
    const Float kind = float_kind(a, "matmul", "a");
    float_kind(b, "matmul", "b");
    require_same_dtype(a, b, "matmul", "a", "b");
    require_ndim(a, 2, "matmul", "a");
    require_ndim(b, 2, "matmul", "b");
    return kind == Float::f32 ? matmul_impl<float>(a, b, transpose_a, transpose_b, out)
                              : matmul_impl<double>(a, b, transpose_a, transpose_b, out);
}

// ------------------------------------------------------------------------------------------------
template <class T>
py::array linear_forward_impl(const py::array& x_in, const py::array& w_in, const py::object& bias_obj, Act act,
                              double alpha, const py::object& out) {
    const char* op = "linear";
    auto x = contiguous<T>(x_in);
    auto w = contiguous<T>(w_in);
    const index_t batch = x.shape(0), in = x.shape(1), n_out = w.shape(0);
    py::array_t<T, py::array::c_style> bias;  // only meaningful when has_bias
    const bool has_bias = !bias_obj.is_none();
    if (has_bias) {
        py::array b = as_array(bias_obj, op, "bias");
        float_kind(b, op, "bias");
        require_same_dtype(b, x_in, op, "bias", "x");
        if (b.ndim() != 1 || b.shape(0) != n_out)
            throw py::value_error(std::string(op) + ": expected bias of shape (" + std::to_string(n_out) + ",), got " + shape_str(b));
        bias = contiguous<T>(b);
    }
    auto y = output_array<T>(out, {batch, n_out}, op, {&x_in, &w_in, &bias});
    const T* pb = has_bias ? bias.data() : nullptr;
    const T *px = x.data(), *pw = w.data();
    T* py_ = y.mutable_data();
    {
        ReleaseGilFor release(static_cast<double>(batch) * in * n_out);
        linear_forward(active_table<T>(), batch, in, n_out, px, pw, pb, act, static_cast<T>(alpha), py_);
    }
    return std::move(y);
}

py::array linear_forward_py(const py::object& x_obj, const py::object& w_obj, const py::object& bias, const std::string& activation,
                            double alpha, const py::object& out) {
    const char* op = "linear";
    py::array x = as_array(x_obj, op, "x"), w = as_array(w_obj, op, "weights");
    const Float kind = float_kind(x, op, "x");
    float_kind(w, op, "weights");
    require_same_dtype(x, w, op, "x", "weights");
    require_ndim(x, 2, op, "x");
    require_ndim(w, 2, op, "weights");
    if (x.shape(1) != w.shape(1))
        throw py::value_error(std::string(op) + ": x has " + std::to_string(x.shape(1)) + " features per row (shape " +
                              shape_str(x) + ") but weights of shape " + shape_str(w) + " expect " + std::to_string(w.shape(1)));
    const Act act = parse_act(activation, op);
    return kind == Float::f32 ? linear_forward_impl<float>(x, w, bias, act, alpha, out)
                              : linear_forward_impl<double>(x, w, bias, act, alpha, out);
}

template <class T>
py::object linear_backward_impl(const py::array& x_in, const py::array& w_in, const py::array& dz_in, bool need_dx,
                                const py::object& dw_out, const py::object& db_out) {
    const char* op = "linear_backward";
    auto x = contiguous<T>(x_in);
    auto w = contiguous<T>(w_in);
    auto dz = contiguous<T>(dz_in);
    const index_t batch = x.shape(0), in = x.shape(1), n_out = w.shape(0);
    auto dw = output_array<T>(dw_out, {n_out, in}, op, {&x_in, &w_in, &dz_in});
    auto db = output_array<T>(db_out, {n_out}, op, {&x_in, &w_in, &dz_in, &dw});
    py::array_t<T> dx;
    if (need_dx) dx = new_array<T>({batch, in});
    const T *px = x.data(), *pw = w.data(), *pdz = dz.data();
    T *pdw = dw.mutable_data(), *pdb = db.mutable_data(), *pdx = need_dx ? dx.mutable_data() : nullptr;
    {
        ReleaseGilFor release(static_cast<double>(batch) * in * n_out);
        linear_backward(active_table<T>(), batch, in, n_out, px, pw, pdz, pdx, pdw, pdb);
    }
    return py::make_tuple(need_dx ? py::object(dx) : py::object(py::none()), dw, db);
}

py::object linear_backward_py(const py::object& x_obj, const py::object& w_obj, const py::object& dz_obj, bool need_dx,
                              const py::object& dw_out, const py::object& db_out) {
    const char* op = "linear_backward";
    py::array x = as_array(x_obj, op, "x"), w = as_array(w_obj, op, "weights"), dz = as_array(dz_obj, op, "output_gradient");
    const Float kind = float_kind(x, op, "x");
    require_same_dtype(x, w, op, "x", "weights");
    require_same_dtype(x, dz, op, "x", "output_gradient");
    require_ndim(x, 2, op, "x");
    require_ndim(w, 2, op, "weights");
    require_ndim(dz, 2, op, "output_gradient");
    if (x.shape(1) != w.shape(1) || dz.shape(0) != x.shape(0) || dz.shape(1) != w.shape(0))
        throw py::value_error(std::string(op) + ": shapes do not fit: x " + shape_str(x) + ", weights " + shape_str(w) +
                              ", output_gradient " + shape_str(dz) + " (expected output_gradient of shape (" +
                              std::to_string(x.shape(0)) + ", " + std::to_string(w.shape(0)) + "))");
    return kind == Float::f32 ? linear_backward_impl<float>(x, w, dz, need_dx, dw_out, db_out)
                              : linear_backward_impl<double>(x, w, dz, need_dx, dw_out, db_out);
}

// ------------------------------------------------------------------------------------------------
// conv2d: x (n, c, h, w), weights (o, c, kh, kw), bias (o,) or None; stride / padding / dilation an
// int or a pair of ints.
std::pair<index_t, index_t> conv_pair(const py::handle& v, const char* op, const char* name, long long minimum) {
    auto as_int = [&](const py::handle& h) -> long long {
        if (py::isinstance<py::bool_>(h) || !py::isinstance<py::int_>(h))
            throw py::type_error(std::string(op) + ": " + name + " must be an int or a pair of ints, got " +
                                 py::repr(v).cast<std::string>());
        return h.cast<long long>();
    };
    long long a, b;
    if (py::isinstance<py::int_>(v) && !py::isinstance<py::bool_>(v)) {
        a = b = as_int(v);
    } else if (py::isinstance<py::tuple>(v) || py::isinstance<py::list>(v)) {
        py::sequence seq = py::reinterpret_borrow<py::sequence>(v);
        if (seq.size() != 2)
            throw py::value_error(std::string(op) + ": " + name + " must be an int or a pair of ints, got " +
                                  py::repr(v).cast<std::string>());
        a = as_int(seq[0]);
        b = as_int(seq[1]);
    } else {
        throw py::type_error(std::string(op) + ": " + name + " must be an int or a pair of ints, got " +
                             py::repr(v).cast<std::string>());
    }
    if (a < minimum || b < minimum)
        throw py::value_error(std::string(op) + ": " + name + " must be " + (minimum > 0 ? "positive" : "non-negative") +
                              ", got " + py::repr(v).cast<std::string>());
    if (a > (1LL << 31) || b > (1LL << 31))
        throw py::value_error(std::string(op) + ": " + name + " is too large, got " + py::repr(v).cast<std::string>());
    return {static_cast<index_t>(a), static_cast<index_t>(b)};
}

std::string conv_describe(const Conv2dShape& s) {
    std::ostringstream d;
    d << "stride (" << s.sh << ", " << s.sw << "), padding (" << s.ph << ", " << s.pw << "), dilation (" << s.dh << ", "
      << s.dw << ")";
    return d.str();
}

// Checks x and weights and returns the geometry (every size positive except the batch, the dilated
// kernel no larger than the padded input).
Conv2dShape conv_shape(const py::array& x, const py::array& w, const py::handle& stride, const py::handle& padding,
                       const py::handle& dilation, const char* op) {
    float_kind(x, op, "x");
    float_kind(w, op, "weights");
    require_same_dtype(x, w, op, "x", "weights");
    if (x.ndim() != 4)
        throw py::value_error(std::string(op) + ": expected x with 4 dimensions (batch, channels, height, width), got shape " +
                              shape_str(x));
    if (w.ndim() != 4)
        throw py::value_error(std::string(op) +
                              ": expected weights with 4 dimensions (out_channels, in_channels, kernel_h, kernel_w), got shape " +
                              shape_str(w));
    Conv2dShape s;
    std::tie(s.sh, s.sw) = conv_pair(stride, op, "stride", 1);
    std::tie(s.ph, s.pw) = conv_pair(padding, op, "padding", 0);
    std::tie(s.dh, s.dw) = conv_pair(dilation, op, "dilation", 1);
    s.n = x.shape(0), s.c = x.shape(1), s.h = x.shape(2), s.w = x.shape(3);
    s.o = w.shape(0), s.kh = w.shape(2), s.kw = w.shape(3);
    for (py::ssize_t i = 1; i < 4; ++i)
        if (x.shape(i) <= 0)
            throw py::value_error(std::string(op) + ": channels, height and width of x must be positive, got shape " +
                                  shape_str(x));
    for (py::ssize_t i = 0; i < 4; ++i)
        if (w.shape(i) <= 0)
            throw py::value_error(std::string(op) + ": every size of weights must be positive, got shape " + shape_str(w));
    if (w.shape(1) != s.c)
        throw py::value_error(std::string(op) + ": x has " + std::to_string(s.c) + " channels (shape " + shape_str(x) +
                              ") but weights of shape " + shape_str(w) + " expect " + std::to_string(w.shape(1)));
    if (s.h + 2 * s.ph < s.dh * (s.kh - 1) + 1 || s.w + 2 * s.pw < s.dw * (s.kw - 1) + 1) {
        std::ostringstream d;
        d << op << ": the kernel is larger than the padded input: x of shape " << shape_str(x) << " padded to ("
          << s.h + 2 * s.ph << ", " << s.w + 2 * s.pw << "), weights of shape " << shape_str(w) << " span ("
          << s.dh * (s.kh - 1) + 1 << ", " << s.dw * (s.kw - 1) + 1 << ") with " << conv_describe(s);
        throw py::value_error(d.str());
    }
    if (!s.valid()) throw py::value_error(std::string(op) + ": invalid geometry: " + conv_describe(s));
    return s;
}

template <class T>
py::array conv2d_impl(const py::array& x_in, const py::array& w_in, const py::object& bias_obj, const Conv2dShape& s,
                      const py::object& out) {
    const char* op = "conv2d";
    auto x = contiguous<T>(x_in);
    auto w = contiguous<T>(w_in);
    py::array_t<T, py::array::c_style> bias;
    const bool has_bias = !bias_obj.is_none();
    if (has_bias) {
        py::array b = as_array(bias_obj, op, "bias");
        float_kind(b, op, "bias");
        require_same_dtype(b, x_in, op, "bias", "x");
        if (b.ndim() != 1 || b.shape(0) != s.o)
            throw py::value_error(std::string(op) + ": expected bias of shape (" + std::to_string(s.o) + ",), got " + shape_str(b));
        bias = contiguous<T>(b);
    }
    auto y = output_array<T>(out, {s.n, s.o, s.out_h(), s.out_w()}, op, {&x_in, &w_in, &bias});
    const T* pb = has_bias ? bias.data() : nullptr;
    const T *px = x.data(), *pw = w.data();
    T* py_ = y.mutable_data();
    {
        py::gil_scoped_release release;
        conv2d_forward(active_table<T>(), s, px, pw, pb, py_);
    }
    return std::move(y);
}

py::array conv2d_py(const py::object& x_obj, const py::object& w_obj, const py::object& bias, const py::object& stride,
                    const py::object& padding, const py::object& dilation, const py::object& out) {
    const char* op = "conv2d";
    py::array x = as_array(x_obj, op, "x"), w = as_array(w_obj, op, "weights");
    const Conv2dShape s = conv_shape(x, w, stride, padding, dilation, op);
    return float_kind(x, op, "x") == Float::f32 ? conv2d_impl<float>(x, w, bias, s, out)
                                                : conv2d_impl<double>(x, w, bias, s, out);
}

template <class T>
py::object conv2d_backward_impl(const py::array& x_in, const py::array& w_in, const py::array& dy_in, const Conv2dShape& s,
                                bool need_dx, const py::object& dw_out, const py::object& db_out) {
    auto x = contiguous<T>(x_in);
    auto w = contiguous<T>(w_in);
    auto dy = contiguous<T>(dy_in);
    // The layers pass their own gradient arrays, so a training step writes them in place.
    auto dw = output_array<T>(dw_out, {s.o, s.c, s.kh, s.kw}, "conv2d_backward (weights_gradient)", {&x, &w, &dy});
    auto db = output_array<T>(db_out, {s.o}, "conv2d_backward (bias_gradient)", {&x, &w, &dy, &dw});
    py::array_t<T> dx;
    if (need_dx) dx = new_array<T>({s.n, s.c, s.h, s.w});
    const T *px = x.data(), *pw = w.data(), *pdy = dy.data();
    T *pdw = dw.mutable_data(), *pdb = db.mutable_data(), *pdx = need_dx ? dx.mutable_data() : nullptr;
    bool out_of_memory = false;
    {
        py::gil_scoped_release release;
        try {
            conv2d_backward(active_table<T>(), s, px, pw, pdy, pdx, pdw, pdb);
        } catch (const std::bad_alloc&) {  // its workspaces hold zero-padded copies of the input
            out_of_memory = true;
        }
    }
    if (out_of_memory) {
        const double padded = static_cast<double>(s.c) * static_cast<double>(s.h + 2 * s.ph) * static_cast<double>(s.w + 2 * s.pw);
        std::ostringstream message;
        message << "conv2d_backward: out of memory for the zero-padded input (" << padded << " values per sample; x "
                << shape_str(x) << ", weights " << shape_str(w) << ", " << conv_describe(s) << ")";
        PyErr_SetString(PyExc_MemoryError, message.str().c_str());
        throw py::error_already_set();
    }
    return py::make_tuple(need_dx ? py::object(dx) : py::object(py::none()), dw, db);
}

py::object conv2d_backward_py(const py::object& x_obj, const py::object& w_obj, const py::object& dy_obj,
                              const py::object& stride, const py::object& padding, const py::object& dilation, bool need_dx,
                              const py::object& dw_out, const py::object& db_out) {
    const char* op = "conv2d_backward";
    py::array x = as_array(x_obj, op, "x"), w = as_array(w_obj, op, "weights"), dy = as_array(dy_obj, op, "output_gradient");
    const Conv2dShape s = conv_shape(x, w, stride, padding, dilation, op);
    float_kind(dy, op, "output_gradient");
    require_same_dtype(x, dy, op, "x", "output_gradient");
    const std::vector<py::ssize_t> expected{s.n, s.o, s.out_h(), s.out_w()};
    if (shape_of(dy) != expected)
        throw py::value_error(std::string(op) + ": expected output_gradient of shape " + shape_str(expected) + ", got " +
                              shape_str(dy) + " (x " + shape_str(x) + ", weights " + shape_str(w) + ", " + conv_describe(s) + ")");
    return float_kind(x, op, "x") == Float::f32 ? conv2d_backward_impl<float>(x, w, dy, s, need_dx, dw_out, db_out)
                                                : conv2d_backward_impl<double>(x, w, dy, s, need_dx, dw_out, db_out);
}

// ------------------------------------------------------------------------------------------------
// Pooling: x (n, c, h, w); kernel_size and stride (None: the kernel size) an int or a pair.
Pool2dShape pool_shape(const py::array& x, const py::handle& kernel_size, const py::handle& stride, const char* op) {
    float_kind(x, op, "x");
    if (x.ndim() != 4)
        throw py::value_error(std::string(op) + ": expected x with 4 dimensions (batch, channels, height, width), got shape " +
                              shape_str(x));
    Pool2dShape s;
    std::tie(s.kh, s.kw) = conv_pair(kernel_size, op, "kernel_size", 1);
    if (stride.is_none()) s.sh = s.kh, s.sw = s.kw;
    else std::tie(s.sh, s.sw) = conv_pair(stride, op, "stride", 1);
    s.n = x.shape(0), s.c = x.shape(1), s.h = x.shape(2), s.w = x.shape(3);
    if (s.c <= 0 || s.h <= 0 || s.w <= 0)
        throw py::value_error(std::string(op) + ": channels, height and width of x must be positive, got shape " + shape_str(x));
    if (s.h < s.kh || s.w < s.kw)
        throw py::value_error(std::string(op) + ": the window (" + std::to_string(s.kh) + ", " + std::to_string(s.kw) +
                              ") is larger than the input: x of shape " + shape_str(x));
    return s;
}

template <class T>
py::array pool2d_impl(bool is_max, const py::array& x_in, const Pool2dShape& s, const py::object& out) {
    const char* op = is_max ? "max_pool2d" : "avg_pool2d";
    auto x = contiguous<T>(x_in);
    auto y = output_array<T>(out, {s.n, s.c, s.out_h(), s.out_w()}, op, {&x_in});
    const T* px = x.data();
    T* py_ = y.mutable_data();
    {
        py::gil_scoped_release release;
        if (is_max) max_pool2d_forward(active_table<T>(), s, px, py_);
        else avg_pool2d_forward(s, px, py_);
    }
    return std::move(y);
}

py::array pool2d_py(bool is_max, const py::object& x_obj, const py::object& kernel_size, const py::object& stride,
                    const py::object& out) {
    const char* op = is_max ? "max_pool2d" : "avg_pool2d";
    py::array x = as_array(x_obj, op, "x");
    const Pool2dShape s = pool_shape(x, kernel_size, stride, op);
    return float_kind(x, op, "x") == Float::f32 ? pool2d_impl<float>(is_max, x, s, out) : pool2d_impl<double>(is_max, x, s, out);
}

template <class T>
py::array pool2d_backward_impl(bool is_max, const py::array& x_in, const py::array& dy_in, const Pool2dShape& s) {
    auto x = contiguous<T>(x_in);
    auto dy = contiguous<T>(dy_in);
    py::array_t<T> dx = new_array<T>({s.n, s.c, s.h, s.w});
    const T *px = x.data(), *pdy = dy.data();
    T* pdx = dx.mutable_data();
    {
        py::gil_scoped_release release;
        if (is_max) max_pool2d_backward(active_table<T>(), s, px, pdy, pdx);
        else avg_pool2d_backward(s, pdy, pdx);
    }
    return std::move(dx);
}

py::array pool2d_backward_py(bool is_max, const py::object& x_obj, const py::object& dy_obj, const py::object& kernel_size,
                             const py::object& stride) {
    const char* op = is_max ? "max_pool2d_backward" : "avg_pool2d_backward";
    py::array x = as_array(x_obj, op, "x"), dy = as_array(dy_obj, op, "output_gradient");
    const Pool2dShape s = pool_shape(x, kernel_size, stride, op);
    float_kind(dy, op, "output_gradient");
    require_same_dtype(x, dy, op, "x", "output_gradient");
    const std::vector<py::ssize_t> expected{s.n, s.c, s.out_h(), s.out_w()};
    if (shape_of(dy) != expected)
        throw py::value_error(std::string(op) + ": expected output_gradient of shape " + shape_str(expected) + ", got " +
                              shape_str(dy) + " (x " + shape_str(x) + ")");
    return float_kind(x, op, "x") == Float::f32 ? pool2d_backward_impl<float>(is_max, x, dy, s)
                                                : pool2d_backward_impl<double>(is_max, x, dy, s);
}

// ------------------------------------------------------------------------------------------------
template <class T>
py::array activation_impl(const py::array& x_in, Act act, double alpha, const py::object& out) {
    auto x = contiguous<T>(x_in);
    auto y = output_array<T>(out, shape_of(x_in), "activation");
    separate_from_output(x, y);
    const T* px = x.data();
    T* py_ = y.mutable_data();
    const index_t n = x.size();
    {
        ReleaseGilFor release(static_cast<double>(n));
        activation_forward(active_table<T>(), act, static_cast<T>(alpha), px, py_, n);
    }
    return std::move(y);
}

py::array activation_py(const std::string& name, const py::object& x_obj, double alpha, const py::object& out) {
    const char* op = "activation";
    const Act act = parse_act(name, op);
    py::array x = as_array(x_obj, op, "x");
    return float_kind(x, op, "x") == Float::f32 ? activation_impl<float>(x, act, alpha, out)
                                                : activation_impl<double>(x, act, alpha, out);
}

// x and y are None when the activation's derivative does not read them.
template <class T>
py::array activation_backward_impl(Act act, const py::object& x_in, const py::object& y_in, const py::array& dy_in,
                                   double alpha, const py::object& out) {
    auto dy = contiguous<T>(dy_in);
    py::array_t<T, py::array::c_style> x, y;
    if (!x_in.is_none()) x = contiguous<T>(x_in);
    if (!y_in.is_none()) y = contiguous<T>(y_in);
    auto dx = output_array<T>(out, shape_of(dy_in), "activation_backward");
    separate_from_output(dy, dx);
    if (!x_in.is_none()) separate_from_output(x, dx);
    if (!y_in.is_none()) separate_from_output(y, dx);
    const T *px = x_in.is_none() ? nullptr : x.data(), *py_ = y_in.is_none() ? nullptr : y.data(), *pdy = dy.data();
    T* pdx = dx.mutable_data();
    const index_t n = dy.size();
    {
        ReleaseGilFor release(static_cast<double>(n));
        activation_backward(active_table<T>(), act, static_cast<T>(alpha), px, py_, pdy, pdx, n);
    }
    return std::move(dx);
}

py::array activation_backward_py(const std::string& activation, const py::object& x_obj, const py::object& y_obj,
                                 const py::object& dy_obj, double alpha, const py::object& out) {
    const char* op = "activation_backward";
    const Act act = parse_act(activation, op);
    py::array dy = as_array(dy_obj, op, "output_gradient");
    const Float kind = float_kind(dy, op, "output_gradient");
    // The derivative of relu/leaky_relu/gelu is read from the forward input, of tanh/sigmoid from the output.
    const bool needs_x = act_backward_reads_input(act);
    const bool needs_y = act_backward_reads_output(act);
    py::object x = py::none(), y = py::none();
    auto take = [&](const py::object& obj, const char* name) -> py::object {
        if (obj.is_none())
            throw py::value_error(std::string(op) + ": activation '" + activation + "' needs " + name + ", got None");
        py::array a = as_array(obj, op, name);
        require_same_dtype(a, dy, op, name, "output_gradient");
        require_same_shape(a, dy, op, name, "output_gradient");
        return std::move(a);
    };
    if (needs_x) x = take(x_obj, "x");
    if (needs_y) y = take(y_obj, "y");
    return kind == Float::f32 ? activation_backward_impl<float>(act, x, y, dy, alpha, out)
                              : activation_backward_impl<double>(act, x, y, dy, alpha, out);
}

template <class T>
py::array exp_impl(const py::array& x_in, const py::object& out) {
    auto x = contiguous<T>(x_in);
    auto y = output_array<T>(out, shape_of(x_in), "exp");
    separate_from_output(x, y);
    const T* px = x.data();
    T* py_ = y.mutable_data();
    const index_t n = x.size();
    {
        ReleaseGilFor release(static_cast<double>(n));
        nncore::exp(active_table<T>(), px, py_, n);
    }
    return std::move(y);
}

py::array exp_py(const py::object& x_obj, const py::object& out) {
    py::array x = as_array(x_obj, "exp", "x");
    return float_kind(x, "exp", "x") == Float::f32 ? exp_impl<float>(x, out) : exp_impl<double>(x, out);
}

template <class T>
bool all_finite_impl(const py::array& x_in) {
    auto x = contiguous<T>(x_in);
    const T* px = x.data();
    const index_t n = x.size();
    ReleaseGilFor release(static_cast<double>(n));
    return nncore::all_finite(active_table<T>(), px, n);
}

bool all_finite_py(const py::object& x_obj) {
    py::array x = as_array(x_obj, "all_finite", "x");
    return float_kind(x, "all_finite", "x") == Float::f32 ? all_finite_impl<float>(x) : all_finite_impl<double>(x);
}

// Softmax over the last axis; every leading axis is a row.
template <class T>
py::array softmax_impl(const py::array& x_in, const py::object& out) {
    auto x = contiguous<T>(x_in);
    auto y = output_array<T>(out, shape_of(x_in), "softmax");
    separate_from_output(x, y);
    const index_t cols = x.ndim() == 0 ? 1 : x.shape(x.ndim() - 1);
    const index_t rows = cols == 0 ? 0 : x.size() / cols;
    const T* px = x.data();
    T* py_ = y.mutable_data();
    {
        ReleaseGilFor release(static_cast<double>(rows) * cols);
        softmax_forward(active_table<T>(), px, py_, rows, cols);
    }
    return std::move(y);
}

py::array softmax_py(const py::object& x_obj, const py::object& out) {
    py::array x = as_array(x_obj, "softmax", "x");
    const Float kind = float_kind(x, "softmax", "x");
    if (x.ndim() < 1) throw py::value_error("softmax: expected x with at least 1 dimension, got a scalar");
    return kind == Float::f32 ? softmax_impl<float>(x, out) : softmax_impl<double>(x, out);
}

template <class T>
py::array softmax_backward_impl(const py::array& y_in, const py::array& dy_in, const py::object& out) {
    auto y = contiguous<T>(y_in);
    auto dy = contiguous<T>(dy_in);
    auto dx = output_array<T>(out, shape_of(y_in), "softmax_backward");
    separate_from_output(y, dx);
    separate_from_output(dy, dx);
    const index_t cols = y.shape(y.ndim() - 1);
    const index_t rows = cols == 0 ? 0 : y.size() / cols;
    const T *py_ = y.data(), *pdy = dy.data();
    T* pdx = dx.mutable_data();
    {
        ReleaseGilFor release(static_cast<double>(rows) * cols);
        softmax_backward(active_table<T>(), py_, pdy, pdx, rows, cols);
    }
    return std::move(dx);
}

py::array softmax_backward_py(const py::object& y_obj, const py::object& dy_obj, const py::object& out) {
    const char* op = "softmax_backward";
    py::array y = as_array(y_obj, op, "y"), dy = as_array(dy_obj, op, "output_gradient");
    const Float kind = float_kind(y, op, "y");
    require_same_dtype(y, dy, op, "y", "output_gradient");
    require_same_shape(y, dy, op, "y", "output_gradient");
    if (y.ndim() < 1) throw py::value_error("softmax_backward: expected y with at least 1 dimension, got a scalar");
    return kind == Float::f32 ? softmax_backward_impl<float>(y, dy, out) : softmax_backward_impl<double>(y, dy, out);
}

// ------------------------------------------------------------------------------------------------
enum class Loss { squared_error, binary_cross_entropy };

template <class T>
double loss_sum_impl(Loss loss, const py::array& yt_in, const py::array& yp_in) {
    auto yt = contiguous<T>(yt_in);
    auto yp = contiguous<T>(yp_in);
    const T *pt = yt.data(), *pp = yp.data();
    const index_t n = yt.size();
    const auto& kt = active_table<T>();
    ReleaseGilFor release(static_cast<double>(n));
    return loss == Loss::squared_error ? kt.squared_error_sum(pt, pp, n) : kt.binary_cross_entropy_sum(pt, pp, n);
}

template <class T>
py::array loss_grad_impl(Loss loss, const py::array& yt_in, const py::array& yp_in, double scale, const py::object& out) {
    auto yt = contiguous<T>(yt_in);
    auto yp = contiguous<T>(yp_in);
    auto g = output_array<T>(out, shape_of(yp_in), "loss gradient");
    separate_from_output(yt, g);
    separate_from_output(yp, g);
    const T *pt = yt.data(), *pp = yp.data();
    T* pg = g.mutable_data();
    const index_t n = yt.size();
    const auto& kt = active_table<T>();
    {
        ReleaseGilFor release(static_cast<double>(n));
        if (loss == Loss::squared_error) kt.squared_error_grad(pt, pp, pg, n, static_cast<T>(scale));
        else kt.binary_cross_entropy_grad(pt, pp, pg, n, static_cast<T>(scale));
    }
    return std::move(g);
}

std::pair<py::array, py::array> loss_args(const py::object& yt_obj, const py::object& yp_obj, const char* op) {
    py::array yt = as_array(yt_obj, op, "y_true"), yp = as_array(yp_obj, op, "y_pred");
    float_kind(yp, op, "y_pred");
    float_kind(yt, op, "y_true");
    require_same_dtype(yt, yp, op, "y_true", "y_pred");
    require_same_shape(yt, yp, op, "y_true", "y_pred");
    return {yt, yp};
}

double loss_sum_py(Loss loss, const py::object& yt_obj, const py::object& yp_obj) {
    auto [yt, yp] = loss_args(yt_obj, yp_obj, "loss");
    return same_dtype(yp.dtype(), py::dtype::of<float>()) ? loss_sum_impl<float>(loss, yt, yp) : loss_sum_impl<double>(loss, yt, yp);
}

py::array loss_grad_py(Loss loss, const py::object& yt_obj, const py::object& yp_obj, double scale, const py::object& out) {
    auto [yt, yp] = loss_args(yt_obj, yp_obj, "loss gradient");
    return same_dtype(yp.dtype(), py::dtype::of<float>()) ? loss_grad_impl<float>(loss, yt, yp, scale, out)
                                                 : loss_grad_impl<double>(loss, yt, yp, scale, out);
}

// ------------------------------------------------------------------------------------------------
template <class T>
void sgd_impl(py::array param, const py::array& grad_in, double lr) {
    auto grad = contiguous<T>(grad_in);
    T* pp = static_cast<T*>(param.mutable_data());
    const T* pg = grad.data();
    const index_t n = param.size();
    const auto& kt = active_table<T>();
    ReleaseGilFor release(static_cast<double>(n));
    kt.axpy(static_cast<T>(-lr), pg, pp, n);
}

// The classic batch-1 SGD step of a Dense layer: weights[j] += (-lr g[j]) x (see KernelTable::sgd_rank1).
template <class T>
void sgd_rank1_impl(py::array weights, const py::array& g_in, const py::array& x_in, double lr) {
    auto g = contiguous<T>(g_in);
    auto x = contiguous<T>(x_in);
    T* pw = static_cast<T*>(weights.mutable_data());
    const T *pg = g.data(), *px = x.data();
    const index_t out = weights.shape(0), in = weights.shape(1);
    const auto& kt = active_table<T>();
    py::gil_scoped_release release;
    kt.sgd_rank1(in, out, pg, px, static_cast<T>(-lr), pw, nullptr, in);
}

// ------------------------------------------------------------------------------------------------
// Losses with value and gradient in one pass.
LossKind parse_loss(const std::string& name) {
    if (name == "squared_error") return LossKind::squared_error;
    if (name == "absolute_error") return LossKind::absolute_error;
    if (name == "binary_cross_entropy") return LossKind::binary_cross_entropy;
    if (name == "binary_cross_entropy_logits") return LossKind::binary_cross_entropy_logits;
    throw py::value_error("loss: unknown loss '" + name +
                          "'; expected one of squared_error, absolute_error, binary_cross_entropy, "
                          "binary_cross_entropy_logits");
}

void require_non_empty(const py::array& a, const char* op, const char* name) {
    if (a.size() == 0) throw py::value_error(std::string(op) + ": expected a non-empty " + name + ", got shape " + shape_str(a));
}

template <class T>
py::tuple loss_value_impl(LossKind kind, const py::array& yt_in, const py::array& yp_in, double scale, bool need_gradient) {
    auto yt = contiguous<T>(yt_in);
    auto yp = contiguous<T>(yp_in);
    py::array_t<T> grad;
    if (need_gradient) grad = new_array<T>(shape_of(yp_in));
    const T *pt = yt.data(), *pp = yp.data();
    T* pg = need_gradient ? grad.mutable_data() : nullptr;
    const index_t n = yp.size();
    double total;
    {
        py::gil_scoped_release release;
        total = nncore::loss(active_table<T>(), kind, pt, pp, pg, static_cast<T>(scale), n);
    }
    return py::make_tuple(total, need_gradient ? py::object(grad) : py::object(py::none()));
}

py::tuple loss_value_py(const std::string& name, const py::object& yt_obj, const py::object& yp_obj, double scale,
                        bool need_gradient) {
    const LossKind kind = parse_loss(name);
    auto [yt, yp] = loss_args(yt_obj, yp_obj, "loss");
    require_non_empty(yp, "loss", "y_pred");
    return same_dtype(yp.dtype(), py::dtype::of<float>()) ? loss_value_impl<float>(kind, yt, yp, scale, need_gradient)
                                                 : loss_value_impl<double>(kind, yt, yp, scale, need_gradient);
}

template <class T>
py::tuple softmax_cross_entropy_impl(const py::array& logits_in, const py::array& target_in, bool labels, double scale,
                                     bool need_gradient) {
    const char* op = "softmax_cross_entropy";
    auto logits = contiguous<T>(logits_in);
    const index_t rows = logits.shape(0), cols = logits.shape(1);
    py::array_t<std::int64_t, py::array::c_style> label_array;
    py::array_t<T, py::array::c_style> probabilities;
    if (labels) {
        label_array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(target_in);
        const std::int64_t* pl = label_array.data();
        for (index_t r = 0; r < rows; ++r)
            if (pl[r] < 0 || pl[r] >= cols)
                throw py::value_error(std::string(op) + ": label " + std::to_string(pl[r]) + " of sample " + std::to_string(r) +
                                      " is out of range for " + std::to_string(cols) + " classes (expected 0 <= label < " +
                                      std::to_string(cols) + ")");
    } else {
        probabilities = contiguous<T>(target_in);
    }
    py::array_t<T> grad;
    if (need_gradient) grad = new_array<T>(shape_of(logits_in));
    const T* pz = logits.data();
    const T* pt = labels ? nullptr : probabilities.data();
    const std::int64_t* pl = labels ? label_array.data() : nullptr;
    T* pg = need_gradient ? grad.mutable_data() : nullptr;
    double total;
    {
        py::gil_scoped_release release;
        total = nncore::softmax_cross_entropy(active_table<T>(), pz, pt, pl, pg, static_cast<T>(scale), rows, cols);
    }
    return py::make_tuple(total, need_gradient ? py::object(grad) : py::object(py::none()));
}

py::tuple softmax_cross_entropy_py(const py::object& logits_obj, const py::object& target_obj, double scale,
                                   bool need_gradient) {
    const char* op = "softmax_cross_entropy";
    py::array logits = as_array(logits_obj, op, "logits"), target = as_array(target_obj, op, "target");
    const Float kind = float_kind(logits, op, "logits");
    require_ndim(logits, 2, op, "logits");
    if (logits.shape(0) == 0 || logits.shape(1) == 0)
        throw py::value_error(std::string(op) + ": expected logits of shape (batch, classes) with batch >= 1 and classes >= 1, got " +
                              shape_str(logits));
    const char dtype_kind = target.dtype().kind();
    const bool labels = dtype_kind == 'i' || dtype_kind == 'u';
    if (labels) {
        if (target.ndim() != 1 || target.shape(0) != logits.shape(0))
            throw py::value_error(std::string(op) + ": expected integer labels of shape (" + std::to_string(logits.shape(0)) +
                                  ",) for logits of shape " + shape_str(logits) + ", got " + shape_str(target));
    } else if (dtype_kind == 'f') {
        require_same_dtype(logits, target, op, "logits", "target");
        require_same_shape(logits, target, op, "logits", "target");
    } else {
        throw py::type_error(std::string(op) + ": expected target of an integer dtype (class labels) or of the logits' dtype " +
                             dtype_str(logits) + " (probabilities), got " + dtype_str(target));
    }
    return kind == Float::f32 ? softmax_cross_entropy_impl<float>(logits, target, labels, scale, need_gradient)
                              : softmax_cross_entropy_impl<double>(logits, target, labels, scale, need_gradient);
}

// ------------------------------------------------------------------------------------------------
// In-place updates: every array that is written must already be a writable, C-contiguous float
// array (it is never copied); the others must match its shape and dtype.
py::array inplace_array(const py::object& obj, const char* op, const char* name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(op) + ": " + name + " must be a numpy array (it is updated in place), got " +
                             py::str(py::type::of(obj)).cast<std::string>());
    py::array a = py::reinterpret_borrow<py::array>(obj);
    float_kind(a, op, name);
    if (!a.writeable()) throw py::value_error(std::string(op) + ": " + name + " is read-only");
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(op) + ": " + name + " must be C-contiguous (it is updated in place, so it is never copied)");
    return a;
}

void sgd_rank1_py(const py::object& weights_obj, const py::object& g_obj, const py::object& x_obj, double lr) {
    const char* op = "sgd_rank1";
    py::array weights = inplace_array(weights_obj, op, "weights");
    py::array g = as_array(g_obj, op, "gradient"), x = as_array(x_obj, op, "input");
    require_same_dtype(weights, g, op, "weights", "gradient");
    require_same_dtype(weights, x, op, "weights", "input");
    require_ndim(weights, 2, op, "weights");
    if (g.ndim() != 1 || g.shape(0) != weights.shape(0) || x.ndim() != 1 || x.shape(0) != weights.shape(1))
        throw py::value_error("sgd_rank1: weights of shape " + shape_str(weights) + " need a gradient of shape (" +
                              std::to_string(weights.shape(0)) + ",) and an input of shape (" + std::to_string(weights.shape(1)) +
                              ",), got " + shape_str(g) + " and " + shape_str(x));
    if (overlaps(weights, g) || overlaps(weights, x)) throw py::value_error("sgd_rank1: weights must not share memory with the gradient or input");
    if (float_kind(weights, op, "weights") == Float::f32) sgd_rank1_impl<float>(weights, g, x, lr);
    else sgd_rank1_impl<double>(weights, g, x, lr);
}

void sgd_step_py(const py::object& param_obj, const py::object& grad_obj, double lr) {
    const char* op = "sgd_step";
    py::array param = inplace_array(param_obj, op, "param");
    py::array grad = as_array(grad_obj, op, "grad");
    require_same_dtype(param, grad, op, "param", "grad");
    require_same_shape(param, grad, op, "param", "grad");
    if (float_kind(param, op, "param") == Float::f32) sgd_impl<float>(param, grad, lr); else sgd_impl<double>(param, grad, lr);
}

// A state array beside `param`: same shape and dtype, writable, contiguous, not sharing its memory.
py::array state_array(const py::object& obj, const py::array& param, const char* op, const char* name,
                      std::vector<py::array>& seen) {
    py::array a = inplace_array(obj, op, name);
    require_same_dtype(param, a, op, "param", name);
    require_same_shape(param, a, op, "param", name);
    seen.push_back(a);
    for (std::size_t i = 0; i + 1 < seen.size(); ++i)
        if (overlaps(seen[i], a)) throw py::value_error(std::string(op) + ": " + name + " shares memory with another updated array");
    return a;
}

py::array grad_array(const py::object& obj, const py::array& param, const char* op) {
    py::array g = as_array(obj, op, "grad");
    float_kind(g, op, "grad");
    require_same_dtype(param, g, op, "param", "grad");
    require_same_shape(param, g, op, "param", "grad");
    return g;
}

void require_hyper(bool ok, const char* op, const char* name, double value, const char* expected) {
    if (!ok) throw py::value_error(std::string(op) + ": expected " + name + " " + expected + ", got " + py::str(py::float_(value)).cast<std::string>());
}

// The data pointer of an optional array (null when absent), taken while the GIL is held.
void* pointer_of(py::array& a, bool present) { return present ? a.mutable_data() : nullptr; }

// The arrays of one in-place update: param (checked), grad (matching it), and every written array
// so far (for the no-overlap check of state arrays).
struct UpdateArrays {
    py::array param, grad;
    std::vector<py::array> written;
};

UpdateArrays update_arrays(const py::object& param_obj, const py::object& grad_obj, double lr, const char* op) {
    UpdateArrays u;
    u.param = inplace_array(param_obj, op, "param");
    u.written.push_back(u.param);
    u.grad = grad_array(grad_obj, u.param, op);
    require_hyper(std::isfinite(lr) && lr >= 0, op, "lr", lr, "finite and >= 0");
    return u;
}

// Calls update(T(), grad data, n) for param's dtype with the GIL released; the gradient is made
// contiguous (and private when it partly overlaps param or a state array, which the update writes
// before it reads all of the gradient; the very same array is fine, read before written per element).
template <class Update>
void run_update(const UpdateArrays& u, const char* op, Update&& update) {
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto grad = contiguous<T>(u.grad);
        bool shifted = false;
        for (const py::array& written : u.written) shifted = shifted || (overlaps(grad, written) && grad.data() != written.data());
        if (shifted)
            grad = py::array_t<T, py::array::c_style>(py::array(grad.dtype(), shape_of(grad), grad.data()));
        const T* pg = grad.data();
        const index_t n = u.param.size();
        py::gil_scoped_release release;
        update(tag, pg, n);
    };
    if (float_kind(u.param, op, "param") == Float::f32) run(float()); else run(double());
}

void sgd_update_py(const py::object& param_obj, const py::object& grad_obj, const py::object& buf_obj, double lr,
                   double momentum, bool nesterov, double weight_decay) {
    const char* op = "sgd_update";
    UpdateArrays u = update_arrays(param_obj, grad_obj, lr, op);
    require_hyper(momentum >= 0 && momentum < 1, op, "momentum", momentum, "in [0, 1)");
    require_hyper(std::isfinite(weight_decay) && weight_decay >= 0, op, "weight_decay", weight_decay, "finite and >= 0");
    if (nesterov && momentum == 0) throw py::value_error("sgd_update: nesterov needs momentum > 0, got momentum 0.0");
    py::array buf;
    const bool use_buf = momentum != 0;
    if (use_buf) {
        if (buf_obj.is_none()) throw py::value_error("sgd_update: momentum " + std::to_string(momentum) + " needs a momentum_buffer, got None");
        buf = state_array(buf_obj, u.param, op, "momentum_buffer", u.written);
    }
    const SgdOptions o{lr, momentum, weight_decay, nesterov};
    void *pp = u.param.mutable_data(), *pb = pointer_of(buf, use_buf);
    run_update(u, op, [&](auto tag, const auto* g, index_t n) {
        using T = decltype(tag);
        sgd_update(active_table<T>(), o, static_cast<T*>(pp), g, static_cast<T*>(pb), n);
    });
}

void adam_update_py(const py::object& param_obj, const py::object& grad_obj, const py::object& m_obj, const py::object& v_obj,
                    long long step, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
    const char* op = "adam_update";
    UpdateArrays u = update_arrays(param_obj, grad_obj, lr, op);
    py::array m = state_array(m_obj, u.param, op, "exp_avg", u.written);
    py::array v = state_array(v_obj, u.param, op, "exp_avg_sq", u.written);
    if (step < 1) throw py::value_error("adam_update: expected step >= 1 (the count after this update), got " + std::to_string(step));
    require_hyper(beta1 >= 0 && beta1 < 1, op, "beta1", beta1, "in [0, 1)");
    require_hyper(beta2 >= 0 && beta2 < 1, op, "beta2", beta2, "in [0, 1)");
    require_hyper(std::isfinite(eps) && eps > 0, op, "eps", eps, "finite and > 0");
    require_hyper(std::isfinite(weight_decay) && weight_decay >= 0, op, "weight_decay", weight_decay, "finite and >= 0");
    AdamOptions o;
    o.lr = lr, o.beta1 = beta1, o.beta2 = beta2, o.eps = eps, o.weight_decay = weight_decay, o.step = step, o.decoupled = decoupled;
    void *pp = u.param.mutable_data(), *pm = m.mutable_data(), *pv = v.mutable_data();
    run_update(u, op, [&](auto tag, const auto* g, index_t n) {
        using T = decltype(tag);
        adam_update(active_table<T>(), o, static_cast<T*>(pp), g, static_cast<T*>(pm), static_cast<T*>(pv), n);
    });
}

void rmsprop_update_py(const py::object& param_obj, const py::object& grad_obj, const py::object& sq_obj, double lr, double alpha,
                       double eps, double weight_decay, double momentum, const py::object& buf_obj, bool centered,
                       const py::object& grad_avg_obj) {
    const char* op = "rmsprop_update";
    UpdateArrays u = update_arrays(param_obj, grad_obj, lr, op);
    py::array sq = state_array(sq_obj, u.param, op, "square_avg", u.written);
    require_hyper(alpha >= 0 && alpha <= 1, op, "alpha", alpha, "in [0, 1]");
    require_hyper(std::isfinite(eps) && eps > 0, op, "eps", eps, "finite and > 0");
    require_hyper(std::isfinite(weight_decay) && weight_decay >= 0, op, "weight_decay", weight_decay, "finite and >= 0");
    require_hyper(momentum >= 0 && momentum < 1, op, "momentum", momentum, "in [0, 1)");
    const bool use_buf = momentum > 0;
    py::array buf, grad_avg;
    if (use_buf) {
        if (buf_obj.is_none()) throw py::value_error("rmsprop_update: momentum " + std::to_string(momentum) + " needs a momentum_buffer, got None");
        buf = state_array(buf_obj, u.param, op, "momentum_buffer", u.written);
    }
    if (centered) {
        if (grad_avg_obj.is_none()) throw py::value_error("rmsprop_update: centered=True needs a grad_avg array, got None");
        grad_avg = state_array(grad_avg_obj, u.param, op, "grad_avg", u.written);
    }
    RmspropOptions o;
    o.lr = lr, o.alpha = alpha, o.eps = eps, o.weight_decay = weight_decay, o.momentum = momentum, o.centered = centered;
    void *pp = u.param.mutable_data(), *ps = sq.mutable_data(), *pb = pointer_of(buf, use_buf),
         *pa = pointer_of(grad_avg, centered);
    run_update(u, op, [&](auto tag, const auto* g, index_t n) {
        using T = decltype(tag);
        rmsprop_update(active_table<T>(), o, static_cast<T*>(pp), g, static_cast<T*>(ps), static_cast<T*>(pb),
                       static_cast<T*>(pa), n);
    });
}

double sum_of_squares_py(const py::object& x_obj) {
    const char* op = "sum_of_squares";
    py::array x = as_array(x_obj, op, "x");
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto xc = contiguous<T>(x);
        const T* px = xc.data();
        const index_t n = xc.size();
        py::gil_scoped_release release;
        return nncore::sum_of_squares(active_table<T>(), px, n);
    };
    return float_kind(x, op, "x") == Float::f32 ? run(float()) : run(double());
}

void scale_py(const py::object& x_obj, double factor) {
    const char* op = "scale";
    py::array x = inplace_array(x_obj, op, "x");
    auto run = [&](auto tag) {
        using T = decltype(tag);
        T* px = static_cast<T*>(x.mutable_data());
        const index_t n = x.size();
        py::gil_scoped_release release;
        nncore::scale(active_table<T>(), static_cast<T>(factor), px, n);
    };
    if (float_kind(x, op, "x") == Float::f32) run(float()); else run(double());
}

// ------------------------------------------------------------------------------------------------
// The training engine: built once from the layers' own arrays (kept alive here and updated in
// place, so the Python layers always see the current values).
bool same_attributes(const py::sequence& layers, const py::tuple& names, const py::tuple& expected);

// layer.training = False for each layer, stored only where it is not False already.
void set_not_training(const py::sequence& layers) {
    static PyObject* const name = PyUnicode_InternFromString("training");
    for (std::size_t i = 0, count = layers.size(); i < count; ++i) {
        const py::object layer = layers[i];
        const py::object value = py::reinterpret_steal<py::object>(PyObject_GetAttr(layer.ptr(), name));
        if (!value) PyErr_Clear();
        if (value.ptr() != Py_False && PyObject_SetAttr(layer.ptr(), name, Py_False) != 0) throw py::error_already_set();
    }
}

class PyEngine {
public:
    explicit PyEngine(const py::list& spec) {
        const char* op = "Engine";
        if (spec.empty()) throw py::value_error("Engine: expected at least one layer, got an empty list");
        std::vector<EngineLayer<float>> f32;
        std::vector<EngineLayer<double>> f64;
        for (std::size_t i = 0; i < spec.size(); ++i) {
            const std::string where = std::string(op) + " layer " + std::to_string(i);
            py::tuple t = py::reinterpret_borrow<py::object>(spec[i]).cast<py::tuple>();
            if (t.size() != 6)
                throw py::value_error(where + ": expected (weights, bias, weights_gradient, bias_gradient, activation, alpha)");
            py::array w = inplace_array(t[0], where.c_str(), "weights");
            if (i == 0) kind_ = float_kind(w, op, "weights");
            else require_same_dtype(params_.front(), w, op, "every layer's weights", "weights");
            require_ndim(w, 2, where.c_str(), "weights");
            const index_t out = w.shape(0), in = w.shape(1);
            if (in < 1 || out < 1) throw py::value_error(where + ": weights must not be empty, got shape " + shape_str(w));
            if (i > 0 && in != output_size_)
                throw py::value_error(where + ": weights of shape " + shape_str(w) + " take " + std::to_string(in) +
                                      " inputs but the previous layer has " + std::to_string(output_size_) + " outputs");
            py::array b = inplace_array(t[1], where.c_str(), "bias");
            require_same_dtype(w, b, where.c_str(), "weights", "bias");
            if (b.ndim() != 1 || b.shape(0) != out)
                throw py::value_error(where + ": expected bias of shape (" + std::to_string(out) + ",), got " + shape_str(b));
            std::vector<py::array> written{w, b};
            py::array dw = state_array(t[2], w, where.c_str(), "weights_gradient", written);
            py::array db = state_array(t[3], b, where.c_str(), "bias_gradient", written);
            const Act act = parse_act(t[4].cast<std::string>(), where.c_str());
            const double alpha = t[5].cast<double>();
            if (i == 0) input_size_ = in;
            output_size_ = out;
            params_.push_back(w);
            params_.push_back(b);
            for (const py::array& a : {w, b, dw, db}) layouts_.push_back({a, a.data(), {a.shape(), a.shape() + a.ndim()},
                                                                        {a.strides(), a.strides() + a.ndim()}, a.writeable()});
            if (kind_ == Float::f32)
                f32.push_back({in, out, static_cast<float*>(w.mutable_data()), static_cast<float*>(b.mutable_data()),
                               static_cast<float*>(dw.mutable_data()), static_cast<float*>(db.mutable_data()), act,
                               static_cast<float>(alpha)});
            else
                f64.push_back({in, out, static_cast<double*>(w.mutable_data()), static_cast<double*>(b.mutable_data()),
                               static_cast<double*>(dw.mutable_data()), static_cast<double*>(db.mutable_data()), act, alpha});
        }
        if (kind_ == Float::f32) f32_ = std::make_unique<Engine<float>>(std::move(f32));
        else f64_ = std::make_unique<Engine<double>>(std::move(f64));
    }

    py::dtype dtype() const { return kind_ == Float::f32 ? py::dtype::of<float>() : py::dtype::of<double>(); }
    index_t input_size() const { return input_size_; }

    index_t output_size() const { return output_size_; }
    std::size_t workspace_bytes() const { return f32_ ? f32_->workspace_bytes() : f64_->workspace_bytes(); }

    // Whether every array the engine was built from still has the layout it had then: numpy lets
    // code change an array's shape or strides, or make it read-only, in place (a.shape = ...,
    // a.flags.writeable = False), which the raw pointers held here would not follow.
    bool unchanged() const {
        for (const Layout& l : layouts_)
            if (!l.unchanged()) return false;
        return true;
    }

    py::array predict(const py::object& x_obj, const py::object& out) {
        const char* op = "Engine.predict";
        py::array x = rows_of(x_obj, op, "x");
        return kind_ == Float::f32 ? predict_impl<float>(*f32_, x, out) : predict_impl<double>(*f64_, x, out);
    }

    // The single-sample fast path of engine.predict_rows, all checks in one call: predict(x) when
    // the layers still hold what this engine was planned from (same_attributes with the caller's
    // record, and unchanged()) and x already is what the engine reads (an ndarray, not a subclass,
    // C-contiguous, of the engine's dtype: (n, input_size) rows with n >= 1, or with `column` one
    // (input_size, 1) column, whose output is then a column too); None otherwise, and the caller
    // takes its general path. Checked in Python, the same took ~0.7 us more per call
    // (Sequential.predict of one MNIST-MLP sample, 2 threads: 10.3 against 9.6 us).
    // With inference_mode (Sequential.predict), it also sets every layer's `training` to False, as
    // Sequential does after any predict (here without a Python loop: 6.5 -> 6.2 us per sample).
    py::object predict_if_current(const py::sequence& layers, const py::tuple& names, const py::tuple& expected,
                                  const py::handle& x_obj, bool column, bool inference_mode) {
        if (Py_TYPE(x_obj.ptr()) != py::detail::npy_api::get().PyArray_Type_) return py::none();
        auto x = py::reinterpret_borrow<py::array>(x_obj);
        if (x.ndim() != 2 || x.shape(0) < 1 || !(x.flags() & py::array::c_style) || !same_dtype(x.dtype(), dtype()))
            return py::none();
        const bool rows = x.shape(1) == input_size_;  // (rows first, as in predict_rows, when input_size is 1)
        if (!rows && !(column && x.shape(0) == input_size_ && x.shape(1) == 1)) return py::none();
        if (!unchanged() || !same_attributes(layers, names, expected)) return py::none();
        if (!rows) x = py::array(x.dtype(), std::vector<py::ssize_t>{1, input_size_}, x.data(), x);  // the same values
        py::array y = kind_ == Float::f32 ? predict_impl<float>(*f32_, x, py::none()) : predict_impl<double>(*f64_, x, py::none());
        if (!rows) y.resize(std::vector<py::ssize_t>{output_size_, 1});
        if (inference_mode) set_not_training(layers);
        return std::move(y);
    }

    py::dict run_epoch(const py::object& x_obj, const py::object& y_obj, const py::object& order_obj, const py::int_& batch_size,
                       const std::string& loss, const py::object& optimizer, const py::dict& hyper, const py::list& state,
                       const py::object& steps_obj, const py::object& clip_norm, index_t first_batch, const py::object& last_batch,
                       double loss_sum, long long correct, long long counted, bool count_accuracy, bool sparse_input,
                       bool flush_denormals) {
        return kind_ == Float::f32
                   ? run_impl<float>(*f32_, x_obj, y_obj, order_obj, batch_size, loss, optimizer, hyper, state, steps_obj, clip_norm,
                                     first_batch, last_batch, loss_sum, correct, counted, count_accuracy, sparse_input, flush_denormals)
                   : run_impl<double>(*f64_, x_obj, y_obj, order_obj, batch_size, loss, optimizer, hyper, state, steps_obj,
                                      clip_norm, first_batch, last_batch, loss_sum, correct, counted, count_accuracy, sparse_input, flush_denormals);
    }

private:
    // x as (n, input_size) rows of the engine's dtype (made C-contiguous, a copy only if needed).
    py::array rows_of(const py::object& x_obj, const char* op, const char* name) const {
        py::array x = as_array(x_obj, op, name);
        float_kind(x, op, name);
        if (!same_dtype(x.dtype(), dtype()))
            throw py::type_error(std::string(op) + ": expected " + name + " of dtype " + py::str(dtype()).cast<std::string>() +
                                 " (the network's), got " + dtype_str(x));
        require_ndim(x, 2, op, name);
        if (x.shape(1) != input_size_)
            throw py::value_error(std::string(op) + ": expected " + name + " of shape (n, " + std::to_string(input_size_) +
                                  "), got " + shape_str(x));
        if (x.shape(0) < 1) throw py::value_error(std::string(op) + ": " + name + " has no rows (shape " + shape_str(x) + ")");
        return x;
    }

    template <class T>
    py::array predict_impl(Engine<T>& engine, const py::array& x_in, const py::object& out) {
        auto x = contiguous<T>(x_in);
        const index_t n = x.shape(0);
        auto y = output_array<T>(out, {n, output_size_}, "Engine.predict", {&x_in});
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (overlaps(y, params_[i])) throw py::value_error("Engine.predict: out must not share memory with the parameters");
        const T* px = x.data();
        T* py_ = y.mutable_data();
        // Small work keeps the GIL (ReleaseGilFor), unless a training run holds the engine: this
        // thread then waits for it without the GIL.
        if (static_cast<double>(n) * engine.macs_per_row() > ReleaseGilFor::kHoldGilMaxWork ||
            !engine.try_predict(active_table<T>(), px, n, py_)) {
            py::gil_scoped_release release;
            engine.predict(active_table<T>(), px, n, py_);
        }
        return std::move(y);
    }

    static double hyper_value(const py::dict& hyper, const char* key, double fallback) {
        return hyper.contains(key) ? hyper[key].cast<double>() : fallback;
    }

    template <class T>
    py::dict run_impl(Engine<T>& engine, const py::object& x_obj, const py::object& y_obj, const py::object& order_obj,
                      const py::int_& batch_size_obj, const std::string& loss_name, const py::object& optimizer, const py::dict& hyper,
                      const py::list& state, const py::object& steps_obj, const py::object& clip_norm, index_t first_batch,
                      const py::object& last_batch_obj, double loss_sum, long long correct, long long counted,
                      bool count_accuracy, bool sparse_input, bool flush_denormals) {
        const char* op = "Engine.run_epoch";
        EpochArgs<T> a;
        auto x = contiguous<T>(rows_of(x_obj, op, "x"));
        a.x = x.data();
        a.n = x.shape(0);
        if (batch_size_obj < py::int_(1))
            throw py::value_error("Engine.run_epoch: expected batch_size >= 1, got " + py::str(batch_size_obj).cast<std::string>());
        // A batch larger than the data is one batch of all of it (any Python int, 2**64 included).
        const index_t batch_size = batch_size_obj < py::int_(a.n) ? batch_size_obj.cast<index_t>() : a.n;
        a.batch_size = batch_size;
        const index_t n_batches = (a.n + batch_size - 1) / batch_size;
        a.first_batch = first_batch;
        a.last_batch = last_batch_obj.is_none() ? n_batches : last_batch_obj.cast<index_t>();
        if (a.first_batch < 0 || a.last_batch > n_batches || a.first_batch > a.last_batch)
            throw py::value_error("Engine.run_epoch: expected 0 <= first_batch <= last_batch <= " + std::to_string(n_batches) +
                                  ", got " + std::to_string(a.first_batch) + " and " + std::to_string(a.last_batch));

        static const std::pair<const char*, EngineLoss> losses[] = {
            {"squared_error", EngineLoss::squared_error}, {"absolute_error", EngineLoss::absolute_error},
            {"binary_cross_entropy", EngineLoss::binary_cross_entropy},
            {"binary_cross_entropy_logits", EngineLoss::binary_cross_entropy_logits},
            {"cross_entropy", EngineLoss::cross_entropy}, {"classic_mse", EngineLoss::classic_mse},
            {"classic_bce", EngineLoss::classic_bce}};
        bool known = false;
        for (const auto& [name, kind] : losses)
            if (loss_name == name) a.loss = kind, known = true;
        if (!known)
            throw py::value_error("Engine.run_epoch: unknown loss '" + loss_name +
                                  "'; expected one of squared_error, absolute_error, binary_cross_entropy, "
                                  "binary_cross_entropy_logits, cross_entropy, classic_mse, classic_bce");

        // Targets: int64 labels (n,) for cross_entropy, else (n, outputs) rows of the dtype.
        py::array y = as_array(y_obj, op, "y");
        py::array_t<std::int64_t, py::array::c_style> labels;
        py::array_t<T, py::array::c_style> targets;
        if (a.loss == EngineLoss::cross_entropy && y.ndim() == 1) {
            if (!same_dtype(y.dtype(), py::dtype::of<std::int64_t>()))
                throw py::type_error("Engine.run_epoch: expected int64 class labels, got " + dtype_str(y));
            if (y.shape(0) != a.n)
                throw py::value_error("Engine.run_epoch: x has " + std::to_string(a.n) + " rows but y has shape " + shape_str(y));
            labels = py::array_t<std::int64_t, py::array::c_style>::ensure(y);
            const std::int64_t* pl = labels.data();
            for (index_t r = 0; r < a.n; ++r)
                if (pl[r] < 0 || pl[r] >= output_size_)
                    throw py::value_error("Engine.run_epoch: label " + std::to_string(pl[r]) + " of sample " + std::to_string(r) +
                                          " is out of range for " + std::to_string(output_size_) + " classes");
            a.labels = pl;
        } else {
            if (!same_dtype(y.dtype(), dtype()))
                throw py::type_error("Engine.run_epoch: expected y of dtype " + py::str(dtype()).cast<std::string>() + ", got " +
                                     dtype_str(y));
            if (y.ndim() != 2 || y.shape(0) != a.n || y.shape(1) != output_size_)
                throw py::value_error("Engine.run_epoch: expected y of shape (" + std::to_string(a.n) + ", " +
                                      std::to_string(output_size_) + "), got " + shape_str(y));
            targets = contiguous<T>(y);
            a.targets = targets.data();
        }
        a.target_width = output_size_;

        py::array_t<std::int64_t, py::array::c_style> order;
        if (!order_obj.is_none()) {
            py::array o = as_array(order_obj, op, "order");
            if (!same_dtype(o.dtype(), py::dtype::of<std::int64_t>()) || o.ndim() != 1 || o.shape(0) != a.n)
                throw py::value_error("Engine.run_epoch: expected order as an int64 permutation of shape (" + std::to_string(a.n) +
                                      ",), got dtype " + dtype_str(o) + " and shape " + shape_str(o));
            order = py::array_t<std::int64_t, py::array::c_style>::ensure(o);
            const std::int64_t* po = order.data();
            for (index_t r = 0; r < a.n; ++r)
                if (po[r] < 0 || po[r] >= a.n)
                    throw py::value_error("Engine.run_epoch: order holds " + std::to_string(po[r]) + ", outside [0, " +
                                          std::to_string(a.n) + ")");
            a.order = po;
        }

        // The optimizer and its state, one dict of arrays per parameter (weights0, bias0, ...).
        std::vector<EngineParamState<T>> states(params_.size());
        const std::string opt = optimizer.is_none() ? std::string() : optimizer.cast<std::string>();
        const double lr = hyper_value(hyper, "lr", 0.0);
        if (!opt.empty()) require_hyper(std::isfinite(lr) && lr >= 0, op, "lr", lr, "finite and >= 0");
        if (opt.empty()) a.update = EngineUpdate::none;
        else if (opt == "sgd_step") a.update = EngineUpdate::sgd_step, a.lr = lr;
        else if (opt == "sgd") {
            a.update = EngineUpdate::sgd;
            a.sgd = SgdOptions{lr, hyper_value(hyper, "momentum", 0.0), hyper_value(hyper, "weight_decay", 0.0),
                               hyper.contains("nesterov") && hyper["nesterov"].cast<bool>()};
            require_hyper(a.sgd.momentum >= 0 && a.sgd.momentum < 1, op, "momentum", a.sgd.momentum, "in [0, 1)");
        } else if (opt == "adam" || opt == "adamw") {
            a.update = EngineUpdate::adam;
            a.adam.lr = lr, a.adam.beta1 = hyper_value(hyper, "beta1", 0.9), a.adam.beta2 = hyper_value(hyper, "beta2", 0.999);
            a.adam.eps = hyper_value(hyper, "eps", 1e-8), a.adam.weight_decay = hyper_value(hyper, "weight_decay", 0.0);
            a.adam.decoupled = opt == "adamw";
        } else if (opt == "rmsprop") {
            a.update = EngineUpdate::rmsprop;
            a.rmsprop.lr = lr, a.rmsprop.alpha = hyper_value(hyper, "alpha", 0.99), a.rmsprop.eps = hyper_value(hyper, "eps", 1e-8);
            a.rmsprop.weight_decay = hyper_value(hyper, "weight_decay", 0.0), a.rmsprop.momentum = hyper_value(hyper, "momentum", 0.0);
            a.rmsprop.centered = hyper.contains("centered") && hyper["centered"].cast<bool>();
        } else {
            throw py::value_error("Engine.run_epoch: unknown optimizer '" + opt + "'; expected None, sgd_step, sgd, adam, adamw or rmsprop");
        }
        py::array_t<std::int64_t, py::array::c_style> steps;
        std::vector<py::array> held;
        if (a.update != EngineUpdate::none && a.update != EngineUpdate::sgd_step) {
            if (state.size() != params_.size())
                throw py::value_error("Engine.run_epoch: expected optimizer state for " + std::to_string(params_.size()) +
                                      " parameters, got " + std::to_string(state.size()));
            auto take = [&](const py::dict& d, std::size_t j, const char* name, bool wanted) -> T* {
                if (!wanted) return nullptr;
                if (!d.contains(name))
                    throw py::value_error(std::string("Engine.run_epoch: the state of parameter ") + std::to_string(j) + " has no " + name);
                std::vector<py::array> written{params_[j]};
                py::array s = state_array(d[name], params_[j], op, name, written);
                held.push_back(s);
                return static_cast<T*>(s.mutable_data());
            };
            for (std::size_t j = 0; j < params_.size(); ++j) {
                py::dict d = py::reinterpret_borrow<py::object>(state[j]).cast<py::dict>();
                EngineParamState<T>& st = states[j];
                st.momentum_buffer = take(d, j, "momentum_buffer",
                                          (a.update == EngineUpdate::sgd && a.sgd.momentum != 0) ||
                                              (a.update == EngineUpdate::rmsprop && a.rmsprop.momentum > 0));
                st.exp_avg = take(d, j, "exp_avg", a.update == EngineUpdate::adam);
                st.exp_avg_sq = take(d, j, "exp_avg_sq", a.update == EngineUpdate::adam);
                st.square_avg = take(d, j, "square_avg", a.update == EngineUpdate::rmsprop);
                st.grad_avg = take(d, j, "grad_avg", a.update == EngineUpdate::rmsprop && a.rmsprop.centered);
            }
            py::array s = as_array(steps_obj, op, "steps");
            if (!same_dtype(s.dtype(), py::dtype::of<std::int64_t>()) || s.ndim() != 1 ||
                s.shape(0) != static_cast<py::ssize_t>(params_.size()) || !s.writeable() || !(s.flags() & py::array::c_style))
                throw py::value_error("Engine.run_epoch: expected steps as a writable int64 array of shape (" +
                                      std::to_string(params_.size()) + ",)");
            steps = py::reinterpret_borrow<py::array_t<std::int64_t, py::array::c_style>>(s);
            a.steps = steps.mutable_data();
            a.states = states.data();
            if (!clip_norm.is_none()) {
                a.clip_norm = clip_norm.cast<double>();
                require_hyper(std::isfinite(a.clip_norm) && a.clip_norm > 0, op, "clip_norm", a.clip_norm, "finite and > 0");
            }
        }
        a.count_accuracy = count_accuracy;
        if (sparse_input && !fused_update(a.update))
            throw py::value_error("Engine.run_epoch: sparse_input=True needs optimizer sgd, adam, adamw or rmsprop, got " +
                                  (opt.empty() ? std::string("None") : opt));
        a.sparse_input = sparse_input;
        a.flush_subnormals = flush_denormals;

        EpochTotals totals;
        totals.loss_sum = loss_sum, totals.correct = correct, totals.counted = counted;
        {
            py::gil_scoped_release release;
            engine.run_epoch(active_table<T>(), a, totals);
        }
        py::dict result;
        result["loss_sum"] = totals.loss_sum;
        result["correct"] = totals.correct;
        result["counted"] = totals.counted;
        result["batches"] = totals.batches_done;
        result["failed_batch"] = totals.failed_batch < 0 ? py::object(py::none()) : py::object(py::int_(totals.failed_batch));
        result["failed_value"] = totals.failed_value;
        return result;
    }

    Float kind_ = Float::f32;
    index_t input_size_ = 0, output_size_ = 0;
    std::vector<py::array> params_;  // weights0, bias0, weights1, ...
    // Every array the engine writes or reads (kept alive here) and its layout when the engine was built.
    struct Layout {
        py::array array;
        const void* data;
        std::vector<py::ssize_t> shape, strides;
        bool writeable;
        bool unchanged() const {
            if (array.data() != data || array.writeable() != writeable || array.ndim() != static_cast<py::ssize_t>(shape.size()))
                return false;
            for (std::size_t d = 0; d < shape.size(); ++d)
                if (array.shape(d) != shape[d] || array.strides(d) != strides[d]) return false;
            return true;
        }
    };
    std::vector<Layout> layouts_;
    std::unique_ptr<Engine<float>> f32_;
    std::unique_ptr<Engine<double>> f64_;
};

// The arguments of the speed probes (peak.h): a float dtype's name and a duration.
void check_probe_args(const char* op, const std::string& dtype, double seconds) {
    if (!(seconds > 0.0 && seconds <= 60.0))
        throw py::value_error(std::string(op) + ": expected 0 < seconds <= 60, got " + std::to_string(seconds));
    if (dtype != "float32" && dtype != "float64")
        throw py::value_error(std::string(op) + ": expected dtype 'float32' or 'float64', got '" + dtype + "'");
}

double fma_peak_py(const std::string& dtype, double seconds, int threads) {
    check_probe_args("fma_peak", dtype, seconds);
    if (threads < 1 || threads > 1024)
        throw py::value_error("fma_peak: expected 1 <= threads <= 1024, got " + std::to_string(threads));
    py::gil_scoped_release release;
    return dtype == "float32" ? fma_peak_gflops(active_table<float>(), seconds, threads)
                              : fma_peak_gflops(active_table<double>(), seconds, threads);
}

double tile_peak_py(const std::string& dtype, double seconds) {
    check_probe_args("tile_peak", dtype, seconds);
    py::gil_scoped_release release;
    return dtype == "float32" ? tile_peak_gflops(active_table<float>(), seconds)
                              : tile_peak_gflops(active_table<double>(), seconds);
}

// Whether the object's own attributes hold a forward or backward (one instance's override of its
// class's method), which the engine would not run.
bool overrides_forward_or_backward(PyObject* layer) {
    static PyObject* const forward = PyUnicode_InternFromString("forward");
    static PyObject* const backward = PyUnicode_InternFromString("backward");
    PyObject* dict = PyObject_GenericGetDict(layer, nullptr);
    if (dict == nullptr) {
        PyErr_Clear();
        return false;
    }
    const bool found = PyDict_GetItem(dict, forward) != nullptr || PyDict_GetItem(dict, backward) != nullptr;
    Py_DECREF(dict);
    return found;
}

// Whether layers[1:] are the objects expected[...] says and every named attribute of every layer
// is still the very object recorded (identity, never equality): the check engine.predictor makes
// on each single-sample predict before it reuses a plan, here because in Python it costs as much as
// a third of the C++ forward. names[i] is a tuple of attribute names of layers[i]; expected holds,
// per layer, the layer itself (skipped for layer 0, which the caller checks), its type, then the
// attribute values in the order of names[i].
bool same_attributes(const py::sequence& layers, const py::tuple& names, const py::tuple& expected) {
    const std::size_t count = layers.size();
    if (count != names.size()) return false;
    std::size_t k = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const py::object layer = layers[i];
        const py::tuple attributes = names[i].cast<py::tuple>();
        if (k + 2 + attributes.size() > expected.size()) return false;
        if (i > 0 && !layer.is(expected[k])) return false;
        if (reinterpret_cast<PyObject*>(Py_TYPE(layer.ptr())) != expected[k + 1].ptr()) return false;
        if (overrides_forward_or_backward(layer.ptr())) return false;
        k += 2;
        for (const auto& name : attributes) {
            PyObject* value = PyObject_GetAttr(layer.ptr(), name.ptr());
            if (value == nullptr) {
                PyErr_Clear();
                return false;
            }
            const bool same = value == expected[k].ptr();
            Py_DECREF(value);
            if (!same) return false;
            ++k;
        }
    }
    return k == expected.size();
}

py::dict cpu_info() {
    py::dict info;
    const IsaChoice& choice = isa_choice();
    info["isa"] = isa_name(choice.isa);
    py::list available, compiled;
    for (int i = 0; i < kIsaCount; ++i) {
        const Isa isa = static_cast<Isa>(i);
        if (cpu_supports(isa)) available.append(isa_name(isa));
    }
    compiled.append("scalar");
#if defined(NNCORE_HAVE_X86_KERNELS)
    compiled.append("avx2");
    compiled.append("avx512");
#endif
    info["available_isas"] = available;
    info["compiled_isas"] = compiled;
    info["num_threads"] = get_num_threads();
    info["requested_isa"] = choice.requested.empty() ? py::object(py::none()) : py::object(py::str(choice.requested));
    info["isa_note"] = choice.note;
    const Tables& t = active_tables();
    // {"float32": of(t.f32), "float64": of(t.f64)}
    const auto per_dtype = [&t](auto of) {
        py::dict d;
        d["float32"] = of(t.f32);
        d["float64"] = of(t.f64);
        return d;
    };
    info["gemm_tile"] = per_dtype([](const auto& k) { return py::make_tuple(k.tile.mr, k.nr); });
    info["gemm_short_tile_rows"] = per_dtype([](const auto& k) {
        return k.tile_short.mr == k.tile.mr ? py::object(py::none()) : py::object(py::int_(k.tile_short.mr));
    });
    info["gemm_stream_max_rows"] = per_dtype([](const auto& k) {
        return k.stream_max_rows == std::numeric_limits<index_t>::max() ? py::object(py::none())
                                                                       : py::object(py::int_(k.stream_max_rows));
    });
    info["cpu_vendor"] = cpu_vendor();
    return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "nncore native kernels (SIMD, runtime CPU dispatch). Use the nncore package, not this module.";
    using py::arg;
    const auto none = py::none();
    m.def("cpu_info", &cpu_info);
    m.def("get_num_threads", &get_num_threads);
    m.def("set_num_threads", [](int n) {
        if (n < 1) throw py::value_error("set_num_threads: expected n >= 1, got " + std::to_string(n));
        set_num_threads(n);
    }, arg("n"));
    m.def("set_skip_zero_inputs", &set_skip_zero_inputs, arg("on"));  // set_sparse_input's, for predict/evaluate
    m.def("skip_zero_inputs", static_cast<bool (*)()>(&skip_zero_inputs));
    m.def("fma_peak", &fma_peak_py, arg("dtype") = "float32", arg("seconds") = 0.5, arg("threads") = 1);
    m.def("tile_peak", &tile_peak_py, arg("dtype") = "float32", arg("seconds") = 0.5);
    m.def("matmul", &matmul, arg("a"), arg("b"), arg("transpose_a") = py::bool_(false), arg("transpose_b") = py::bool_(false),
          arg("out") = none);
    m.def("linear", &linear_forward_py, arg("x"), arg("weights"), arg("bias") = none, arg("activation") = "identity",
          arg("alpha") = 0.0, arg("out") = none);
    m.def("linear_backward", &linear_backward_py, arg("x"), arg("weights"), arg("output_gradient"), arg("need_input_gradient") = true,
          arg("weights_gradient") = none, arg("bias_gradient") = none);
    m.def("conv2d", &conv2d_py, arg("x"), arg("weights"), arg("bias") = none, arg("stride") = 1, arg("padding") = 0,
          arg("dilation") = 1, arg("out") = none);
    m.def("conv2d_backward", &conv2d_backward_py, arg("x"), arg("weights"), arg("output_gradient"), arg("stride") = 1,
          arg("padding") = 0, arg("dilation") = 1, arg("need_input_gradient") = true, arg("weights_gradient") = none,
          arg("bias_gradient") = none);
    m.def("max_pool2d", [](const py::object& x, const py::object& k, const py::object& st, const py::object& out) {
        return pool2d_py(true, x, k, st, out); }, arg("x"), arg("kernel_size"), arg("stride") = none, arg("out") = none);
    m.def("avg_pool2d", [](const py::object& x, const py::object& k, const py::object& st, const py::object& out) {
        return pool2d_py(false, x, k, st, out); }, arg("x"), arg("kernel_size"), arg("stride") = none, arg("out") = none);
    m.def("max_pool2d_backward", [](const py::object& x, const py::object& dy, const py::object& k, const py::object& st) {
        return pool2d_backward_py(true, x, dy, k, st); }, arg("x"), arg("output_gradient"), arg("kernel_size"), arg("stride") = none);
    m.def("avg_pool2d_backward", [](const py::object& x, const py::object& dy, const py::object& k, const py::object& st) {
        return pool2d_backward_py(false, x, dy, k, st); }, arg("x"), arg("output_gradient"), arg("kernel_size"), arg("stride") = none);
    m.def("activation", &activation_py, arg("name"), arg("x"), arg("alpha") = 0.0, arg("out") = none);
    m.def("activation_backward", &activation_backward_py, arg("name"), arg("x"), arg("y"), arg("output_gradient"),
          arg("alpha") = 0.0, arg("out") = none);
    m.def("exp", &exp_py, arg("x"), arg("out") = none);
    m.def("all_finite", &all_finite_py, arg("x"));
    m.def("softmax", &softmax_py, arg("x"), arg("out") = none);
    m.def("softmax_backward", &softmax_backward_py, arg("y"), arg("output_gradient"), arg("out") = none);
    m.def("squared_error_sum", [](const py::object& t, const py::object& p) { return loss_sum_py(Loss::squared_error, t, p); },
          arg("y_true"), arg("y_pred"));
    m.def("squared_error_grad", [](const py::object& t, const py::object& p, double scale, const py::object& out) {
        return loss_grad_py(Loss::squared_error, t, p, scale, out);
    }, arg("y_true"), arg("y_pred"), arg("scale"), arg("out") = none);
    m.def("binary_cross_entropy_sum", [](const py::object& t, const py::object& p) {
        return loss_sum_py(Loss::binary_cross_entropy, t, p);
    }, arg("y_true"), arg("y_pred"));
    m.def("binary_cross_entropy_grad", [](const py::object& t, const py::object& p, double scale, const py::object& out) {
        return loss_grad_py(Loss::binary_cross_entropy, t, p, scale, out);
    }, arg("y_true"), arg("y_pred"), arg("scale"), arg("out") = none);
    m.def("sgd_step", &sgd_step_py, arg("param"), arg("grad"), arg("lr"));
    m.def("same_attributes", &same_attributes, arg("layers"), arg("names"), arg("expected"));
    m.def("sgd_rank1", &sgd_rank1_py, arg("weights"), arg("gradient"), arg("input"), arg("lr"));
    m.def("loss", &loss_value_py, arg("name"), arg("y_true"), arg("y_pred"), arg("scale"), arg("need_gradient") = true);
    m.def("softmax_cross_entropy", &softmax_cross_entropy_py, arg("logits"), arg("target"), arg("scale"),
          arg("need_gradient") = true);
    m.def("sgd_update", &sgd_update_py, arg("param"), arg("grad"), arg("momentum_buffer"), arg("lr"), arg("momentum") = 0.0,
          arg("nesterov") = false, arg("weight_decay") = 0.0);
    m.def("adam_update", &adam_update_py, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"), arg("step"), arg("lr"),
          arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled"));
    m.def("rmsprop_update", &rmsprop_update_py, arg("param"), arg("grad"), arg("square_avg"), arg("lr"), arg("alpha"), arg("eps"),
          arg("weight_decay"), arg("momentum"), arg("momentum_buffer"), arg("centered"), arg("grad_avg"));
    m.def("sum_of_squares", &sum_of_squares_py, arg("x"));
    m.def("scale", &scale_py, arg("x"), arg("factor"));

    py::class_<PyEngine>(m, "Engine")
        .def(py::init<const py::list&>(), arg("layers"))
        .def_property_readonly("dtype", &PyEngine::dtype)
        .def("unchanged", &PyEngine::unchanged)
        .def_property_readonly("input_size", &PyEngine::input_size)
        .def_property_readonly("output_size", &PyEngine::output_size)
        .def_property_readonly("workspace_bytes", &PyEngine::workspace_bytes)
        .def("predict", &PyEngine::predict, arg("x"), arg("out") = none)
        .def("predict_if_current", &PyEngine::predict_if_current, arg("layers"), arg("names"), arg("expected"), arg("x"),
             arg("column") = false, arg("inference_mode") = false)
        .def("run_epoch", &PyEngine::run_epoch, arg("x"), arg("y"), arg("order"), arg("batch_size"), arg("loss"),
             arg("optimizer") = none, arg("hyper") = py::dict(), arg("state") = py::list(), arg("steps") = none,
             arg("clip_norm") = none, arg("first_batch") = 0, arg("last_batch") = none, arg("loss_sum") = 0.0,
             arg("correct") = 0, arg("counted") = 0, arg("count_accuracy") = false, arg("sparse_input") = false,
             arg("flush_denormals") = false);
}
