// Op schemas, argument validation, backend registration and the pybind11 module.
//
// This is the only translation unit that includes <torch/extension.h> (it dominates compile
// time). Every argument is checked here, once for all backends, so that bad input raises a
// Python exception naming the argument and no kernel ever sees an index it could misuse.
#include <torch/extension.h>

#include "backends.h"
#include "trie.h"

#include <fstream>
#include <memory>
#include <sstream>

namespace eager_ext {
namespace {

// ---------------------------------------------------------------------------------------------
// Checks shared by the ops.

bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(is_supported_float(t.scalar_type()), op, ": ", name,
                   " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must have shape ", layout, " (", dim,
                    " dimensions), got shape ", t.sizes());
}

void check_long(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
                   t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& reference, const char* op,
                       const char* name, const char* reference_name) {
  TORCH_CHECK_VALUE(t.device() == reference.device(), op, ": ", name, " is on ", t.device(),
                    " but ", reference_name, " is on ", reference.device());
}

// Every id must lie in [0, limit). On CUDA this reads the ids back to the host (one sync);
// the training ops accept that cost to report the exact offending entry.
void check_index_range(const at::Tensor& ids, int64_t limit, const char* op, const char* name,
                       const char* limit_name) {
  if (ids.numel() == 0) return;
  const at::Tensor bad = ((ids < 0) | (ids >= limit)).nonzero();
  if (bad.size(0) == 0) return;
  const int64_t where = bad[0][0].item<int64_t>();
  TORCH_CHECK_INDEX(false, op, ": ", name, "[", where, "] = ", ids[where].item<int64_t>(),
                    " is out of range for ", limit_name, " (valid: 0 to ", limit - 1, "); ",
                    bad.size(0), " of ", ids.numel(), " entries are out of range");
}

// ---------------------------------------------------------------------------------------------
// rq_encode

void check_rq_encode(const at::Tensor& x, const at::Tensor& codebooks) {
  constexpr const char* op = "rq_encode";
  check_dim(x, 2, op, "x", "[N, D]");
  check_dim(codebooks, 3, op, "codebooks", "[L, K, D]");
  check_float(x, op, "x");
  TORCH_CHECK_TYPE(codebooks.scalar_type() == x.scalar_type(), op,
                   ": codebooks must have the dtype of x (", x.scalar_type(), "), got ",
                   codebooks.scalar_type());
  check_same_device(codebooks, x, op, "codebooks", "x");
  TORCH_CHECK_VALUE(codebooks.size(2) == x.size(1), op, ": codebooks [L, K, D] has D = ",
                    codebooks.size(2), " but x [N, D] has D = ", x.size(1));
  TORCH_CHECK_VALUE(codebooks.size(0) >= 1 && codebooks.size(1) >= 1 && codebooks.size(2) >= 1,
                    op, ": codebooks must have L >= 1 levels, K >= 1 centroids and D >= 1, got "
                    "shape ", codebooks.sizes());
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> rq_encode_impl(const at::Tensor& x, const at::Tensor& codebooks) {
  check_rq_encode(x, codebooks);
  return Kernel(x.contiguous(), codebooks.contiguous());
}

// ---------------------------------------------------------------------------------------------
// summary_gather

template <auto Kernel>
at::Tensor summary_gather_impl(const at::Tensor& hidden, const at::Tensor& positions) {
  constexpr const char* op = "summary_gather";
  check_dim(hidden, 3, op, "hidden", "[B, T, H]");
  check_dim(positions, 1, op, "positions", "[B]");
  check_long(positions, op, "positions");
  check_same_device(positions, hidden, op, "positions", "hidden");
  TORCH_CHECK_VALUE(positions.size(0) == hidden.size(0), op, ": positions has ",
                    positions.size(0), " entries but hidden has B = ", hidden.size(0));
  check_index_range(positions, hidden.size(1), op, "positions", "hidden's T dimension");
  // Row copies need unit stride along H only; the batch and time strides can be anything, so a
  // slice of a larger activation is read in place instead of copied.
  const at::Tensor rows = hidden.stride(2) == 1 ? hidden : hidden.contiguous();
  return Kernel(rows, positions.contiguous());
}

// ---------------------------------------------------------------------------------------------
// gathered_infonce

struct InfonceArgs {
  at::Tensor query, table, positive_ids, negative_ids, valid;
};

InfonceArgs check_gathered_infonce(const at::Tensor& query, const at::Tensor& table,
                                   const at::Tensor& positive_ids, const at::Tensor& negative_ids,
                                   double temperature, const std::optional<at::Tensor>& valid) {
  constexpr const char* op = "gathered_infonce";
  check_dim(query, 2, op, "query", "[B, E]");
  check_dim(table, 2, op, "table", "[N, E]");
  check_dim(positive_ids, 1, op, "positive_ids", "[B]");
  check_dim(negative_ids, 1, op, "negative_ids", "[M]");
  check_float(query, op, "query");
  TORCH_CHECK_TYPE(table.scalar_type() == query.scalar_type(), op,
                   ": table must have the dtype of query (", query.scalar_type(), "), got ",
                   table.scalar_type());
  check_long(positive_ids, op, "positive_ids");
  check_long(negative_ids, op, "negative_ids");
  for (const auto& [t, name] : {std::pair{table, "table"}, {positive_ids, "positive_ids"},
                                {negative_ids, "negative_ids"}})
    check_same_device(t, query, op, name, "query");
  TORCH_CHECK_VALUE(table.size(1) == query.size(1), op, ": table [N, E] has E = ", table.size(1),
                    " but query [B, E] has E = ", query.size(1));
  TORCH_CHECK_VALUE(positive_ids.size(0) == query.size(0), op, ": positive_ids has ",
                    positive_ids.size(0), " entries but query has B = ", query.size(0));
  TORCH_CHECK_VALUE(std::isfinite(temperature) && temperature > 0, op,
                    ": temperature must be a positive finite number, got ", temperature);
  check_index_range(positive_ids, table.size(0), op, "positive_ids", "table's rows");
  check_index_range(negative_ids, table.size(0), op, "negative_ids", "table's rows");
  at::Tensor row_mask;
  if (valid.has_value()) {
    check_dim(*valid, 1, op, "valid", "[B]");
    TORCH_CHECK_TYPE(valid->scalar_type() == at::kBool, op, ": valid must be bool, got ",
                     valid->scalar_type());
    check_same_device(*valid, query, op, "valid", "query");
    TORCH_CHECK_VALUE(valid->size(0) == query.size(0), op, ": valid has ", valid->size(0),
                      " entries but query has B = ", query.size(0));
    row_mask = valid->contiguous();
  } else {
    row_mask = at::ones({query.size(0)}, query.options().dtype(at::kBool));
  }
  const at::Tensor rows = table.stride(1) == 1 ? table : table.contiguous();
  return {query.contiguous(), rows, positive_ids.contiguous(), negative_ids.contiguous(), row_mask};
}

template <auto Forward>
at::Tensor gathered_infonce_impl(const at::Tensor& query, const at::Tensor& table,
                                 const at::Tensor& positive_ids, const at::Tensor& negative_ids,
                                 double temperature, const std::optional<at::Tensor>& valid) {
  const InfonceArgs a =
      check_gathered_infonce(query, table, positive_ids, negative_ids, temperature, valid);
  return std::get<0>(Forward(a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid));
}

// The backward recomputes the [B, 1 + M] logits instead of saving them, like FlashAttention:
// one more pass over the negative rows buys a loss whose autograd state is only its inputs.
template <auto Forward, auto Backward>
at::Tensor gathered_infonce_backward_impl(const at::Tensor& grad_loss, const at::Tensor& query,
                                          const at::Tensor& table, const at::Tensor& positive_ids,
                                          const at::Tensor& negative_ids, double temperature,
                                          const std::optional<at::Tensor>& valid) {
  const InfonceArgs a =
      check_gathered_infonce(query, table, positive_ids, negative_ids, temperature, valid);
  TORCH_CHECK_VALUE(grad_loss.numel() == 1, "gathered_infonce_backward: grad_loss must be a "
                    "scalar, got shape ", grad_loss.sizes());
  const at::Tensor logits =
      std::get<1>(Forward(a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid));
  const at::Tensor grad = grad_loss.to(query.device(), at::kFloat).reshape({});
  return Backward(grad, a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid,
                  logits);
}


// ---------------------------------------------------------------------------------------------
// Trie ops. The trie arrives as its flat tensors plus three numbers the pybind11 ItemTrie
// computed when it was built, so no step ever scans the trie or syncs with the device.

struct TrieArgs {
  at::Tensor child_offsets, child_tokens, child_nodes;
  int64_t min_token, max_token, max_children;
};

TrieTensors check_trie(const char* op, const at::Tensor& logits, const TrieArgs& trie,
                       int64_t vocab_offset) {
  check_dim(logits, 2, op, "logits", "[rows, V]");
  check_float(logits, op, "logits");
  for (const auto& [t, name] : {std::pair{trie.child_offsets, "trie.child_offsets"},
                                {trie.child_tokens, "trie.child_tokens"},
                                {trie.child_nodes, "trie.child_nodes"}}) {
    check_long(t, op, name);
    check_dim(t, 1, op, name, "[n]");
    TORCH_CHECK_VALUE(t.device() == logits.device(), op, ": the trie is on ", t.device(),
                      " but logits is on ", logits.device(), "; move it with trie.to(device)");
  }
  TORCH_CHECK_VALUE(trie.child_offsets.size(0) >= 1 &&
                        trie.child_tokens.size(0) == trie.child_nodes.size(0),
                    op, ": inconsistent trie arrays");
  const int64_t first_column = vocab_offset, last_column = vocab_offset + logits.size(1) - 1;
  TORCH_CHECK_INDEX(trie.min_token >= first_column && trie.max_token <= last_column, op,
                    ": the trie's tokens span ", trie.min_token, " to ", trie.max_token,
                    " but the logits' columns hold tokens ", first_column, " to ", last_column,
                    " (vocab_offset = ", vocab_offset, ", V = ", logits.size(1), ")");
  return {trie.child_offsets.contiguous(), trie.child_tokens.contiguous(),
          trie.child_nodes.contiguous(), trie.max_children};
}

// Rows need unit column stride only: a column slice of the full logits is read in place.
at::Tensor rows_with_unit_column_stride(const at::Tensor& logits) {
  return logits.stride(1) == 1 ? logits : logits.contiguous();
}

template <auto Kernel>
BeamStep trie_beam_step_impl(const at::Tensor& logits, const at::Tensor& beam_scores,
                             const at::Tensor& nodes, const at::Tensor& child_offsets,
                             const at::Tensor& child_tokens, const at::Tensor& child_nodes,
                             int64_t num_beams, int64_t vocab_offset, bool log_normalize,
                             int64_t min_token, int64_t max_token, int64_t max_children) {
  constexpr const char* op = "trie_beam_step";
  const TrieTensors trie = check_trie(
      op, logits, {child_offsets, child_tokens, child_nodes, min_token, max_token, max_children},
      vocab_offset);
  TORCH_CHECK_VALUE(num_beams >= 1, op, ": num_beams must be >= 1, got ", num_beams);
  TORCH_CHECK_VALUE(logits.size(0) % num_beams == 0, op, ": logits has ", logits.size(0),
                    " rows, which is not batch x num_beams for num_beams = ", num_beams);
  check_dim(beam_scores, 1, op, "beam_scores", "[rows]");
  check_dim(nodes, 1, op, "nodes", "[rows]");
  TORCH_CHECK_TYPE(beam_scores.scalar_type() == at::kFloat, op,
                   ": beam_scores must be float32, got ", beam_scores.scalar_type());
  check_long(nodes, op, "nodes");
  check_same_device(beam_scores, logits, op, "beam_scores", "logits");
  check_same_device(nodes, logits, op, "nodes", "logits");
  TORCH_CHECK_VALUE(beam_scores.size(0) == logits.size(0) && nodes.size(0) == logits.size(0), op,
                    ": beam_scores and nodes need one entry per logits row (", logits.size(0),
                    "), got ", beam_scores.size(0), " and ", nodes.size(0));
  return Kernel(rows_with_unit_column_stride(logits), beam_scores.contiguous(), nodes.contiguous(),
                trie, num_beams, vocab_offset, log_normalize);
}

template <auto Kernel>
void trie_mask_impl(const at::Tensor& logits, const at::Tensor& nodes,
                          const at::Tensor& child_offsets, const at::Tensor& child_tokens,
                          const at::Tensor& child_nodes, int64_t vocab_offset, int64_t min_token,
                          int64_t max_token, int64_t max_children) {
  constexpr const char* op = "trie_mask_";
  const TrieTensors trie = check_trie(
      op, logits, {child_offsets, child_tokens, child_nodes, min_token, max_token, max_children},
      vocab_offset);
  TORCH_CHECK_VALUE(logits.stride(1) == 1, op, ": logits must have unit stride along the "
                    "vocabulary to be masked in place; pass a contiguous tensor");
  check_dim(nodes, 1, op, "nodes", "[rows]");
  check_long(nodes, op, "nodes");
  check_same_device(nodes, logits, op, "nodes", "logits");
  TORCH_CHECK_VALUE(nodes.size(0) == logits.size(0), op, ": nodes has ", nodes.size(0),
                    " entries but logits has ", logits.size(0), " rows");
  // Masking is used with HF generate, which syncs every step anyway; one more buys an exact error.
  check_index_range(nodes, child_offsets.size(0) - 1, op, "nodes", "the trie's nodes");
  Kernel(logits, nodes.contiguous(), trie, vocab_offset);
}

}  // namespace

TORCH_LIBRARY(eager_ext, m) {
  m.def("rq_encode(Tensor x, Tensor codebooks) -> (Tensor codes, Tensor residual_norm)");
  m.def("summary_gather(Tensor hidden, Tensor positions) -> Tensor");
  m.def("gathered_infonce(Tensor query, Tensor table, Tensor positive_ids, Tensor negative_ids, "
        "float temperature, Tensor? valid=None) -> Tensor");
  m.def("gathered_infonce_backward(Tensor grad_loss, Tensor query, Tensor table, "
        "Tensor positive_ids, Tensor negative_ids, float temperature, Tensor? valid=None) -> "
        "Tensor");
  m.def("trie_beam_step(Tensor logits, Tensor beam_scores, Tensor nodes, Tensor child_offsets, "
        "Tensor child_tokens, Tensor child_nodes, int num_beams, int vocab_offset, "
        "bool log_normalize, int min_token, int max_token, int max_children) -> "
        "(Tensor scores, Tensor parents, Tensor tokens, Tensor next_nodes)");
  m.def("trie_mask_(Tensor(a!) logits, Tensor nodes, Tensor child_offsets, Tensor child_tokens, "
        "Tensor child_nodes, int vocab_offset, int min_token, int max_token, int max_children) "
        "-> ()");
}

TORCH_LIBRARY_IMPL(eager_ext, CPU, m) {
  m.impl("rq_encode", &rq_encode_impl<cpu::rq_encode>);
  m.impl("summary_gather", &summary_gather_impl<cpu::summary_gather>);
  m.impl("gathered_infonce", &gathered_infonce_impl<cpu::gathered_infonce_forward>);
  m.impl("gathered_infonce_backward",
         &gathered_infonce_backward_impl<cpu::gathered_infonce_forward,
                                         cpu::gathered_infonce_backward>);
  m.impl("trie_beam_step", &trie_beam_step_impl<cpu::trie_beam_step>);
  m.impl("trie_mask_", &trie_mask_impl<cpu::trie_mask_>);
}

#ifdef EAGER_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(eager_ext, CUDA, m) {
  m.impl("rq_encode", &rq_encode_impl<cuda::rq_encode>);
  m.impl("summary_gather", &summary_gather_impl<cuda::summary_gather>);
  m.impl("gathered_infonce", &gathered_infonce_impl<cuda::gathered_infonce_forward>);
  m.impl("gathered_infonce_backward",
         &gathered_infonce_backward_impl<cuda::gathered_infonce_forward,
                                         cuda::gathered_infonce_backward>);
  m.impl("trie_beam_step", &trie_beam_step_impl<cuda::trie_beam_step>);
  m.impl("trie_mask_", &trie_mask_impl<cuda::trie_mask_>);
}
#endif

}  // namespace eager_ext

