#include "gateway/auth.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace flotilla::gateway {
namespace {

using json = nlohmann::json;

absl::StatusOr<Tenant> TenantFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("tenant must be an object");
  Tenant t;
  auto num = [&](const char* key, double& out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_number() || j[key].get<double>() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("tenant field '", key, "' must be a number >= 0"));
    }
    out = j[key].get<double>();
    return absl::OkStatus();
  };
  static const char* kKnown[] = {"name", "requests_per_second", "request_burst", "tokens_per_minute",
                                 "token_burst", "max_concurrent", "max_tokens_per_request",
                                 "allowed_models", "max_priority"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* k : kKnown) known |= it.key() == k;
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown tenant field '", it.key(), "'"));
  }
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("tenant needs a non-empty string 'name'");
  }
  t.name = j["name"].get<std::string>();
  for (char c : t.name) {
    // Tenant names end up in metric labels and Redis keys.
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return absl::InvalidArgumentError(absl::StrCat("tenant name '", t.name, "' may use only [A-Za-z0-9._-]"));
    }
  }
  double max_conc = 0, max_tok = 0, prio = 0;
  RETURN_IF_ERROR(num("requests_per_second", t.limits.requests_per_second));
  RETURN_IF_ERROR(num("request_burst", t.limits.request_burst));
  RETURN_IF_ERROR(num("tokens_per_minute", t.limits.tokens_per_minute));
  RETURN_IF_ERROR(num("token_burst", t.limits.token_burst));
  RETURN_IF_ERROR(num("max_concurrent", max_conc));
  RETURN_IF_ERROR(num("max_tokens_per_request", max_tok));
  RETURN_IF_ERROR(num("max_priority", prio));
  t.limits.max_concurrent = static_cast<uint32_t>(max_conc);
  t.limits.max_tokens_per_request = static_cast<uint32_t>(max_tok);
  t.limits.max_priority = static_cast<int32_t>(prio);
  if (j.contains("allowed_models")) {
    if (!j["allowed_models"].is_array()) return absl::InvalidArgumentError("'allowed_models' must be a list");
    for (const auto& m : j["allowed_models"]) {
      if (!m.is_string()) return absl::InvalidArgumentError("'allowed_models' entries must be strings");
      t.allowed_models.push_back(m.get<std::string>());
    }
  }
  return t;
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string FileStamp(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot open key file ", path));
  return text;
}

}  // namespace

std::string Sha256Hex(absl::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

absl::StatusOr<Tenant> ParseTenantJson(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("tenant is not valid JSON");
  return TenantFromJson(j);
}

absl::StatusOr<std::shared_ptr<const KeySet>> ParseKeyFile(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("key file is not a JSON object");
  auto set = std::make_shared<KeySet>();
  if (j.contains("tenants")) {
    if (!j["tenants"].is_array()) return absl::InvalidArgumentError("'tenants' must be a list");
    size_t i = 0;
    for (const auto& tj : j["tenants"]) {
      auto t = TenantFromJson(tj);
      if (!t.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("tenants[", i, "]: ", t.status().message()));
      }
      if (set->tenants.contains(t->name)) {
        return absl::InvalidArgumentError(absl::StrCat("tenant '", t->name, "' defined twice"));
      }
      std::string name = t->name;  // read before the move below
      set->tenants[name] = std::make_shared<const Tenant>(*std::move(t));
      ++i;
    }
  }
  if (!j.contains("keys") || !j["keys"].is_array()) return absl::InvalidArgumentError("key file needs a 'keys' list");
  size_t i = 0;
  for (const auto& kj : j["keys"]) {
    auto where = absl::StrCat("keys[", i++, "]: ");
    if (!kj.is_object()) return absl::InvalidArgumentError(where + "must be an object");
    if (kj.contains("key")) {
      // Refuse plaintext keys outright: the file must be safe to read by anyone who can read it.
      return absl::InvalidArgumentError(where + "plaintext 'key' is not accepted; store 'sha256' (flotilla-gateway --hash-key)");
    }
    if (!kj.contains("sha256") || !kj["sha256"].is_string()) return absl::InvalidArgumentError(where + "needs 'sha256'");
    std::string hash = kj["sha256"].get<std::string>();
    for (char& c : hash) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (!IsHex64(hash)) return absl::InvalidArgumentError(where + "'sha256' must be 64 hex digits");
    if (!kj.contains("tenant") || !kj["tenant"].is_string()) return absl::InvalidArgumentError(where + "needs 'tenant'");
    std::string tenant = kj["tenant"].get<std::string>();
    auto it = set->tenants.find(tenant);
    if (it == set->tenants.end()) return absl::InvalidArgumentError(where + "unknown tenant '" + tenant + "'");
    if (set->by_hash.contains(hash)) return absl::InvalidArgumentError(where + "duplicate key");
    set->by_hash[hash] = it->second;
  }
  return std::shared_ptr<const KeySet>(std::move(set));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string path) {
  std::unique_ptr<Authenticator> a(new Authenticator());
  a->path_ = std::move(path);
  auto loaded = a->ReloadIfChanged(/*force=*/true);
  if (!loaded.ok()) return loaded.status();
  return a;
}

std::unique_ptr<Authenticator> Authenticator::NoAuth(Tenant tenant) {
  std::unique_ptr<Authenticator> a(new Authenticator());
  a->no_auth_tenant_ = std::make_shared<const Tenant>(std::move(tenant));
  auto set = std::make_shared<KeySet>();
  set->tenants[a->no_auth_tenant_->name] = a->no_auth_tenant_;
  absl::MutexLock lock(&a->mu_);
  a->keys_ = std::move(set);
  return a;
}

absl::StatusOr<std::shared_ptr<const Tenant>> Authenticator::Authenticate(absl::string_view api_key) const {
  if (no_auth_tenant_) return no_auth_tenant_;
  if (api_key.empty()) return absl::UnauthenticatedError("missing API key (send 'Authorization: Bearer <key>')");
  std::shared_ptr<const KeySet> keys;
  {
    absl::ReaderMutexLock lock(&mu_);
    keys = keys_;
  }
  // Looking up the hash (not the key) means timing reveals nothing about valid keys.
  auto it = keys->by_hash.find(Sha256Hex(api_key));
  if (it == keys->by_hash.end()) return absl::UnauthenticatedError("invalid API key");
  return it->second;
}

absl::StatusOr<bool> Authenticator::ReloadIfChanged(bool force) {
  if (path_.empty()) return false;
  std::string stamp = FileStamp(path_);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (!force && stamp == file_stamp_) return false;
  }
  ASSIGN_OR_RETURN(std::string text, ReadFile(path_));
  auto parsed = ParseKeyFile(text);
  absl::MutexLock lock(&mu_);
  // Remember the stamp even on failure, so a broken file is reported once, not every poll.
  file_stamp_ = stamp;
  if (!parsed.ok()) return parsed.status();
  keys_ = *std::move(parsed);
  ++reloads_;
  return true;
}

size_t Authenticator::num_keys() const {
  absl::ReaderMutexLock lock(&mu_);
  return keys_ ? keys_->by_hash.size() : 0;
}

int64_t Authenticator::reloads() const {
  absl::ReaderMutexLock lock(&mu_);
  return reloads_;
}

std::vector<std::shared_ptr<const Tenant>> Authenticator::Tenants() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const Tenant>> out;
  if (keys_) {
    for (const auto& [name, t] : keys_->tenants) out.push_back(t);
  }
  return out;
}

}  // namespace flotilla::gateway
