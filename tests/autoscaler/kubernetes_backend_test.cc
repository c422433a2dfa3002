// KubernetesBackend against a local fake API server that checks each request the way the real
// kube-apiserver would receive it: path, verb, bearer token, Content-Type and JSON body. Also
// over TLS with a CA file, as in a pod. Not a real cluster: see docs/autoscaler.md.
#include "autoscaler/kubernetes_backend.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "autoscaler/child_process.h"
#include "tests/autoscaler/fake_api_server.h"
#include "tests/autoscaler/test_http_server.h"
#include "tests/autoscaler/test_util.h"

namespace flotilla::autoscaler {
namespace {

using testing::PollUntil;
using testing::TempDir;
using testing::FakeApiServer;
using testing::kBase;
using testing::SeenRequest;
using testing::TestHttpServer;

class KubernetesBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(api_.port(), 0);
    std::ofstream(dir_.File("token")) << "tok-1\n";  // service-account files end in a newline
  }
  KubernetesOptions Options(const std::string& scheme = "http") {
    KubernetesOptions o;
    o.api_server = absl::StrCat(scheme, "://127.0.0.1:", api_.port());
    o.token_file = dir_.File("token");
    o.namespace_name = "llm";
    o.deployments = {{"stories", "flotilla-worker-stories"}};
    return o;
  }

  TempDir dir_{"kubernetes_backend_test"};
  FakeApiServer api_;
};

TEST_F(KubernetesBackendTest, ReadsScaleAndReadyReplicas) {
  KubernetesBackend backend(Options());
  api_.Set(3, 1);
  absl::StatusOr<ReplicaState> s = backend.GetReplicas("stories");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->desired, 3);
  EXPECT_EQ(s->ready, 1);
  EXPECT_EQ(s->starting, 2);
  std::vector<SeenRequest> seen = api_.TakeSeen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, absl::StrCat(kBase, "/scale"));
  EXPECT_EQ(seen[0].authorization, "Bearer tok-1") << "token file's trailing newline must be stripped";
  EXPECT_EQ(seen[0].accept, "application/json");
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].path, kBase);
  // No ready pod: readyReplicas is omitted by the API, which means zero.
  api_.Set(2, 0);
  s = backend.GetReplicas("stories");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ready, 0);
  EXPECT_EQ(s->starting, 2);
}

TEST_F(KubernetesBackendTest, PatchesTheScaleSubresource) {
  KubernetesBackend backend(Options());
  ASSERT_TRUE(backend.SetReplicas("stories", 5).ok());
  EXPECT_EQ(api_.replicas(), 5);
  std::vector<SeenRequest> seen = api_.TakeSeen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "PATCH");
  EXPECT_EQ(seen[0].path, absl::StrCat(kBase, "/scale"));
  EXPECT_EQ(seen[0].authorization, "Bearer tok-1");
  EXPECT_EQ(seen[0].content_type, "application/merge-patch+json");
  EXPECT_EQ(nlohmann::json::parse(seen[0].body), nlohmann::json::parse(R"({"spec":{"replicas":5}})"));
  // Scale to zero is a patch like any other.
  ASSERT_TRUE(backend.SetReplicas("stories", 0).ok());
  EXPECT_EQ(api_.replicas(), 0);
}

TEST_F(KubernetesBackendTest, RereadsTheTokenFileEachTime) {
  KubernetesBackend backend(Options());
  ASSERT_TRUE(backend.GetReplicas("stories").ok());
  // The kubelet rotated the projected token.
  api_.SetToken("tok-2");
  std::ofstream(dir_.File("token")) << "tok-2\n";
  ASSERT_TRUE(backend.GetReplicas("stories").ok());
  std::vector<SeenRequest> seen = api_.TakeSeen();
  EXPECT_EQ(seen.back().authorization, "Bearer tok-2");
}

TEST_F(KubernetesBackendTest, ApiErrorsBecomeStatusesWithTheServersMessage) {
  KubernetesBackend backend(Options());
  api_.Forbid(true);
  absl::Status st = backend.SetReplicas("stories", 4);
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_NE(st.message().find("cannot patch resource"), std::string::npos) << st;
  api_.Forbid(false);
  api_.SetToken("other");
  EXPECT_TRUE(absl::IsUnauthenticated(backend.GetReplicas("stories").status()));
  KubernetesOptions o = Options();
  o.deployments["ghost"] = "no-such-deployment";
  KubernetesBackend ghost(o);
  api_.SetToken("tok-1");
  EXPECT_TRUE(absl::IsNotFound(ghost.GetReplicas("ghost").status()));
  EXPECT_TRUE(absl::IsNotFound(backend.GetReplicas("unmapped-pool").status()));
  api_.http().Stop();
  EXPECT_TRUE(absl::IsUnavailable(backend.GetReplicas("stories").status()));
}

TEST(KubernetesInClusterTest, DefaultsComeFromTheEnvironment) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  KubernetesOptions o;
  o.namespace_name = "llm";
  o.deployments = {{"stories", "d"}};
  absl::StatusOr<KubernetesOptions> r = ResolveInCluster(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->api_server, "https://10.96.0.1:443");
  EXPECT_EQ(r->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(r->ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  unsetenv("KUBERNETES_SERVICE_HOST");
  absl::StatusOr<KubernetesOptions> outside = ResolveInCluster(o);
  EXPECT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  unsetenv("KUBERNETES_SERVICE_PORT");
}

// A self-signed certificate for 127.0.0.1 made by the openssl command; false if unavailable.
bool MakeCertificate(const TempDir& dir, const std::string& name) {
  absl::StatusOr<ChildProcess> gen = ChildProcess::Start(
      {{"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir.File(name + ".key"), "-out",
        dir.File(name + ".crt")},
       {},
       dir.File("openssl.log")});
  if (!gen.ok()) return false;
  ExitInfo exit;
  return PollUntil([&] { return (exit = gen->Poll()).exited; }, 60) && exit.code == 0;
}

// Over HTTPS with the CA file, as inside a pod.
TEST(KubernetesTlsTest, VerifiesTheServerAgainstTheCaFile) {
  TempDir dir("kubernetes_tls_test");
  if (!MakeCertificate(dir, "server") || !MakeCertificate(dir, "other")) {
    GTEST_SKIP() << "openssl could not make test certificates; see " << dir.File("openssl.log");
  }
  const std::string cert = dir.File("server.crt"), key = dir.File("server.key");
  FakeApiServer api(std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str()));
  ASSERT_GT(api.port(), 0);
  std::ofstream(dir.File("token")) << "tok-1";
  KubernetesOptions o;
  o.api_server = absl::StrCat("https://127.0.0.1:", api.port());
  o.token_file = dir.File("token");
  o.ca_file = cert;
  o.namespace_name = "llm";
  o.deployments = {{"stories", "flotilla-worker-stories"}};
  KubernetesBackend backend(o);
  ASSERT_TRUE(backend.SetReplicas("stories", 3).ok());
  EXPECT_EQ(api.replicas(), 3);
  absl::StatusOr<ReplicaState> s = backend.GetReplicas("stories");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->desired, 3);

  // A CA that did not sign the server's certificate: refused, nothing sent.
  o.ca_file = dir.File("other.crt");
  api.TakeSeen();
  KubernetesBackend untrusting(o);
  absl::Status st = untrusting.SetReplicas("stories", 1);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(api.replicas(), 3);
  EXPECT_TRUE(api.TakeSeen().empty());
}

}  // namespace
}  // namespace flotilla::autoscaler