namespace eager_ext {
namespace {

// The Python face of ItemTrie: an immutable C++ trie, shared between copies on different
// devices, plus its arrays as tensors on this copy's device. insert() builds a new trie and
// swaps it in, so other copies keep the version they had.
class PyItemTrie {
 public:
  PyItemTrie(std::shared_ptr<const ItemTrie> trie, c10::Device device)
      : trie_(std::move(trie)), device_(device) {
    upload();
  }

  static PyItemTrie from_tensor(const at::Tensor& tokens) {
    check_token_matrix(tokens, "ItemTrie.from_codes", "tokens");
    const at::Tensor rows = tokens.to(at::kCPU, at::kLong).contiguous();
    std::vector<int64_t> codes(rows.const_data_ptr<int64_t>(), rows.const_data_ptr<int64_t>() + rows.numel());
    return PyItemTrie(std::make_shared<const ItemTrie>(ItemTrie::from_codes(std::move(codes), rows.size(0), rows.size(1))),
                      c10::Device(c10::kCPU));
  }

  static PyItemTrie from_rows(const std::vector<std::vector<int64_t>>& rows) {
    return from_tensor(rows_to_tensor(rows, "ItemTrie.from_codes"));
  }

  PyItemTrie to(const c10::Device& device) const { return PyItemTrie(trie_, device); }

