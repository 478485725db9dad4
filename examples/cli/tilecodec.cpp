// tilecodec: the command-line tool. Compresses safetensors models into tilecodec containers and
// back, inspects and verifies containers, benchmarks the host codec on a model, and writes seeded
// synthetic Llama-shaped models for benchmarks. Run `tilecodec --help` for usage and exit codes.
//
// Everything here goes through the library's public host API (host/model_io.hpp): this file is
// argument parsing, output formatting, progress and exit codes.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <tilecodec/format/container.hpp>
#include <tilecodec/format/policy_rules.hpp>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/model_io.hpp>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#define TC_POSIX 1
#else
#define TC_POSIX 0
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace tilecodec;

namespace {

// ---- exit codes -----------------------------------------------------------------------------------

enum exit_code : int {
  exit_ok = 0,
  exit_differs = 1,      // verify: a tensor differs from the original or exceeds its error bound
  exit_usage = 2,        // bad command line, policy, rules file, or an output that exists
  exit_io = 3,           // a file cannot be opened, read or written
  exit_corrupt = 4,      // invalid or corrupt input: format errors, checksum mismatches, failed decodes
  exit_unsupported = 5,  // valid input this build cannot handle (format version, dtype, policy id)
  exit_memory = 6,       // out of memory
  exit_internal = 70,    // a bug: please report it
  exit_interrupted = 130,
};

const char* exit_codes_help =
    "Exit codes:\n"
    "  0    success\n"
    "  1    verify: a tensor differs from the original or exceeds its error bound\n"
    "  2    usage error: bad option, policy or rules file; output exists (use --force)\n"
    "  3    I/O error: a file cannot be opened, read or written\n"
    "  4    invalid or corrupt input: bad format, checksum mismatch, failed decode\n"
    "  5    unsupported input: format version, dtype or policy this build cannot handle\n"
    "  6    out of memory\n"
    "  70   internal error\n"
    "  130  interrupted (SIGINT/SIGTERM); no partial output is left under the output name\n";

const std::string see_exit_codes = "Global options (--json, --quiet, --progress, --threads) and exit codes: tilecodec --help";

int exit_code_for(status s) {
  switch (s) {
    case status::success: return exit_ok;
    case status::invalid_argument: return exit_usage;
    case status::io_error: return exit_io;
    case status::unsupported: return exit_unsupported;
    case status::out_of_memory: return exit_memory;
    case status::overflow:
    case status::truncated:
    case status::corrupt_header:
    case status::corrupt_table:
    case status::corrupt_payload:
    case status::checksum_mismatch: return exit_corrupt;
    default: return exit_internal;
  }
}

// A command-line mistake found after parsing (exit 2).
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct interrupted_error : std::runtime_error {
  interrupted_error() : std::runtime_error("interrupted") {}
};

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted.store(true); }

void install_signal_handlers() {
#if TC_POSIX
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second signal kills at once
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
#else
  std::signal(SIGINT, on_signal);
#endif
}

// ---- formatting -----------------------------------------------------------------------------------

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) b /= 1000.0, ++u;
  return u == 0 ? fmt("%.0f B", b) : fmt(b < 10 ? "%.2f " : (b < 100 ? "%.1f " : "%.0f "), b) + units[u];
}
std::string rate(double bytes, double seconds) { return seconds > 0 ? fmt("%.1f MB/s", bytes / seconds / 1e6) : "-"; }
std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
std::string hex64(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}
double ratio_of(std::uint64_t part, std::uint64_t whole) { return whole ? double(part) / double(whole) : 0.0; }
double mb_per_s(std::uint64_t bytes, double seconds) { return seconds > 0 ? double(bytes) / seconds / 1e6 : 0.0; }

// Parses "1GB", "500MB", "2GiB", "4096", "64k" into bytes.
std::uint64_t parse_size(const std::string& text, const std::string& what) {
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) throw usage_error(what + ": '" + text + "' is not a size (e.g. 4096, 500MB, 2GiB)");
  const double v = std::stod(text.substr(0, i));
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1e3;
  else if (unit == "m" || unit == "mb") mult = 1e6;
  else if (unit == "g" || unit == "gb") mult = 1e9;
  else if (unit == "t" || unit == "tb") mult = 1e12;
  else if (unit == "kib") mult = 1024.0;
  else if (unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else throw usage_error(what + ": unknown unit '" + unit + "' (B, kB, MB, GB, KiB, MiB, GiB)");
  const double bytes = v * mult;
  if (!(bytes >= 0) || bytes > 1.8e19) throw usage_error(what + ": '" + text + "' is out of range");
  return static_cast<std::uint64_t>(bytes);
}

// A simple text table: left-aligned first column, right-aligned numbers.
struct table {
  std::vector<std::string> header;
  std::vector<bool> left;
  std::vector<std::vector<std::string>> rows;
  void print(std::ostream& os) const {
    std::vector<std::size_t> w(header.size(), 0);
    for (std::size_t c = 0; c < header.size(); ++c) w[c] = header[c].size();
    for (const auto& r : rows)
      for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
    auto line = [&](const std::vector<std::string>& r) {
      std::string s;
      for (std::size_t c = 0; c < r.size(); ++c) {
        const std::string& cell = r[c];
        const std::string pad(w[c] - std::min(w[c], cell.size()), ' ');
        s += (c ? "  " : "") + (left[c] ? cell + (c + 1 < r.size() ? pad : "") : pad + cell);
      }
      os << s << "\n";
    };
    line(header);
    for (const auto& r : rows) line(r);
  }
};

// ---- progress -------------------------------------------------------------------------------------

