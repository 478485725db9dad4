// tilecodec/format/policy_rules.hpp: choosing a policy for each tensor of a model by name pattern,
// dtype, rank and size (selective compression), with named presets and a JSON rules file.
//
// Policy names (what the CLI and rules files accept, and what `tilecodec inspect` prints):
//   raw          the tensor's bytes as they are (any dtype)
//   lossless     exponent plane entropy-coded, sign+mantissa raw: bit-exact (F32, F16, BF16)
//   int8         symmetric per-row int8, entropy-coded
//   int4-g128    symmetric int4 per group of 128 columns (also int4-g64, int4-g32; int4 = int4-g128)
// optionally followed by ":tile=RxC" (tile shape, default 256x256), ":coder=raw" (store symbols
// uncoded instead of rANS), ":coder=fixed" (fixed-length codes, for fused kernels),
// ":coder=fixed-marked" (fixed-length codes with marked escapes, for device-wide decode) or
// ":coder=rans-lanes" (rANS with one stream per lane, for GPU decode; lanes 32, 64, 128), ":order=mma"
// (symbols in MMA fragment order), ":lanes=N" and ":prob-bits=P" (rANS parameters; for the fixed
// coders the code width, 1..9, pinned: the symbol width means no escapes). A choice this build's
// format cannot encode is refused when the policy is parsed.
//
// Rules are tried in order; the first that matches a tensor gives its policy. A rule matches when
// its glob pattern matches the whole tensor name (`*` any run, `?` one character, `[abc]`, `[a-z]`,
// `[!x]` classes) and the tensor passes the rule's optional filters (dtypes, rank range, element
// range). A tensor no rule matches is encoded lossless. A tensor whose dtype the codec cannot
// encode (I64, BOOL, F64, F8_*, integers) is stored raw whatever the rules say: never dropped.
//
// Presets (rules appended after the user's own):
//   lossless (the default)  small tensors (< 16384 elements), norms and biases raw; the rest lossless
//   int8                    as lossless, but 2-D+ attention and MLP weight matrices int8
//   int4                    as lossless, but 2-D+ attention and MLP weight matrices int4-g128
//   int8-fused              as int8, but the matrices in the fused kernels' form (fused/): mma
//                           order, fixed-length codes pinned at 8 bits (no escapes: the fastest
//                           fused int8, docs/PERFORMANCE.md 6.13), "int8:coder=fixed:order=mma:prob-bits=8"
//   int4-fused              as int4, the matrices "int4-g128:coder=fixed:order=mma"
//   raw                     everything raw (a repackaging, for comparison)
// Embeddings and output heads stay lossless in every preset: quantizing them costs the most quality.
//
// Rules file (JSON):
//   {"preset": "int8",
//    "rules": [{"pattern": "*.bias", "policy": "raw"},
//              {"pattern": "*mlp*", "dtype": ["BF16", "F16"], "min_rank": 2, "min_elements": 65536,
//               "policy": "int4-g64"}]}
// Rule fields: pattern (default "*"), policy (required), dtype (a name or a list), rank, min_rank,
// max_rank, min_elements, max_elements. Anything else is an error naming the file, rule and field.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dtype.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"
#include "encoded_tensor.hpp"

namespace tilecodec {

// What to do with one tensor: keep its bytes, or encode it with `params`.
struct tensor_policy {
  bool stored = false;
  format_params params = lossless_codec::params();

  [[nodiscard]] static tensor_policy raw() {
    tensor_policy p;
    p.stored = true;
    return p;
  }
  [[nodiscard]] static tensor_policy encoded(const format_params& params) {
    tensor_policy p;
    p.params = params;
    return p;
  }
  [[nodiscard]] bool quantized() const { return !stored && params.quant != quant::kind::lossless; }