  at::Tensor insert(const at::Tensor& tokens) {
    check_token_matrix(tokens, "ItemTrie.insert", "tokens");
    TORCH_CHECK_VALUE(tokens.size(1) == trie_->depth(), "ItemTrie.insert: tokens must have ",
                      trie_->depth(), " columns (the trie's depth), got ", tokens.size(1));
    const at::Tensor rows = tokens.to(at::kCPU, at::kLong).contiguous();
    auto updated = std::make_shared<ItemTrie>(*trie_);
    const std::vector<int64_t> ids = updated->insert(
        std::vector<int64_t>(rows.const_data_ptr<int64_t>(), rows.const_data_ptr<int64_t>() + rows.numel()),
        rows.size(0));
    trie_ = std::move(updated);
    upload();
    return vector_to_tensor(ids);
  }

  at::Tensor lookup(const at::Tensor& tokens) const {
    TORCH_CHECK_VALUE(tokens.dim() == 2, "ItemTrie.lookup: tokens must have shape [M, L], got ",
                      tokens.sizes());
    TORCH_CHECK_TYPE(!at::isFloatingType(tokens.scalar_type()) && tokens.scalar_type() != at::kBool,
                     "ItemTrie.lookup: tokens must be integers, got ", tokens.scalar_type());
    const at::Tensor rows = tokens.to(at::kCPU, at::kLong).contiguous();
    std::vector<int64_t> items(rows.size(0));
    for (int64_t i = 0; i < rows.size(0); ++i)
      items[i] = trie_->lookup(rows.const_data_ptr<int64_t>() + i * rows.size(1), rows.size(1));
    return vector_to_tensor(items).to(tokens.device());
  }

