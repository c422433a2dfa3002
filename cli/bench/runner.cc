#include "cli/bench/runner.h"

#include <condition_variable>
#include <mutex>
#include <optional>

namespace flotilla::cli::bench {

std::vector<RequestRecord> RunLoad(const RunOptions& o, RequestFactory& factory, RequestSender& sender,
                                   SteadyTime epoch, RunProgress* progress, const std::atomic<bool>* stop) {
  RunProgress local;
  if (progress == nullptr) progress = &local;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<RequestRecord>> records;
  size_t inflight = 0;
  auto stopped = [&] { return stop != nullptr && stop->load(); };
  const auto end = epoch + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(o.duration_s));

  auto send_one = [&](std::unique_lock<std::mutex>& lock) {
    const size_t index = records.size();
    records.emplace_back();
    ++inflight;
    lock.unlock();
    progress->sent++;
    sender.Send(factory.Next(), [&, index](RequestRecord r) {
      progress->done++;
      if (!r.ok) progress->failed++;
      progress->output_tokens += static_cast<size_t>(std::max(0, r.output_tokens));
      std::lock_guard<std::mutex> g(mu);
      records[index] = std::move(r);
      --inflight;
      cv.notify_all();
    });
    lock.lock();
  };

  std::unique_lock<std::mutex> lock(mu);
  if (o.shape.scenario == Scenario::kConcurrency) {
    while (!stopped() && std::chrono::steady_clock::now() < end &&
           (o.max_requests == 0 || records.size() < o.max_requests)) {
      if (inflight >= static_cast<size_t>(o.shape.concurrency)) {
        // Woken by a completion; the timeout bounds how late a stop or the end is noticed.
        cv.wait_for(lock, std::chrono::milliseconds(50));
        continue;
      }
      send_one(lock);
    }
  } else {
    const std::vector<double> arrivals = ArrivalTimes(o.shape, o.duration_s, o.max_requests, o.seed);
    for (double t : arrivals) {
      const auto at = epoch + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(t));
      while (!stopped() && std::chrono::steady_clock::now() < at) {
        cv.wait_until(lock, std::min(at, std::chrono::steady_clock::now() + std::chrono::milliseconds(50)));
      }
      while (!stopped() && o.max_inflight > 0 && inflight >= static_cast<size_t>(o.max_inflight)) {
        cv.wait_for(lock, std::chrono::milliseconds(50));
      }
      if (stopped()) break;
      send_one(lock);
    }
  }
  progress->sending_finished = true;
  bool cancelled = false;
  while (inflight > 0) {
    if (stopped() && !cancelled) {
      cancelled = true;
      lock.unlock();
      sender.CancelAll();
      lock.lock();
    }
    cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  std::vector<RequestRecord> out;
  out.reserve(records.size());
  for (auto& r : records) out.push_back(r.has_value() ? std::move(*r) : RequestRecord{});
  return out;
}

}  // namespace flotilla::cli::bench