  friend bool operator==(const tensor_policy& a, const tensor_policy& b) {
    return a.stored == b.stored && (a.stored || a.params == b.params);
  }
  friend bool operator!=(const tensor_policy& a, const tensor_policy& b) { return !(a == b); }
};

// The name of a policy: "raw", "lossless", "int8", "int4-g128", plus ":tile=RxC", ":coder=raw",
// ":lanes=N" where they differ from the defaults. prob-bits is left out: the encoder records the
// precision it used (up to the maximum asked for), so it says nothing about the user's choice.
[[nodiscard]] inline std::string policy_name(const tensor_policy& p) {
  if (p.stored) return "raw";
  std::string name;
  switch (p.params.quant) {
    case quant::kind::lossless: name = "lossless"; break;
    case quant::kind::int8_rowwise: name = "int8"; break;
    case quant::kind::int4_group: name = "int4-g" + std::to_string(p.params.group_size); break;
    default: name = "quant" + std::to_string(int(p.params.quant)); break;
  }
  if (p.params.tile_rows != 256 || p.params.tile_cols != 256)
    name += ":tile=" + std::to_string(p.params.tile_rows) + "x" + std::to_string(p.params.tile_cols);
  // Coder and order ids by number, so names keep working as the enums grow (append only).
  const int coder_id = static_cast<int>(p.params.coder), order_id = static_cast<int>(p.params.order);
  if (coder_id == 0) name += ":coder=raw";
  else if (coder_id == 2) name += ":coder=fixed";
  else if (coder_id == 3) name += ":coder=rans-lanes";
  else if (coder_id == 4) name += ":coder=fixed-marked";
  else if (coder_id != 1) name += ":coder=" + std::to_string(coder_id);
  if ((coder_id == 1 || coder_id == 3) && p.params.lanes != 32) name += ":lanes=" + std::to_string(p.params.lanes);
  if (order_id == 1) name += ":order=mma";
  else if (order_id != 0) name += ":order=" + std::to_string(order_id);
  return name;
}

namespace detail {

inline bool parse_u32(std::string_view text, std::uint32_t& out) {
  if (text.empty() || text.size() > 9) return false;
  std::uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + std::uint32_t(c - '0');
  }
  out = v;
  return true;
}

inline std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// One bracket class at p[i] == '['; sets `matched` and returns the index after ']', or npos when
// the class is not closed (then '[' is an ordinary character).
inline std::size_t glob_class(std::string_view p, std::size_t i, char c, bool& matched) {
  std::size_t j = i + 1;
  bool negate = false;
  if (j < p.size() && (p[j] == '!' || p[j] == '^')) negate = true, ++j;
  bool found = false;
  bool first = true;
  for (; j < p.size() && (p[j] != ']' || first); first = false) {
    if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
      if (p[j] <= c && c <= p[j + 2]) found = true;
      j += 3;
    } else {
      if (p[j] == c) found = true;
      ++j;
    }
  }
  if (j >= p.size()) return std::string_view::npos;
  matched = found != negate;
  return j + 1;
}

}  // namespace detail