  // -1 (the padding a beam step writes) maps to -1; any other node outside the trie is an error.
  at::Tensor item_of(const at::Tensor& nodes) const {
    TORCH_CHECK_TYPE(nodes.scalar_type() == at::kLong, "ItemTrie.item_of: nodes must be int64, got ",
                     nodes.scalar_type());
    const at::Tensor flat = nodes.reshape({-1}).to(device_);
    const at::Tensor bad = ((flat < -1) | (flat >= trie_->num_nodes())).nonzero();
    TORCH_CHECK_INDEX(bad.size(0) == 0, "ItemTrie.item_of: node ", flat[bad[0][0]].item<int64_t>(),
                      " is out of range (the trie has ", trie_->num_nodes(), " nodes)");
    const at::Tensor padded = at::cat({leaf_items_, at::full({1}, -1, leaf_items_.options())});
    // Node -1 indexes the appended -1.
    const at::Tensor index = at::where(flat < 0, at::full_like(flat, trie_->num_nodes()), flat);
    return padded.index_select(0, index).reshape(nodes.sizes()).to(nodes.device());
  }

  void save(const std::string& path) const { trie_->save(path); }

  static PyItemTrie load(const std::string& path) {
    if (!std::ifstream(path)) {
      PyErr_SetString(PyExc_FileNotFoundError, ("ItemTrie.load: no such file: " + path).c_str());
      throw pybind11::error_already_set();
    }
    return PyItemTrie(std::make_shared<const ItemTrie>(ItemTrie::load(path)), c10::Device(c10::kCPU));
  }

