// A tenant and its limits, as configured in the API key file (or the no-auth default).
// Plain data; shared immutably (std::shared_ptr<const Tenant>) once loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flotilla::gateway {

struct TenantLimits {
  double requests_per_second = 0;   // 0: unlimited
  double request_burst = 0;         // bucket size; 0: max(1, requests_per_second)
  double tokens_per_minute = 0;     // prompt + completion tokens; 0: unlimited
  double token_burst = 0;           // bucket size; 0: tokens_per_minute
  uint32_t max_concurrent = 0;      // open requests at once on one gateway; 0: unlimited
  uint32_t max_tokens_per_request = 0;  // cap on max_tokens; 0: the model's context
  int32_t max_priority = 0;         // requested priorities are capped at this

  double RequestBurst() const { return request_burst > 0 ? request_burst : (requests_per_second > 1 ? requests_per_second : 1); }
  double TokenBurst() const { return token_burst > 0 ? token_burst : tokens_per_minute; }
};

struct Tenant {
  std::string name;
  TenantLimits limits;
  std::vector<std::string> allowed_models;  // empty or "*": every model

  bool AllowsModel(const std::string& model) const {
    if (allowed_models.empty()) return true;
    for (const auto& m : allowed_models) {
      if (m == "*" || m == model) return true;
    }
    return false;
  }
};

}  // namespace flotilla::gateway