// Does the glob `pattern` match all of `text`? Iterative, with one backtrack point per '*':
// linear-ish in practice, never exponential.
[[nodiscard]] inline bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const char c = pattern[p];
      if (c == '*') {
        star_p = p++;
        star_t = t;
        continue;
      }
      if (c == '?') {
        ++p, ++t;
        continue;
      }
      if (c == '[') {
        bool matched = false;
        const std::size_t next = detail::glob_class(pattern, p, text[t], matched);
        if (next != std::string_view::npos) {
          if (matched) {
            p = next, ++t;
            continue;
          }
        } else if (text[t] == '[') {
          ++p, ++t;
          continue;
        }
      } else if (c == text[t]) {
        ++p, ++t;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// Parses a policy name (see the top of this file). Returns false with a reason on failure.
[[nodiscard]] inline bool parse_policy(std::string_view text, tensor_policy& out, std::string* why = nullptr) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = "policy '" + std::string(text) + "': " + reason;
    return false;
  };
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  const std::string base = detail::lowercase(parts[0]);
  tensor_policy p;
  if (base == "raw" || base == "none" || base == "stored") {
    if (parts.size() > 1) return fail("raw takes no options");
    out = tensor_policy::raw();
    return true;
  }
  if (base == "lossless") p.params = lossless_codec::params();
  else if (base == "int8") p.params = int8_codec::params();
  else if (base == "int4" || base == "int4-g128") p.params = int4_codec::params();
  else if (base == "int4-g64") p.params = codec<tile256, quant::int4_group<64>, coder::rans<12, 32>>::params();
  else if (base == "int4-g32") p.params = codec<tile256, quant::int4_group<32>, coder::rans<12, 32>>::params();
  else return fail("unknown policy (raw, lossless, int8, int4-g128, int4-g64, int4-g32)");
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string_view opt = parts[i];
    const std::size_t eq = opt.find('=');
    if (eq == std::string_view::npos) return fail("option '" + std::string(opt) + "' is not key=value");
    const std::string key = detail::lowercase(opt.substr(0, eq));
    const std::string_view value = opt.substr(eq + 1);
    if (key == "tile") {
      const std::size_t x = value.find_first_of("xX");
      if (x == std::string_view::npos || !detail::parse_u32(value.substr(0, x), p.params.tile_rows) ||
          !detail::parse_u32(value.substr(x + 1), p.params.tile_cols))
        return fail("tile must be RxC, e.g. tile=128x256");
    } else if (key == "coder") {
      const std::string v = detail::lowercase(value);
      if (v == "raw") p.params.coder = coder::kind::raw;
      else if (v == "rans") p.params.coder = coder::kind::rans;
      else if (v == "fixed") p.params.coder = static_cast<coder::kind>(2), p.params.prob_bits = 0, p.params.lanes = 32;
      else if (v == "rans-lanes") p.params.coder = coder::kind::rans_lanes;
      else if (v == "fixed-marked") p.params.coder = coder::kind::fixed_marked, p.params.prob_bits = 0, p.params.lanes = 32;
      else return fail("coder must be rans, raw, fixed, rans-lanes or fixed-marked");
    } else if (key == "order") {
      const std::string v = detail::lowercase(value);
      if (v == "row_major" || v == "row-major") p.params.order = static_cast<symbol_order>(0);
      else if (v == "mma") p.params.order = static_cast<symbol_order>(1);
      else return fail("order must be row-major or mma");
    } else if (key == "lanes") {
      if (!detail::parse_u32(value, p.params.lanes)) return fail("lanes must be a number");
    } else if (key == "prob-bits" || key == "prob_bits") {
      if (!detail::parse_u32(value, p.params.prob_bits)) return fail("prob-bits must be a number");
    } else {
      return fail("unknown option '" + key + "' (tile, coder, order, lanes, prob-bits)");
    }
  }
  std::string reason;
  if (validate_params(p.params, &reason) != status::success) return fail(reason);
  out = p;
  return true;
}

// One rule: a glob over the tensor name, optional filters, and the policy it gives.
struct policy_rule {
  std::string pattern = "*";
  std::vector<dtype> dtypes;  // empty: any dtype
  unsigned min_rank = 0, max_rank = 8;
  std::uint64_t min_elements = 0, max_elements = std::numeric_limits<std::uint64_t>::max();
  tensor_policy policy;
  std::string origin;  // where the rule came from, for messages: "--rule 2", "rules.json rule 0", "preset int8"

  [[nodiscard]] bool matches(std::string_view name, dtype type, const std::vector<std::uint64_t>& shape) const {
    if (!dtypes.empty() && std::find(dtypes.begin(), dtypes.end(), type) == dtypes.end()) return false;
    if (shape.size() < min_rank || shape.size() > max_rank) return false;
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n = (d != 0 && n > std::numeric_limits<std::uint64_t>::max() / d) ? std::numeric_limits<std::uint64_t>::max() : n * d;
    if (std::find(shape.begin(), shape.end(), std::uint64_t{0}) != shape.end()) n = 0;
    if (n < min_elements || n > max_elements) return false;
    return glob_match(pattern, name);
  }
};

// Can the codec encode this dtype at all?
[[nodiscard]] inline bool encodable(dtype t) { return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16; }

// An ordered list of rules.
class policy_rules {
 public:
  // The policy chosen for a tensor, and why (for reports).
  struct choice {
    tensor_policy policy;
    std::string reason;
  };

  policy_rules() = default;

  [[nodiscard]] static const std::vector<std::string>& preset_names() {
    static const std::vector<std::string> names = {"lossless", "int8", "int4", "int8-fused", "int4-fused", "raw"};
    return names;
  }

  // Name patterns of attention and MLP weight matrices across common model families (BERT,
  // Llama/Mistral/Qwen, GPT-2/NeoX, Falcon, Mixtral experts). Embeddings and heads are not here.
  [[nodiscard]] static const std::vector<std::string>& matrix_patterns() {
    static const std::vector<std::string> patterns = {
        "*attn*", "*attention*", "*mlp*", "*intermediate*", "*.output.dense.*", "*_proj.*", "*feed_forward*",
        "*ffn*", "*.fc1.*", "*.fc2.*", "*.c_fc.*", "*experts*", "*.w1.*", "*.w2.*", "*.w3.*",
        "*.wq.*", "*.wk.*", "*.wv.*", "*.wo.*", "*dense_h_to_4h*", "*dense_4h_to_h*", "*query_key_value*"};
    return patterns;
  }