// A progress bar on stderr: redrawn in place on a terminal (at most 10 times a second), one line a
// second otherwise (when --progress asks for it). Checks for an interruption on every update.
class progress_bar {
 public:
  progress_bar(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {
#if TC_POSIX
    tty_ = ::isatty(2) != 0;
#endif
    start_ = last_ = std::chrono::steady_clock::now();
  }
  ~progress_bar() { finish(); }

  void operator()(const host::progress_event& e) {
    if (g_interrupted.load()) throw interrupted_error();
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    const bool last = e.tensor_index >= e.tensor_count;
    const double since = std::chrono::duration<double>(now - last_).count();
    if (!last && drawn_ && since < (tty_ ? 0.1 : 1.0)) return;
    last_ = now;
    drawn_ = true;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double frac = e.total_bytes ? double(e.done_bytes) / double(e.total_bytes) : (last ? 1.0 : 0.0);
    const double speed = elapsed > 0 ? double(e.done_bytes) / elapsed : 0.0;
    std::string eta = "--:--";
    if (speed > 0 && e.done_bytes > 0) {
      const long s = static_cast<long>(double(e.total_bytes - e.done_bytes) / speed + 0.5);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
      eta = buf;
    }
    int width = 80;
#if TC_POSIX
    struct winsize ws {};
    if (tty_ && ::ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
#endif
    const int bar = 24;
    const int fill = static_cast<int>(frac * bar + 0.5);
    std::string s = label_ + " [" + std::string(std::size_t(fill), '#') + std::string(std::size_t(bar - fill), '.') + "] " +
                    fmt("%3.0f%%", 100 * frac) + " " + human_bytes(double(e.done_bytes)) + "/" + human_bytes(double(e.total_bytes)) + " " +
                    fmt("%.0f MB/s", speed / 1e6) + (last ? fmt(" in %.1fs", elapsed) : " ETA " + eta) + " " +
                    std::to_string(std::min(e.tensor_index, e.tensor_count)) + "/" + std::to_string(e.tensor_count);
    if (!last && !e.tensor.empty()) s += " " + std::string(e.tensor);
    if (s.size() > std::size_t(width - 1)) s.resize(std::size_t(width - 1));
    if (tty_) std::fprintf(stderr, "\r%s\x1b[K", s.c_str());
    else std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
    if (last) finish();
  }
  void finish() {
    if (enabled_ && drawn_ && tty_ && !finished_) std::fputc('\n', stderr);
    finished_ = true;
  }
  host::progress_callback callback() {
    return [this](const host::progress_event& e) { (*this)(e); };
  }

 private:
  std::string label_;
  bool enabled_ = false, tty_ = false, drawn_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// ---- options shared by subcommands ----------------------------------------------------------------

struct globals {
  bool json = false;
  bool quiet = false;
  bool progress = false;
  bool no_progress = false;
  unsigned threads = 0;
  bool show_progress() const {
    if (quiet || no_progress) return false;
#if TC_POSIX
    return progress || ::isatty(2) != 0;
#else
    return progress;
#endif
  }
};

struct rule_options {
  std::string preset;
  std::vector<std::string> rules;
  std::string config;
  void add_to(CLI::App* sub) {
    sub->add_option("--preset,-p", preset, "policy preset: lossless (default), int8, int4, int8-fused, int4-fused, raw");
    sub->add_option("--rule,-r", rules, "'PATTERN=POLICY' rule, tried before the preset (repeatable), e.g. '*.bias=raw'")
        ->allow_extra_args(false);
    sub->add_option("--config,-c", config, "JSON rules file: {\"preset\": ..., \"rules\": [{\"pattern\", \"policy\", ...}]}");
  }
  // --rule flags first, then the rules file, then the preset (--preset, else the file's, else lossless).
  policy_rules build(std::string* preset_used = nullptr) const {
    policy_rules r;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      try {
        r.add(policy_rules::parse_rule(rules[i], "--rule " + std::to_string(i + 1)));
      } catch (const error& e) {
        throw usage_error(e.what());
      }
    }
    std::string file_preset;
    if (!config.empty()) {
      try {
        r.append(policy_rules::from_file(config, &file_preset));
      } catch (const error& e) {
        if (e.code() == status::io_error) throw;
        throw usage_error(e.what());
      }
    }
    const std::string name = !preset.empty() ? preset : (!file_preset.empty() ? file_preset : "lossless");
    try {
      r.append(policy_rules::preset(name));
    } catch (const error& e) {
      throw usage_error(e.what());
    }
    if (preset_used) *preset_used = name;
    return r;
  }
};

void check_output(const std::string& input, const std::string& output, bool force) {
  std::error_code ec;
  if (fs::exists(output, ec)) {
    if (fs::exists(input, ec) && fs::equivalent(input, output, ec)) throw usage_error("output '" + output + "' is the input");
    if (!force) throw usage_error("output '" + output + "' exists (use --force to overwrite)");
  }
}

bool is_container(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[4] = {};
  return in && in.read(m, 4) && std::memcmp(m, container::magic, 4) == 0;
}

std::string policy_of(const container::entry& e) {
  return policy_name(e.kind == container::storage::stored ? tensor_policy::raw() : tensor_policy::encoded(e.params));
}

void print_json(const json& j) { std::cout << j.dump(2) << std::endl; }

// ---- compress -------------------------------------------------------------------------------------

struct compress_cmd {
  std::string input, output;
  rule_options rules;
  std::string align = "4096";
  bool force = false, no_sync = false, verbose = false;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("compress", "compress a safetensors model into a tilecodec container");
    sub->add_option("input", input, "model.safetensors, model.safetensors.index.json, or a directory holding either")->required();
    sub->add_option("output", output, "container to write (e.g. model.tcm)")->required();
    rules.add_to(sub);
    sub->add_option("--align", align, "blob alignment in bytes, a power of two from 64 to 2MiB (default 4096: mmap and O_DIRECT)");
    sub->add_flag("--force,-f", force, "overwrite the output if it exists");
    sub->add_flag("--no-sync", no_sync, "skip fsync before renaming the output into place");
    sub->add_flag("--verbose,-v", verbose, "list every tensor");
    sub->footer("Example:\n  tilecodec compress --preset int8 --rule '*lm_head*=lossless' model.safetensors model.tcm\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }
  int result = 0;

  int run(const globals& g) {
    check_output(input, output, force);
    std::string preset;
    host::compress_options opt;
    opt.rules = rules.build(&preset);
    opt.threads = g.threads;
    opt.sync = !no_sync;
    const std::uint64_t a = parse_size(align, "--align");
    unsigned log2 = 0;
    while (log2 < 63 && (std::uint64_t(1) << log2) < a) ++log2;
    if ((std::uint64_t(1) << log2) != a || log2 < container::min_alignment_log2 || log2 > container::max_alignment_log2)
      throw usage_error("--align: " + align + " is not a power of two from 64 to 2MiB");
    opt.alignment_log2 = log2;
    progress_bar bar("compress", g.show_progress());
    opt.on_progress = bar.callback();
    const host::compress_report r = host::compress_model(input, output, opt);
    bar.finish();

    // Per-policy summary.
    struct group {
      std::size_t tensors = 0;
      std::uint64_t original = 0, stored = 0, elements = 0;
    };
    std::map<std::string, group> groups;
    for (const auto& t : r.tensors) {
      group& gr = groups[t.policy];
      ++gr.tensors;
      gr.original += t.original_bytes;
      gr.stored += t.stored_bytes;
      gr.elements += t.elements();
    }
    if (g.json) {
      json j = {{"command", "compress"}, {"input", input}, {"output", output}, {"preset", preset},
                {"original_bytes", r.original_bytes}, {"container_bytes", r.container_bytes},
                {"ratio", ratio_of(r.container_bytes, r.original_bytes)}, {"seconds", r.seconds},
                {"mb_per_s", mb_per_s(r.original_bytes, r.seconds)}, {"threads", g.threads}, {"warnings", r.warnings}};
      json tensors = json::array();
      for (const auto& t : r.tensors)
        tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.type)}, {"shape", t.shape}, {"policy", t.policy},
                           {"reason", t.reason}, {"original_bytes", t.original_bytes}, {"stored_bytes", t.stored_bytes},
                           {"bits_per_weight", t.bits_per_weight()}, {"ratio", ratio_of(t.stored_bytes, t.original_bytes)},
                           {"seconds", t.seconds}});
      j["tensors"] = tensors;
      json pol = json::object();
      for (const auto& kv : groups)
        pol[kv.first] = {{"tensors", kv.second.tensors}, {"original_bytes", kv.second.original}, {"stored_bytes", kv.second.stored},
                         {"ratio", ratio_of(kv.second.stored, kv.second.original)}};
      j["policies"] = pol;
      print_json(j);
      return exit_ok;
    }
    for (const auto& w : r.warnings) std::cerr << "tilecodec: warning: " << w << "\n";
    if (g.quiet) return exit_ok;
    if (verbose) {
      table t{{"tensor", "dtype", "shape", "policy", "bits/weight", "ratio", "reason"}, {true, true, true, true, false, false, true}, {}};
      for (const auto& x : r.tensors)
        t.rows.push_back({x.name, dtype_name(x.type), shape_text(x.shape), x.policy, fmt("%.2f", x.bits_per_weight()),
                          fmt("%.1f%%", 100 * ratio_of(x.stored_bytes, x.original_bytes)), x.reason});
      t.print(std::cout);
      std::cout << "\n";
    }
    table t{{"policy", "tensors", "original", "stored", "bits/weight", "ratio"}, {true, false, false, false, false, false}, {}};
    for (const auto& kv : groups)
      t.rows.push_back({kv.first, std::to_string(kv.second.tensors), human_bytes(double(kv.second.original)), human_bytes(double(kv.second.stored)),
                        fmt("%.2f", kv.second.elements ? 8.0 * double(kv.second.stored) / double(kv.second.elements) : 0.0),
                        fmt("%.1f%%", 100 * ratio_of(kv.second.stored, kv.second.original))});
    t.print(std::cout);
    std::cout << "compressed " << r.tensors.size() << " tensors (preset " << preset << "): " << human_bytes(double(r.original_bytes)) << " -> "
              << human_bytes(double(r.container_bytes)) << " (" << fmt("%.1f%%", 100 * ratio_of(r.container_bytes, r.original_bytes))
              << " with index and padding) in " << fmt("%.2f s", r.seconds) << ", " << rate(double(r.original_bytes), r.seconds) << "\n"
              << "wrote " << output << "\n";
    return exit_ok;
  }
};

