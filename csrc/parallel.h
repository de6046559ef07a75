// A fork-safe parallel loop: threads are created for one call and joined before it returns, so no thread,
// lock or pool outlives a call (a process may fork between calls, e.g. DataLoader workers).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fastbert {

// Calls body(begin, end) over [0, n) in chunks of `grain`, on up to `num_threads` threads (the caller's
// included). The first exception thrown by a body is rethrown here after all threads have finished.
template <class Body>
void parallel_for(size_t n, size_t grain, int num_threads, Body&& body) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    const size_t chunks = (n + grain - 1) / grain;
    const size_t threads = std::min<size_t>(std::max(num_threads, 1), chunks);
    if (threads <= 1) {
        body(size_t{0}, n);
        return;
    }
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        try {
            for (;;) {
                const size_t c = next.fetch_add(1, std::memory_order_relaxed);
                if (c >= chunks) break;
                body(c * grain, std::min(n, (c + 1) * grain));
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            next.store(chunks);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (size_t t = 1; t < threads; ++t) {
        try {
            pool.emplace_back(worker);
        } catch (...) {
            break;  // could not start more threads: the ones running (and this one) do the rest
        }
    }
    worker();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace fastbert
