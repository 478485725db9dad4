// tilecodec/detail/parallel.hpp: a minimal dynamic parallel-for over std::thread.
// Work items are claimed one at a time from an atomic counter, so uneven tiles balance.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tilecodec {
namespace detail {

[[nodiscard]] inline unsigned resolve_threads(unsigned requested) {
  if (requested != 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1u : hw;
}

// Calls body(item, worker) for every item in [0, count), on up to `threads` threads
// (worker in [0, threads)). The first exception thrown by any body is rethrown here.
template <class Body>
void parallel_for(std::uint64_t count, unsigned threads, Body&& body) {
  const unsigned workers = static_cast<unsigned>(std::min<std::uint64_t>(resolve_threads(threads), count));
  if (workers <= 1) {
    for (std::uint64_t i = 0; i < count; ++i) body(i, 0u);
    return;
  }
  std::atomic<std::uint64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto run = [&](unsigned worker) {
    try {
      for (std::uint64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(i, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next.store(count);  // stop handing out work
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (unsigned w = 1; w < workers; ++w) pool.emplace_back(run, w);
  run(0);
  for (std::thread& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace detail
}  // namespace tilecodec