  const ItemTrie& trie() const { return *trie_; }
  c10::Device device() const { return device_; }
  const at::Tensor& child_offsets() const { return child_offsets_; }
  const at::Tensor& child_tokens() const { return child_tokens_; }
  const at::Tensor& child_nodes() const { return child_nodes_; }
  const at::Tensor& leaf_items() const { return leaf_items_; }
  at::Tensor codes() const {
    return vector_to_tensor(trie_->codes()).view({trie_->num_items(), trie_->depth()});
  }

  std::string repr() const {
    std::ostringstream out;
    out << "ItemTrie(num_items=" << trie_->num_items() << ", depth=" << trie_->depth()
        << ", num_nodes=" << trie_->num_nodes() << ", tokens=" << trie_->min_token() << ".."
        << trie_->max_token() << ", device=" << device_ << ")";
    return out.str();
  }

  static at::Tensor rows_to_tensor(const std::vector<std::vector<int64_t>>& rows, const char* where) {
    TORCH_CHECK_VALUE(!rows.empty(), where, ": tokens is empty; the trie needs at least one item");
    const size_t width = rows[0].size();
    std::vector<int64_t> flat;
    flat.reserve(rows.size() * width);
    for (size_t i = 0; i < rows.size(); ++i) {
      TORCH_CHECK_VALUE(rows[i].size() == width, where, ": ragged tokens: row ", i, " has ",
                        rows[i].size(), " tokens but row 0 has ", width,
                        "; every item needs the same number of tokens");
      flat.insert(flat.end(), rows[i].begin(), rows[i].end());
    }
    return vector_to_tensor(flat).view({static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)});
  }

