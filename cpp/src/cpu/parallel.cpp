#include "pyxfer/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define PYXFER_HAVE_ATFORK 1
#endif

namespace pyxfer {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int resolve_threads(int requested) {
  if (requested <= 0) return hardware_threads();
  return std::min(requested, 256);
}

namespace {

// True on pool workers, and on a calling thread while it runs its share of a job: a
// parallel_for from there runs inline (no nested use of the pool, so no deadlock).
thread_local bool t_in_parallel = false;

// One parallel_for in flight: chunks of `grain` items handed out through `next`.
struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, grain = 1, chunks = 0;
  std::atomic<int64_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  void run() {
    for (;;) {
      const int64_t c = next.fetch_add(1);
      if (c >= chunks) return;
      const int64_t begin = c * grain;
      const int64_t end = std::min(n, begin + grain);
      try {
        (*fn)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(chunks);
      }
    }
  }
};

// Persistent workers, created on first use and grown to the largest count asked for. Workers
// sleep on a condition variable between jobs; the calling thread takes part in every job.
class Pool {
 public:
  // Run `job` on the caller and `helpers` workers; returns when every one of them is done.
  void run(Job& job, int helpers) {
    grow(helpers);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &job;
      wanted_ = helpers;
      busy_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    t_in_parallel = true;
    job.run();
    t_in_parallel = false;
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void grow(int helpers) {
    while (static_cast<int>(threads_.size()) < helpers) {
      const int index = static_cast<int>(threads_.size());
      uint64_t seen;
      {
        std::lock_guard<std::mutex> lock(m_);
        seen = generation_;
      }
      threads_.emplace_back([this, index, seen] { loop(index, seen); });
    }
  }

  void loop(int index, uint64_t seen) {
    t_in_parallel = true;
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= wanted_) continue;
      Job* job = job_;
      lock.unlock();
      job->run();
      lock.lock();
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  uint64_t generation_ = 0;
  Job* job_ = nullptr;
  int wanted_ = 0, busy_ = 0;
};

// One job at a time goes to the pool; a caller that finds it busy starts threads of its own
// for that call (as every call did before the pool existed). The pool is never destroyed
// (workers may still sleep at exit); a forked child drops the parent's pool, whose threads do
// not exist there, and starts its own on first use.
std::mutex g_submit;
Pool* g_pool = nullptr;

#if defined(PYXFER_HAVE_ATFORK)
void before_fork() { g_submit.lock(); }
void after_fork_parent() { g_submit.unlock(); }
void after_fork_child() {
  g_pool = nullptr;  // the parent's pool is leaked: its threads are gone, its locks unusable
  g_submit.unlock();
}
#endif

Pool& pool_locked() {
  if (g_pool == nullptr) {
#if defined(PYXFER_HAVE_ATFORK)
    static const bool registered =
        pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0;
    (void)registered;
#endif
    g_pool = new Pool();
  }
  return *g_pool;
}

}  // namespace

void parallel_for(int64_t n, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(threads), chunks));
  if (workers <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  // Dynamic chunk hand-out: chunk boundaries are fixed by `grain`, so the work each item sees is
  // the same whatever thread picks it up.
  Job job;
  job.fn = &fn;
  job.n = n, job.grain = grain, job.chunks = chunks;
  std::unique_lock<std::mutex> lock(g_submit, std::try_to_lock);
  if (lock.owns_lock()) {
    pool_locked().run(job, workers - 1);
    lock.unlock();
  } else {
    // The pool is busy with another caller's job (e.g. a loader thread's batch): rather than
    // wait for it, this call gets threads of its own for its duration.
    std::vector<std::thread> extra;
    extra.reserve(static_cast<size_t>(workers - 1));
    auto work = [&job] {
      t_in_parallel = true;
      job.run();
    };
    for (int t = 1; t < workers; ++t) extra.emplace_back(work);
    t_in_parallel = true;
    job.run();
    t_in_parallel = false;
    for (auto& th : extra) th.join();
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace pyxfer