// ---- decompress -----------------------------------------------------------------------------------

struct decompress_cmd {
  std::string input, output, shard_size;
  bool force = false, no_sync = false;
  int result = 0;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("decompress", "decode a container back to safetensors (original dtypes, metadata kept)");
    sub->add_option("input", input, "container (.tcm)")->required();
    sub->add_option("output", output, "safetensors file to write; a directory with --shard-size")->required();
    sub->add_option("--shard-size", shard_size, "write shards of at most this size (e.g. 5GB) and model.safetensors.index.json into OUTPUT/");
    sub->add_flag("--force,-f", force, "overwrite existing output");
    sub->add_flag("--no-sync", no_sync, "skip fsync before renaming the output into place");
    sub->footer("Example:\n  tilecodec decompress model.tcm restored.safetensors\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }

  int run(const globals& g) {
    host::export_options opt;
    opt.threads = g.threads;
    opt.sync = !no_sync;
    if (!shard_size.empty()) {
      opt.max_shard_bytes = parse_size(shard_size, "--shard-size");
      if (opt.max_shard_bytes == 0) throw usage_error("--shard-size must be above 0");
      std::error_code ec;
      if (fs::exists(output, ec) && !fs::is_directory(output, ec)) throw usage_error("output '" + output + "' exists and is not a directory");
      if (fs::is_directory(output, ec) && !fs::is_empty(output, ec) && !force)
        throw usage_error("output directory '" + output + "' is not empty (use --force to overwrite)");
    } else {
      check_output(input, output, force);
    }
    const host::model_reader model(input);
    progress_bar bar("decompress", g.show_progress());
    opt.on_progress = bar.callback();
    const host::export_report r = host::export_safetensors(model, output, opt);
    bar.finish();
    if (g.json) {
      print_json({{"command", "decompress"}, {"input", input}, {"output", output}, {"files", r.files}, {"tensors", model.tensors().size()},
                  {"bytes", r.bytes}, {"seconds", r.seconds}, {"mb_per_s", mb_per_s(r.bytes, r.seconds)}});
    } else if (!g.quiet) {
      std::cout << "decompressed " << model.tensors().size() << " tensors: " << human_bytes(double(r.bytes)) << " in "
                << fmt("%.2f s", r.seconds) << ", " << rate(double(r.bytes), r.seconds) << "\n";
      for (const auto& f : r.files) std::cout << "wrote " << f << "\n";
    }
    return exit_ok;
  }
};

// ---- inspect --------------------------------------------------------------------------------------

struct inspect_cmd {
  std::string input;
  rule_options rules;
  int result = 0;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("inspect", "list a container's tensors; for a safetensors model, show the policies compress would choose");
    sub->add_option("input", input, "container, or safetensors model (file, index .json or directory)")->required();
    rules.add_to(sub);
    sub->footer("Examples:\n  tilecodec inspect model.tcm\n  tilecodec inspect --preset int8 model.safetensors   (dry run of compress)\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }

  int run(const globals& g) {
    std::error_code ec;
    if (!fs::is_directory(input, ec) && is_container(input)) return run_container(g);
    return run_plan(g);
  }

  int run_container(const globals& g) {
    const container::file f(input);
    std::uint64_t original = 0, stored = 0;
    for (const auto& e : f.tensors()) original += e.original_bytes(), stored += e.size;
    if (g.json) {
      json tensors = json::array();
      for (const auto& e : f.tensors())
        tensors.push_back({{"name", e.name}, {"dtype", dtype_name(e.type)}, {"shape", e.shape}, {"policy", policy_of(e)},
                           {"offset", e.offset}, {"bytes", e.size}, {"original_bytes", e.original_bytes()},
                           {"bits_per_weight", e.elements() ? 8.0 * double(e.size) / double(e.elements()) : 0.0},
                           {"ratio", ratio_of(e.size, e.original_bytes())}, {"checksum", hex64(e.checksum)},
                           {"source_checksum", hex64(e.source_checksum)}});
      print_json({{"command", "inspect"}, {"file", input}, {"format", "tilecodec container"}, {"version", container::format_version},
                  {"alignment", f.contents().layout().alignment()}, {"file_bytes", f.size()}, {"metadata", f.metadata()},
                  {"original_bytes", original}, {"stored_bytes", stored}, {"ratio", ratio_of(f.size(), original)}, {"tensors", tensors}});
      return exit_ok;
    }
    table t{{"tensor", "dtype", "shape", "policy", "bits/weight", "ratio"}, {true, true, true, true, false, false}, {}};
    for (const auto& e : f.tensors())
      t.rows.push_back({e.name, dtype_name(e.type), shape_text(e.shape), policy_of(e),
                        fmt("%.2f", e.elements() ? 8.0 * double(e.size) / double(e.elements()) : 0.0),
                        fmt("%.1f%%", 100 * ratio_of(e.size, e.original_bytes()))});
    t.print(std::cout);
    std::cout << "\n" << input << ": tilecodec container v" << container::format_version << ", " << f.tensors().size() << " tensors, "
              << human_bytes(double(original)) << " original -> " << human_bytes(double(f.size())) << " file ("
              << fmt("%.1f%%", 100 * ratio_of(f.size(), original)) << "), alignment " << f.contents().layout().alignment() << "\n";
    if (!f.metadata().empty()) {
      std::cout << "metadata:";
      for (const auto& kv : f.metadata()) std::cout << " " << kv.first << "=" << kv.second;
      std::cout << "\n";
    }
    return exit_ok;
  }

  int run_plan(const globals& g) {
    std::string preset;
    const policy_rules r = rules.build(&preset);
    const safetensors::model m(input);
    const auto sources = host::list_source_tensors(m);
    const auto plan = host::plan_compression(m, r);
    if (g.json) {
      json tensors = json::array();
      for (std::size_t i = 0; i < sources.size(); ++i)
        tensors.push_back({{"name", sources[i].info->name}, {"dtype", dtype_name(sources[i].info->type)}, {"shape", sources[i].info->shape},
                           {"bytes", sources[i].info->byte_size()}, {"policy", policy_name(plan[i].policy)}, {"reason", plan[i].reason}});
      print_json({{"command", "inspect"}, {"file", input}, {"format", "safetensors"}, {"preset", preset}, {"tensors", tensors}});
      return exit_ok;
    }
    table t{{"tensor", "dtype", "shape", "bytes", "policy (planned)", "reason"}, {true, true, true, false, true, true}, {}};
    for (std::size_t i = 0; i < sources.size(); ++i)
      t.rows.push_back({sources[i].info->name, dtype_name(sources[i].info->type), shape_text(sources[i].info->shape),
                        human_bytes(double(sources[i].info->byte_size())), policy_name(plan[i].policy), plan[i].reason});
    t.print(std::cout);
    std::cout << "\n" << input << ": safetensors, " << sources.size() << " tensors; policies above are what `tilecodec compress` would use (preset "
              << preset << ")\n";
    return exit_ok;
  }
};

// ---- verify ---------------------------------------------------------------------------------------

struct verify_cmd {
  std::string input, against;
  bool verbose = false;
  int result = 0;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("verify", "check checksums and decode every tensor; optionally compare with the original");
    sub->add_option("input", input, "container (.tcm)")->required();
    sub->add_option("--against,-a", against, "original safetensors model: lossless tensors must be bit-identical, quantized ones within half a step");
    sub->add_flag("--verbose,-v", verbose, "list every tensor");
    sub->footer("Example:\n  tilecodec verify model.tcm --against model.safetensors\n"
                "Exit 0: all good; 1: a tensor differs from the original or exceeds its bound; 4: the container is corrupt.\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }

  int run(const globals& g) {
    const host::model_reader model(input);
    host::verify_options opt;
    opt.threads = g.threads;
    opt.original = against;
    progress_bar bar("verify", g.show_progress());
    opt.on_progress = bar.callback();
    const host::verify_report r = host::verify_model(model, opt);
    bar.finish();
    bool corrupt = r.file_code != status::success, differs = r.file_mismatch;
    status worst = r.file_code;
    for (const auto& t : r.tensors) {
      if (t.code != status::success) {
        corrupt = true;
        if (worst == status::success) worst = t.code;
      }
      differs = differs || t.mismatch;
    }
    const int code = corrupt ? exit_code_for(worst) : (differs ? exit_differs : exit_ok);
    std::size_t lossless_exact = 0, lossless = 0, quantized = 0;
    double worst_ratio = 0;
    for (const auto& t : r.tensors) {
      const bool q = t.policy.rfind("int", 0) == 0;
      if (q) {
        ++quantized;
        worst_ratio = std::max(worst_ratio, t.max_error_to_bound);
      } else {
        ++lossless;
        lossless_exact += t.exact ? 1 : 0;
      }
    }
    if (g.json) {
      json tensors = json::array();
      for (const auto& t : r.tensors) {
        json j = {{"name", t.name}, {"policy", t.policy}, {"ok", t.ok()}, {"status", to_string(t.code)}, {"exact", t.exact}, {"compared", t.compared}};
        if (t.compared && t.policy.rfind("int", 0) == 0) j["max_abs_error"] = t.max_abs_error, j["max_error_to_bound"] = t.max_error_to_bound;
        if (!t.problem.empty()) j["problem"] = t.problem;
        tensors.push_back(j);
      }
      print_json({{"command", "verify"}, {"file", input}, {"against", against}, {"ok", r.ok()}, {"exit_code", code},
                  {"failures", r.failures()}, {"problems", r.problems}, {"lossless_tensors", lossless}, {"lossless_exact", lossless_exact},
                  {"quantized_tensors", quantized}, {"worst_error_to_bound", worst_ratio}, {"seconds", r.seconds},
                  {"mb_per_s", mb_per_s(r.bytes, r.seconds)}, {"tensors", tensors}});
      return code;
    }
    for (const auto& p : r.problems) std::cerr << "tilecodec: " << input << ": " << p << "\n";
    for (const auto& t : r.tensors)
      if (!t.ok()) std::cerr << "tilecodec: " << input << ": tensor '" << t.name << "': " << t.problem << "\n";
    if (verbose && !g.quiet) {
      table t{{"tensor", "policy", "result", "max |error|", "error/bound"}, {true, true, true, false, false}, {}};
      for (const auto& x : r.tensors) {
        const bool q = x.policy.rfind("int", 0) == 0;
        t.rows.push_back({x.name, x.policy, !x.ok() ? "FAILED" : (x.exact ? "bit-exact" : (x.compared ? "within bound" : "decodes")),
                          q && x.compared ? fmt("%.3g", x.max_abs_error) : "", q && x.compared ? fmt("%.5f", x.max_error_to_bound) : ""});
      }
      t.print(std::cout);
    }
    if (!g.quiet) {
      std::cout << (r.ok() ? "OK" : "FAILED") << ": " << r.tensors.size() << " tensors, " << r.failures() << " failures; "
                << lossless_exact << "/" << lossless << " lossless/raw tensors bit-exact"
                << (against.empty() ? " (against the checksums recorded at compression)" : " (against " + against + ")");
      if (quantized) {
        std::cout << "; " << quantized << " quantized tensors decode";
        if (!against.empty()) std::cout << ", worst error " << fmt("%.5f", worst_ratio) << " of its bound (at most 1 passes)";
      }
      std::cout << "; " << fmt("%.2f s", r.seconds) << "\n";
    }
    return code;
  }
};

// ---- bench ----------------------------------------------------------------------------------------

#if TC_POSIX
// Drops a file's pages from the page cache (clean pages only; no root needed).
void drop_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}
#else
void drop_cache(const std::string&) {}
#endif

struct bench_cmd {
  std::string input, tmp;
  rule_options rules;
  int repeat = 3;
  bool cold = false, codec_only = false;
  int result = 0;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("bench", "measure host encode/decode speed on a model, and compress/decompress/load times of its files");
    sub->add_option("input", input, "safetensors model (file, index .json or directory)")->required();
    rules.add_to(sub);
    sub->add_option("--repeat,-n", repeat, "repetitions; the best time counts (default 3)")->check(CLI::Range(1, 100));
    sub->add_flag("--cold", cold, "drop the files from the page cache before each read pass (posix_fadvise)");
    sub->add_flag("--codec-only", codec_only, "only the in-memory codec measurement");
    sub->add_option("--tmp", tmp, "directory for the temporary container and safetensors (default: the system temp directory)");
    sub->footer("Example:\n  tilecodec bench --threads 2 --preset int8 model.safetensors\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }

  int run(const globals& g) {
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
    std::string preset;
    const policy_rules pr = rules.build(&preset);
    const safetensors::model m(input);
    const auto sources = host::list_source_tensors(m);
    const auto plan = host::plan_compression(m, pr);
    std::vector<container::detail::input_file> files;
    for (const auto& s : m.shards()) files.emplace_back(s.path());
    std::uint64_t total = 0;
    for (const auto& s : sources) total += s.info->byte_size();

    // 1. Codec, in memory: best-of-N encode and decode of every encoded tensor.
    struct group {
      std::size_t tensors = 0;
      std::uint64_t original = 0, encoded = 0;
      double encode_s = 0, decode_s = 0;
    };
    std::map<std::string, group> groups;
    {
      progress_bar bar("bench codec", g.show_progress());
      std::vector<std::uint8_t> in, out;
      std::uint64_t done = 0;
      for (std::size_t i = 0; i < sources.size(); ++i) {
        const auto& info = *sources[i].info;
        bar({done, total, i, sources.size(), info.name});
        done += info.byte_size();
        if (plan[i].policy.stored) continue;
        in.resize(static_cast<std::size_t>(info.byte_size()));
        files[sources[i].shard].read_at(sources[i].file_offset, in.data(), in.size());
        host::encode_options eo;
        eo.threads = g.threads;
        eo.name = info.name;
        encoded_tensor enc;
        double best_enc = 1e300, best_dec = 1e300;
        for (int k = 0; k < repeat; ++k) {
          const auto t0 = clock::now();
          enc = host::encode(in.data(), info.type, info.shape, plan[i].policy.params, eo);
          best_enc = std::min(best_enc, secs(t0));
        }
        out.resize(in.size());
        host::tensor_decoder dec(enc.view());
        for (int k = 0; k < repeat; ++k) {
          const auto t0 = clock::now();
          const status s = dec.decode(out.data(), info.type, out.size(), g.threads);
          best_dec = std::min(best_dec, secs(t0));
          if (s != status::success) throw error(s, info.name + ": decode failed in bench");
        }
        group& gr = groups[policy_name(plan[i].policy)];
        ++gr.tensors;
        gr.original += info.byte_size();
        gr.encoded += enc.size();
        gr.encode_s += best_enc;
        gr.decode_s += best_dec;
      }
      bar({done, total, sources.size(), sources.size(), {}});
    }
    group all;
    for (const auto& kv : groups) {
      all.tensors += kv.second.tensors, all.original += kv.second.original, all.encoded += kv.second.encoded;
      all.encode_s += kv.second.encode_s, all.decode_s += kv.second.decode_s;
    }

    // 2. Files: compress, decompress, and loading into memory (container decode vs safetensors read).
    double compress_s = 0, decompress_s = 0, load_s = 1e300, read_s = 1e300;
    std::uint64_t container_bytes = 0;
    if (!codec_only) {
      const fs::path dir = tmp.empty() ? fs::temp_directory_path() : fs::path(tmp);
      const std::string stem = "tilecodec-bench-" + std::to_string(::getpid());
      const std::string tcm = (dir / (stem + ".tcm")).string(), back = (dir / (stem + ".safetensors")).string();
      struct cleanup {
        std::string a, b;
        ~cleanup() {
          std::error_code ec;
          fs::remove(a, ec);
          fs::remove(b, ec);
        }
      } remove_later{tcm, back};
      host::compress_options co;
      co.rules = pr;
      co.threads = g.threads;
      compress_s = 1e300;
      for (int k = 0; k < repeat; ++k) {
        if (cold)
          for (const auto& s : m.shards()) drop_cache(s.path());
        progress_bar bar("bench compress", g.show_progress());
        co.on_progress = bar.callback();
        const auto r = host::compress_model(input, tcm, co);
        compress_s = std::min(compress_s, r.seconds);
        container_bytes = r.container_bytes;
      }
      const host::model_reader model(tcm);
      decompress_s = 1e300;
      for (int k = 0; k < repeat; ++k) {
        if (cold) drop_cache(tcm);
        host::export_options eo;
        eo.threads = g.threads;
        progress_bar bar("bench decompress", g.show_progress());
        eo.on_progress = bar.callback();
        const auto r = host::export_safetensors(model, back, eo);
        decompress_s = std::min(decompress_s, r.seconds);
      }
      std::error_code ec;
      fs::remove(back, ec);
      // Load into memory: one arena of the model's size (allocated and touched before timing).
      std::vector<std::uint8_t> arena(static_cast<std::size_t>(total) + 1, 1);
      for (int k = 0; k < repeat; ++k) {
        if (cold) drop_cache(tcm);
        const auto t0 = clock::now();
        std::uint64_t at = 0;
        const host::model_reader reader(tcm);
        reader.decode_all([&](const container::entry& e) {
          const host::model_reader::destination d{arena.data() + at, e.original_bytes(), e.type};
          at += e.original_bytes();
          return d;
        }, g.threads);
        load_s = std::min(load_s, secs(t0));
        if (cold)
          for (const auto& s : m.shards()) drop_cache(s.path());
        const auto t1 = clock::now();
        const safetensors::model st(input);
        std::vector<container::detail::input_file> in;
        for (const auto& s : st.shards()) in.emplace_back(s.path());
        at = 0;
        for (const auto& s : host::list_source_tensors(st)) {
          in[s.shard].read_at(s.file_offset, arena.data() + at, s.info->byte_size());
          at += s.info->byte_size();
        }
        read_s = std::min(read_s, secs(t1));
      }
    }

    const unsigned threads = g.threads ? g.threads : std::max(1u, std::thread::hardware_concurrency());
    if (g.json) {
      json pol = json::object();
      for (const auto& kv : groups)
        pol[kv.first] = {{"tensors", kv.second.tensors}, {"original_bytes", kv.second.original}, {"encoded_bytes", kv.second.encoded},
                         {"encode_mb_per_s", mb_per_s(kv.second.original, kv.second.encode_s)},
                         {"decode_mb_per_s", mb_per_s(kv.second.original, kv.second.decode_s)}};
      json j = {{"command", "bench"}, {"input", input}, {"preset", preset}, {"threads", threads}, {"repeat", repeat}, {"cold", cold},
                {"model_bytes", total}, {"codec", pol},
                {"codec_total", {{"original_bytes", all.original}, {"encoded_bytes", all.encoded},
                                 {"encode_mb_per_s", mb_per_s(all.original, all.encode_s)}, {"decode_mb_per_s", mb_per_s(all.original, all.decode_s)}}}};
      if (!codec_only)
        j["files"] = {{"container_bytes", container_bytes}, {"compress_seconds", compress_s}, {"compress_mb_per_s", mb_per_s(total, compress_s)},
                      {"decompress_seconds", decompress_s}, {"decompress_mb_per_s", mb_per_s(total, decompress_s)},
                      {"load_container_seconds", load_s}, {"read_safetensors_seconds", read_s},
                      {"load_mb_per_s", mb_per_s(total, load_s)}, {"read_mb_per_s", mb_per_s(total, read_s)}};
      print_json(j);
      return exit_ok;
    }
    std::cout << "codec, in memory (" << threads << " threads, best of " << repeat << "; MB/s of original bytes):\n";
    table t{{"policy", "tensors", "original", "encoded", "ratio", "encode", "decode"}, {true, false, false, false, false, false, false}, {}};
    for (const auto& kv : groups)
      t.rows.push_back({kv.first, std::to_string(kv.second.tensors), human_bytes(double(kv.second.original)), human_bytes(double(kv.second.encoded)),
                        fmt("%.1f%%", 100 * ratio_of(kv.second.encoded, kv.second.original)), rate(double(kv.second.original), kv.second.encode_s),
                        rate(double(kv.second.original), kv.second.decode_s)});
    t.rows.push_back({"all encoded", std::to_string(all.tensors), human_bytes(double(all.original)), human_bytes(double(all.encoded)),
                      fmt("%.1f%%", 100 * ratio_of(all.encoded, all.original)), rate(double(all.original), all.encode_s),
                      rate(double(all.original), all.decode_s)});
    t.print(std::cout);
    if (!codec_only) {
      std::cout << "\nfiles (" << human_bytes(double(total)) << " of tensors, " << (cold ? "cold" : "warm") << " page cache, best of " << repeat << "):\n";
      table f{{"operation", "seconds", "MB/s"}, {true, false, false}, {}};
      f.rows.push_back({"compress   safetensors -> container", fmt("%.3f", compress_s), fmt("%.1f", mb_per_s(total, compress_s))});
      f.rows.push_back({"decompress container -> safetensors", fmt("%.3f", decompress_s), fmt("%.1f", mb_per_s(total, decompress_s))});
      f.rows.push_back({"load       container -> memory", fmt("%.3f", load_s), fmt("%.1f", mb_per_s(total, load_s))});
      f.rows.push_back({"read       safetensors -> memory", fmt("%.3f", read_s), fmt("%.1f", mb_per_s(total, read_s))});
      f.print(std::cout);
      std::cout << "container " << human_bytes(double(container_bytes)) << " (" << fmt("%.1f%%", 100 * ratio_of(container_bytes, total))
                << "); load takes " << fmt("%.2fx", read_s > 0 ? load_s / read_s : 0) << " the time of reading the safetensors\n";
    }
    return exit_ok;
  }
};

// ---- synthetic ------------------------------------------------------------------------------------

struct synthetic_cmd {
  std::string output, size = "1GB", type = "bf16";
  std::uint64_t seed = 1, hidden = 2048, intermediate = 5632, vocab = 32000;
  bool force = false;
  int result = 0;