 private:
  static void check_token_matrix(const at::Tensor& tokens, const char* where, const char* name) {
    TORCH_CHECK_VALUE(tokens.dim() == 2, where, ": ", name, " must have shape [N, L], got ",
                      tokens.sizes());
    TORCH_CHECK_TYPE(!at::isFloatingType(tokens.scalar_type()) && tokens.scalar_type() != at::kBool,
                     where, ": ", name, " must be integers, got ", tokens.scalar_type());
  }

  static at::Tensor vector_to_tensor(const std::vector<int64_t>& values) {
    at::Tensor out = at::empty({static_cast<int64_t>(values.size())}, at::kLong);
    std::copy(values.begin(), values.end(), out.data_ptr<int64_t>());
    return out;
  }

  void upload() {
    child_offsets_ = vector_to_tensor(trie_->child_offsets()).to(device_);
    child_tokens_ = vector_to_tensor(trie_->child_tokens()).to(device_);
    child_nodes_ = vector_to_tensor(trie_->child_nodes()).to(device_);
    leaf_items_ = vector_to_tensor(trie_->leaf_items()).to(device_);
  }

  std::shared_ptr<const ItemTrie> trie_;
  c10::Device device_;
  at::Tensor child_offsets_, child_tokens_, child_nodes_, leaf_items_;
};

std::string path_string(const pybind11::object& path) {
  return pybind11::str(pybind11::module_::import("os").attr("fspath")(path));
}

void bind_item_trie(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<PyItemTrie>(m, "ItemTrie", R"doc(
The set of valid items as a trie of token sequences, stored flat for the beam-step kernels.

Build it with ItemTrie.from_codes(tokens), where tokens [N, L] holds each item's token ids
(item id = row index). Nodes are numbered breadth-first (root 0) with siblings in token order;
node ids are only valid for one version of a trie (insert renumbers them). Arrays:
child_offsets [num_nodes + 1], child_tokens and child_nodes [num_nodes - 1], leaf_items
[num_nodes] (-1 for internal nodes), all int64 on the trie's device.)doc")
      .def_static("from_codes", &PyItemTrie::from_tensor, py::arg("tokens"),
                  "Builds a trie from an integer tensor [N, L]; duplicate rows raise ValueError.")
      .def_static("from_codes", &PyItemTrie::from_rows, py::arg("tokens"),
                  "Builds a trie from a list of N rows of L token ids.")
      .def_static("load", [](const py::object& path) { return PyItemTrie::load(path_string(path)); },
                  py::arg("path"), "Reads a trie written by save() (onto the CPU).")
      .def("save", [](const PyItemTrie& t, const py::object& path) { t.save(path_string(path)); },
           py::arg("path"), "Writes the trie atomically (no pickle: a small checksummed binary file).")
      .def("to", &PyItemTrie::to, py::arg("device"), "A copy whose arrays live on `device`.")
      .def("to", [](const PyItemTrie& t, const std::string& device) { return t.to(c10::Device(device)); },
           py::arg("device"))
      .def("insert", &PyItemTrie::insert, py::arg("tokens"),
           "Adds new items [M, L] with ids num_items .. num_items + M - 1 and returns those ids.")
      .def("insert", [](PyItemTrie& t, const std::vector<std::vector<int64_t>>& rows) {
             return t.insert(PyItemTrie::rows_to_tensor(rows, "ItemTrie.insert"));
           }, py::arg("tokens"))
      .def("lookup", &PyItemTrie::lookup, py::arg("tokens"),
           "Item id of each row of tokens [M, L'], or -1 where no item has exactly those tokens.")
      .def("item_of", &PyItemTrie::item_of, py::arg("nodes"),
           "Item id at each node, -1 for internal nodes and for the padding node -1.")
      .def_property_readonly("num_items", [](const PyItemTrie& t) { return t.trie().num_items(); })
      .def_property_readonly("depth", [](const PyItemTrie& t) { return t.trie().depth(); })
      .def_property_readonly("num_nodes", [](const PyItemTrie& t) { return t.trie().num_nodes(); })
      .def_property_readonly("max_children", [](const PyItemTrie& t) { return t.trie().max_children(); })
      .def_property_readonly("min_token", [](const PyItemTrie& t) { return t.trie().min_token(); })
      .def_property_readonly("max_token", [](const PyItemTrie& t) { return t.trie().max_token(); })
      .def_property_readonly("device", &PyItemTrie::device)
      .def_property_readonly("child_offsets", &PyItemTrie::child_offsets)
      .def_property_readonly("child_tokens", &PyItemTrie::child_tokens)
      .def_property_readonly("child_nodes", &PyItemTrie::child_nodes)
      .def_property_readonly("leaf_items", &PyItemTrie::leaf_items)
      .def_property_readonly("codes", &PyItemTrie::codes, "The items' tokens [num_items, depth] (CPU).")
      .def("__repr__", &PyItemTrie::repr);
}

}  // namespace
}  // namespace eager_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "C++/CUDA kernels of eager_ext; use them through the eager_ext package.";
  m.def("cuda_kernels_built", [] {
#ifdef EAGER_EXT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether this build of the extension contains the CUDA kernels.");
  eager_ext::bind_item_trie(m);
}
