// A fresh directory under the system temp directory, removed with everything in it at scope
// exit. Shared by the file-format and CLI tests.
#pragma once

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace tilecodec_test {

class scratch_dir {
 public:
  explicit scratch_dir(const std::string& prefix = "tilecodec-test") {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "-" + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  // Names of the files in the directory, sorted (to check that nothing partial was left behind).
  [[nodiscard]] std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace tilecodec_test