  void add(CLI::App& app, globals& g) {
    CLI::App* sub = app.add_subcommand("synthetic", "write a seeded synthetic Llama-shaped safetensors model (for benchmarks)");
    sub->add_option("output", output, "safetensors file to write")->required();
    sub->add_option("--size", size, "approximate model size (default 1GB)");
    sub->add_option("--dtype", type, "bf16 (default), f16 or f32");
    sub->add_option("--seed", seed, "generator seed (default 1)");
    sub->add_option("--hidden", hidden, "hidden size (default 2048)")->check(CLI::Range(1, 65536));
    sub->add_option("--intermediate", intermediate, "MLP size (default 5632)")->check(CLI::Range(1, 262144));
    sub->add_option("--vocab", vocab, "vocabulary size (default 32000)")->check(CLI::Range(1, 1048576));
    sub->add_flag("--force,-f", force, "overwrite the output if it exists");
    sub->footer("Example:\n  tilecodec synthetic --size 1GB synthetic-1g.safetensors\n" + see_exit_codes);
    sub->callback([this, &g] { result = run(g); });
  }

  int run(const globals& g) {
    check_output("", output, force);
    dtype t;
    std::string upper = type;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!parse_dtype(upper, t) || (t != dtype::bf16 && t != dtype::f16 && t != dtype::f32)) throw usage_error("--dtype must be bf16, f16 or f32");
    const std::uint64_t target = parse_size(size, "--size"), ds = dtype_size(t);
    const std::uint64_t H = hidden, I = intermediate, V = vocab;
    const std::uint64_t fixed = (2 * V * H + H) * ds, layer = (4 * H * H + 3 * H * I + 2 * H) * ds;
    const std::uint64_t layers = target > fixed ? std::max<std::uint64_t>(1, (target - fixed + layer / 2) / layer) : 1;
    struct spec {
      std::string name;
      std::uint64_t rows, cols;
      bool norm;
    };
    std::vector<spec> specs{{"model.embed_tokens.weight", V, H, false}};
    for (std::uint64_t l = 0; l < layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      specs.push_back({p + "input_layernorm.weight", 1, H, true});
      for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) specs.push_back({p + "self_attn." + n + ".weight", H, H, false});
      specs.push_back({p + "post_attention_layernorm.weight", 1, H, true});
      specs.push_back({p + "mlp.gate_proj.weight", I, H, false});
      specs.push_back({p + "mlp.up_proj.weight", I, H, false});
      specs.push_back({p + "mlp.down_proj.weight", H, I, false});
    }
    specs.push_back({"model.norm.weight", 1, H, true});
    specs.push_back({"lm_head.weight", V, H, false});
    std::vector<host::safetensors_stream_writer::tensor> decl;
    std::uint64_t total = 0;
    for (const auto& s : specs) {
      decl.push_back({s.name, t, s.norm ? std::vector<std::uint64_t>{s.cols} : std::vector<std::uint64_t>{s.rows, s.cols}});
      total += s.rows * s.cols * ds;
    }
    host::safetensors_stream_writer w(output, decl, {{"format", "pt"}, {"generator", "tilecodec synthetic"}, {"seed", std::to_string(seed)}});
    progress_bar bar("synthetic", g.show_progress());
    std::uint64_t done = 0;
    std::vector<std::uint8_t> bytes;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      bar({done, total, i, specs.size(), specs[i].name});
      host::synthetic_params p;
      p.seed = seed * 1000003u + i;
      if (specs[i].norm) p.std = 0.02, p.row_cv = 0;
      std::vector<float> v = host::synthetic_weights(specs[i].rows, specs[i].cols, p, g.threads);
      if (specs[i].norm)
        for (float& x : v) x += 1.0f;
      if (t == dtype::f32) {
        w.write_next(v.data(), v.size() * 4);
      } else {
        const std::vector<std::uint16_t> h = host::to_half_bits(v, t);
        w.write_next(h.data(), h.size() * 2);
      }
      done += specs[i].rows * specs[i].cols * ds;
    }
    bar({done, total, specs.size(), specs.size(), {}});
    w.finish();
    if (g.json) {
      print_json({{"command", "synthetic"}, {"output", output}, {"bytes", total}, {"tensors", specs.size()}, {"layers", layers},
                  {"dtype", dtype_name(t)}, {"seed", seed}});
    } else if (!g.quiet) {
      std::cout << "wrote " << output << ": " << specs.size() << " tensors (" << layers << " layers, hidden " << H << ", MLP " << I
                << ", vocab " << V << "), " << human_bytes(double(total)) << " of " << dtype_name(t) << "\n";
    }
    return exit_ok;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tilecodec: compress LLM weights with tiled entropy coding (safetensors <-> tilecodec container)", "tilecodec"};
  app.fallthrough();  // global options may come after the subcommand
  app.require_subcommand(1);
  app.set_version_flag("--version", "tilecodec " + std::to_string(TILECODEC_VERSION_MAJOR) + "." + std::to_string(TILECODEC_VERSION_MINOR) + "." +
                                         std::to_string(TILECODEC_VERSION_PATCH) + " (container format " + std::to_string(container::format_version) + ")");
  globals g;
  app.add_flag("--json", g.json, "machine-readable JSON on stdout (errors too)");
  app.add_flag("--quiet,-q", g.quiet, "print nothing but errors");
  app.add_flag("--progress", g.progress, "show progress on stderr even when it is not a terminal");
  app.add_flag("--no-progress", g.no_progress, "never show progress");
  app.add_option("--threads,-j", g.threads, "threads (default: all cores)");
  app.footer(std::string("Examples:\n"
                         "  tilecodec compress model.safetensors model.tcm                   lossless (bit-exact)\n"
                         "  tilecodec compress --preset int8 model.safetensors model-int8.tcm\n"
                         "  tilecodec compress --rule '*embed*=raw' --rule '*mlp*=int4-g64' model/ model.tcm\n"
                         "  tilecodec inspect model.tcm\n"
                         "  tilecodec verify model.tcm --against model.safetensors\n"
                         "  tilecodec decompress model.tcm restored.safetensors\n"
                         "  tilecodec bench --threads 2 model.safetensors\n"
                         "Policies: raw, lossless, int8, int4-g128 (int4), int4-g64, int4-g32; options :tile=RxC :coder=raw.\n"
                         "Presets keep small tensors, norms and biases raw; int8/int4 quantize only attention/MLP matrices.\n"
                         "Tensors the codec cannot encode (I64, BOOL, F64, F8, ...) are stored raw, never dropped.\n\n") +
             exit_codes_help);

