#include "gateway/auth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace flotilla::gateway {
namespace {

std::string KeyFile(const std::string& tenants, const std::string& keys) {
  return "{\"tenants\": [" + tenants + "], \"keys\": [" + keys + "]}";
}

std::string Key(const std::string& plain, const std::string& tenant) {
  return "{\"sha256\": \"" + Sha256Hex(plain) + "\", \"tenant\": \"" + tenant + "\"}";
}

TEST(AuthTest, Sha256MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthTest, ParsesTenantsAndLimits) {
  auto set = ParseKeyFile(KeyFile(
      R"({"name": "acme", "requests_per_second": 5, "request_burst": 10, "tokens_per_minute": 6000,
          "max_concurrent": 3, "max_tokens_per_request": 64, "allowed_models": ["m1"], "max_priority": 2})",
      Key("sk-1", "acme")));
  ASSERT_TRUE(set.ok()) << set.status();
  auto t = (*set)->by_hash.at(Sha256Hex("sk-1"));
  EXPECT_EQ(t->name, "acme");
  EXPECT_EQ(t->limits.requests_per_second, 5);
  EXPECT_EQ(t->limits.RequestBurst(), 10);
  EXPECT_EQ(t->limits.tokens_per_minute, 6000);
  EXPECT_EQ(t->limits.TokenBurst(), 6000);
  EXPECT_EQ(t->limits.max_concurrent, 3u);
  EXPECT_EQ(t->limits.max_tokens_per_request, 64u);
  EXPECT_EQ(t->limits.max_priority, 2);
  EXPECT_TRUE(t->AllowsModel("m1"));
  EXPECT_FALSE(t->AllowsModel("m2"));
}

TEST(AuthTest, RejectsBadFiles) {
  const char* bad[] = {
      "not json",
      "{}",
      R"({"keys": [{"key": "plaintext", "tenant": "a"}], "tenants": [{"name": "a"}]})",
      R"({"keys": [{"sha256": "abc", "tenant": "a"}], "tenants": [{"name": "a"}]})",
      R"({"keys": [], "tenants": [{"name": "a", "requests_per_second": -1}]})",
      R"({"keys": [], "tenants": [{"name": "a", "rps": 1}]})",
      R"({"keys": [], "tenants": [{"name": "a b"}]})",
      R"({"keys": [], "tenants": [{"name": "a"}, {"name": "a"}]})",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseKeyFile(text).ok()) << text;
  EXPECT_FALSE(ParseKeyFile(KeyFile(R"({"name": "a"})", Key("k", "nobody"))).ok());
  EXPECT_FALSE(ParseKeyFile(KeyFile(R"({"name": "a"})", Key("k", "a") + "," + Key("k", "a"))).ok());
}

class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/flotilla-auth-XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    path_ = tmpl;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  // Replaces the file atomically, as an operator (or a Kubernetes secret mount) would.
  void Write(const std::string& text) {
    std::string tmp = path_ + ".new";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(AuthTest, AuthenticatesAndReloadsWithoutRestart) {
  TempFile f;
  f.Write(KeyFile(R"({"name": "a"}, {"name": "b"})", Key("key-a", "a")));
  auto auth = Authenticator::FromFile(f.path());
  ASSERT_TRUE(auth.ok()) << auth.status();
  Authenticator& a = **auth;
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ((*a.Authenticate("key-a"))->name, "a");
  EXPECT_EQ(a.Authenticate("key-b").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(a.Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(*a.ReloadIfChanged(), false);  // unchanged

  f.Write(KeyFile(R"({"name": "a"}, {"name": "b"})", Key("key-b", "b")));
  ASSERT_EQ(*a.ReloadIfChanged(), true);
  EXPECT_EQ((*a.Authenticate("key-b"))->name, "b");
  EXPECT_FALSE(a.Authenticate("key-a").ok());  // revoked

  // A broken file keeps the previous keys and is reported once.
  f.Write("{ broken");
  EXPECT_FALSE(a.ReloadIfChanged().ok());
  EXPECT_EQ(*a.ReloadIfChanged(), false);
  EXPECT_EQ((*a.Authenticate("key-b"))->name, "b");
  EXPECT_EQ(a.reloads(), 2);
}

TEST(AuthTest, MissingFileFailsAtStart) {
  EXPECT_FALSE(Authenticator::FromFile("/nonexistent/keys.json").ok());
}

TEST(AuthTest, NoAuthModeMapsEverythingToOneTenant) {
  Tenant t;
  t.name = "local";
  auto a = Authenticator::NoAuth(t);
  EXPECT_FALSE(a->enabled());
  EXPECT_EQ((*a->Authenticate(""))->name, "local");
  EXPECT_EQ((*a->Authenticate("anything"))->name, "local");
}

}  // namespace
}  // namespace flotilla::gateway