  // A preset by name (see the top of this file); throws status::invalid_argument for an unknown one.
  [[nodiscard]] static policy_rules preset(std::string_view name) {
    const std::string n = detail::lowercase(name);
    policy_rules r;
    const std::string origin = "preset " + n;
    if (n == "raw") {
      r.add(make("*", tensor_policy::raw(), origin));
      return r;
    }
    if (n != "lossless" && n != "int8" && n != "int4" && n != "int8-fused" && n != "int4-fused")
      throw error(status::invalid_argument,
                  "unknown preset '" + std::string(name) + "' (lossless, int8, int4, int8-fused, int4-fused, raw)");
    policy_rule small = make("*", tensor_policy::raw(), origin + ": small tensor");
    small.max_elements = small_tensor_elements - 1;
    r.add(small);
    r.add(make("*[Nn]orm*", tensor_policy::raw(), origin + ": normalisation"));
    r.add(make("*.bias", tensor_policy::raw(), origin + ": bias"));
    if (n != "lossless") {
      format_params qp = n == "int8" ? int8_codec::params()
                         : n == "int4" ? int4_codec::params()
                         : n == "int8-fused" ? fused::int8_codec::params()
                                             : fused::int4_codec::params();
      if (n == "int8-fused") qp.prob_bits = 8;  // 8-bit codes: no escapes, the fastest fused int8
      const tensor_policy q = tensor_policy::encoded(qp);
      for (const std::string& pat : matrix_patterns()) {
        policy_rule m = make(pat, q, origin + ": attention/MLP matrix");
        m.min_rank = 2;
        r.add(m);
      }
    }
    r.add(make("*", tensor_policy::encoded(lossless_codec::params()), origin));
    return r;
  }

  // Parses "pattern=policy" (the CLI's --rule). The first '=' splits: policy options hold '='
  // ("int8:tile=128x128"), tensor names do not.
  [[nodiscard]] static policy_rule parse_rule(std::string_view text, std::string origin) {
    const std::size_t split = text.find('=');
    if (split == std::string_view::npos || split == 0)
      throw error(status::invalid_argument, origin + ": rule '" + std::string(text) + "' is not PATTERN=POLICY");
    policy_rule r;
    r.pattern = std::string(text.substr(0, split));
    r.origin = std::move(origin);
    std::string why;
    if (!parse_policy(text.substr(split + 1), r.policy, &why)) throw error(status::invalid_argument, r.origin + ": " + why);
    return r;
  }