  compress_cmd compress;
  decompress_cmd decompress;
  inspect_cmd inspect;
  verify_cmd verify;
  bench_cmd bench;
  synthetic_cmd synthetic;
  compress.add(app, g);
  decompress.add(app, g);
  inspect.add(app, g);
  verify.add(app, g);
  bench.add(app, g);
  synthetic.add(app, g);
  install_signal_handlers();

  auto fail = [&](int code, const std::string& kind, const std::string& message) {
    std::cerr << "tilecodec: error: " << message << "\n";
    if (g.json) print_json({{"error", {{"kind", kind}, {"message", message}, {"exit_code", code}}}});
    return code;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  } catch (const usage_error& e) {
    return fail(exit_usage, "usage", e.what());
  } catch (const interrupted_error&) {
    return fail(exit_interrupted, "interrupted", "interrupted; no output was written");
  } catch (const error& e) {
    return fail(exit_code_for(e.code()), to_string(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(exit_memory, "out of memory", "out of memory");
  } catch (const fs::filesystem_error& e) {
    return fail(exit_io, "I/O error", e.what());
  } catch (const std::exception& e) {
    return fail(exit_internal, "internal", std::string("internal error: ") + e.what());
  }
  for (const int r : {compress.result, decompress.result, inspect.result, verify.result, bench.result, synthetic.result})
    if (r != 0) return r;
  return exit_ok;
}
