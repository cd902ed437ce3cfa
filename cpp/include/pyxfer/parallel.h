// The extension's own threading: a fixed-size parallel-for over independent work items.
//
// Every item is computed on its own, so results never depend on the thread count; callers pass
// the count explicitly (0 means "all hardware threads").
#pragma once

#include <cstdint>
#include <functional>

namespace pyxfer {

// Number of hardware threads (at least 1).
int hardware_threads();

// Resolve a requested thread count: 0 -> hardware_threads(), otherwise clamp to [1, 256].
int resolve_threads(int requested);

// Run fn(begin, end) over [0, n) split into chunks of at least `grain` items on `threads` threads.
// Exceptions thrown by fn are re-thrown on the calling thread after all workers finished.
void parallel_for(int64_t n, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pyxfer