  // Parses a rules document (see the top of this file). `source` names it in errors. The preset
  // the document names (or `fallback_preset` when it names none) is appended after its rules,
  // unless `fallback_preset` is empty and the document names none.
  [[nodiscard]] static policy_rules from_json(const nlohmann::json& doc, const std::string& source, std::string* preset_name = nullptr) {
    auto fail = [&](const std::string& what) -> void { throw error(status::invalid_argument, source + ": " + what); };
    if (!doc.is_object()) fail("not a JSON object");
    policy_rules r;
    for (const auto& item : doc.items())
      if (item.key() != "rules" && item.key() != "preset") fail("unknown field '" + item.key() + "' (rules, preset)");
    if (doc.contains("preset")) {
      if (!doc["preset"].is_string()) fail("field 'preset' is not a string");
      if (preset_name) *preset_name = doc["preset"].get<std::string>();
    }
    if (doc.contains("rules")) {
      const nlohmann::json& rules = doc["rules"];
      if (!rules.is_array()) fail("field 'rules' is not an array");
      for (std::size_t i = 0; i < rules.size(); ++i) {
        const std::string where = "rule " + std::to_string(i);
        const nlohmann::json& j = rules[i];
        if (!j.is_object()) fail(where + ": not a JSON object");
        policy_rule rule;
        rule.origin = source + " " + where;
        bool has_policy = false;
        for (const auto& item : j.items()) {
          const std::string& key = item.key();
          const nlohmann::json& v = item.value();
          const std::string field = where + ", field '" + key + "'";
          auto number = [&]() -> std::uint64_t {
            if (!v.is_number_unsigned()) fail(field + ": not a non-negative integer");
            return v.get<std::uint64_t>();
          };
          if (key == "pattern") {
            if (!v.is_string()) fail(field + ": not a string");
            rule.pattern = v.get<std::string>();
          } else if (key == "policy") {
            if (!v.is_string()) fail(field + ": not a string");
            std::string why;
            if (!parse_policy(v.get<std::string>(), rule.policy, &why)) fail(field + ": " + why);
            has_policy = true;
          } else if (key == "dtype") {
            std::vector<std::string> names;
            if (v.is_string()) names.push_back(v.get<std::string>());
            else if (v.is_array()) {
              for (const auto& e : v) {
                if (!e.is_string()) fail(field + ": not a string or a list of strings");
                names.push_back(e.get<std::string>());
              }
            } else fail(field + ": not a string or a list of strings");
            for (const std::string& name : names) {
              dtype t;
              std::string upper = name;
              for (char& c : upper)
                if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
              if (!parse_dtype(upper, t)) fail(field + ": unknown dtype '" + name + "'");
              rule.dtypes.push_back(t);
            }
          } else if (key == "rank") {
            const std::uint64_t k = number();
            if (k > 8) fail(field + ": rank above 8");
            rule.min_rank = rule.max_rank = unsigned(k);
          } else if (key == "min_rank") {
            const std::uint64_t k = number();
            if (k > 8) fail(field + ": rank above 8");
            rule.min_rank = unsigned(k);
          } else if (key == "max_rank") {
            const std::uint64_t k = number();
            if (k > 8) fail(field + ": rank above 8");
            rule.max_rank = unsigned(k);
          } else if (key == "min_elements") {
            rule.min_elements = number();
          } else if (key == "max_elements") {
            rule.max_elements = number();
          } else {
            fail(field + ": unknown field (pattern, policy, dtype, rank, min_rank, max_rank, min_elements, max_elements)");
          }
        }
        if (!has_policy) fail(where + ": missing field 'policy'");
        r.add(std::move(rule));
      }
    }
    return r;
  }

  // Reads and parses a rules file.
  [[nodiscard]] static policy_rules from_file(const std::string& path, std::string* preset_name = nullptr) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(status::io_error, path + ": cannot open the rules file");
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception& e) {
      throw error(status::invalid_argument, path + ": not valid JSON: " + e.what());
    }
    return from_json(doc, path, preset_name);
  }

  policy_rules& add(policy_rule rule) {
    rules_.push_back(std::move(rule));
    return *this;
  }
  policy_rules& append(const policy_rules& other) {
    rules_.insert(rules_.end(), other.rules_.begin(), other.rules_.end());
    return *this;
  }
  [[nodiscard]] const std::vector<policy_rule>& rules() const { return rules_; }

  // The policy for one tensor.
  [[nodiscard]] choice choose(std::string_view name, dtype type, const std::vector<std::uint64_t>& shape) const {
    for (const policy_rule& r : rules_) {
      if (!r.matches(name, type, shape)) continue;
      if (!r.policy.stored && !encodable(type))
        return {tensor_policy::raw(), std::string(dtype_name(type)) + " cannot be encoded: stored raw (" + r.origin + " asked for " + policy_name(r.policy) + ")"};
      return {r.policy, r.origin + (r.pattern == "*" ? "" : " (" + r.pattern + ")")};
    }
    if (!encodable(type)) return {tensor_policy::raw(), std::string(dtype_name(type)) + " cannot be encoded: stored raw"};
    return {tensor_policy::encoded(lossless_codec::params()), "no rule matched: lossless"};
  }

  // Tensors below this many elements are kept raw by the presets: an encoded tensor costs a
  // 256-byte header, a table and a tile index, which small tensors do not repay.
  static constexpr std::uint64_t small_tensor_elements = 16384;

 private:
  static policy_rule make(std::string pattern, tensor_policy policy, std::string origin) {
    policy_rule r;
    r.pattern = std::move(pattern);
    r.policy = policy;
    r.origin = std::move(origin);
    return r;
  }

  std::vector<policy_rule> rules_;
};

}  // namespace tilecodec
