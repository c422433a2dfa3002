// A fake kube-apiserver for one Deployment (llm/flotilla-worker-stories): the scale
// subresource (GET, PATCH) and the Deployment (GET), with bearer-token checks, the API's
// Status error objects, and a record of every request as the real server would receive it.
#pragma once

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/autoscaler/test_http_server.h"

namespace flotilla::autoscaler::testing {

inline constexpr char kBase[] = "/apis/apps/v1/namespaces/llm/deployments/flotilla-worker-stories";

struct SeenRequest {
  std::string method, path, authorization, content_type, accept, body;
};

// The parts of kube-apiserver the backend talks to, for one Deployment.
class FakeApiServer {
 public:
  explicit FakeApiServer(std::unique_ptr<httplib::Server> server = std::make_unique<httplib::Server>())
      : http_(std::move(server)) {
    auto& s = http_.server();
    s.Get(absl::StrCat(kBase, "/scale"), [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      Json(res, 200, ScaleObject());
    });
    s.Get(kBase, [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      std::lock_guard<std::mutex> lock(mu_);
      nlohmann::json status = {{"replicas", replicas_}, {"updatedReplicas", replicas_}};
      if (ready_ > 0) status["readyReplicas"] = ready_;  // the API omits zero values
      Json(res, 200, {{"kind", "Deployment"}, {"apiVersion", "apps/v1"},
                      {"metadata", {{"name", "flotilla-worker-stories"}, {"namespace", "llm"}}},
                      {"spec", {{"replicas", replicas_}}}, {"status", status}});
    });
    s.Patch(absl::StrCat(kBase, "/scale"), [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      const std::string ct = req.get_header_value("Content-Type");
      if (ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json" &&
          ct != "application/json-patch+json" && ct != "application/apply-patch+yaml") {
        return Json(res, 415, StatusObject(415, "UnsupportedMediaType",
                                           "the body of the request was in an unknown format"));
      }
      nlohmann::json patch = nlohmann::json::parse(req.body, nullptr, false);
      if (patch.is_discarded() || !patch.contains("spec") || !patch["spec"].contains("replicas") ||
          !patch["spec"]["replicas"].is_number_integer()) {
        return Json(res, 422, StatusObject(422, "Invalid", "spec.replicas: Invalid value"));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        replicas_ = patch["spec"]["replicas"].get<int>();
      }
      Json(res, 200, ScaleObject());
    });
    port_ = http_.Start();
  }

  void Set(int replicas, int ready) {
    std::lock_guard<std::mutex> lock(mu_);
    replicas_ = replicas;
    ready_ = ready;
  }
  void SetToken(std::string t) {
    std::lock_guard<std::mutex> lock(mu_);
    token_ = std::move(t);
  }
  void Forbid(bool f) {
    std::lock_guard<std::mutex> lock(mu_);
    forbid_ = f;
  }
  int replicas() {
    std::lock_guard<std::mutex> lock(mu_);
    return replicas_;
  }
  std::vector<SeenRequest> TakeSeen() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(seen_, {});
  }
  int port() const { return port_; }
  TestHttpServer& http() { return http_; }

 private:
  static nlohmann::json StatusObject(int code, const std::string& reason, const std::string& message) {
    return {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},
            {"message", message}, {"reason", reason}, {"code", code}};
  }
  static void Json(httplib::Response& res, int code, const nlohmann::json& j) {
    res.status = code;
    res.set_content(j.dump(), "application/json");
  }
  nlohmann::json ScaleObject() {
    std::lock_guard<std::mutex> lock(mu_);
    return {{"kind", "Scale"}, {"apiVersion", "autoscaling/v1"},
            {"metadata", {{"name", "flotilla-worker-stories"}, {"namespace", "llm"}}},
            {"spec", {{"replicas", replicas_}}},
            {"status", {{"replicas", replicas_}, {"selector", "app=flotilla-worker,model=stories"}}}};
  }
  bool Admit(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back({req.method, req.path, req.get_header_value("Authorization"),
                     req.get_header_value("Content-Type"), req.get_header_value("Accept"), req.body});
    if (req.get_header_value("Authorization") != "Bearer " + token_) {
      res.status = 401;
      res.set_content(StatusObject(401, "Unauthorized", "Unauthorized").dump(), "application/json");
      return false;
    }
    if (forbid_) {
      res.status = 403;
      res.set_content(StatusObject(403, "Forbidden",
                                   "deployments.apps \"flotilla-worker-stories\" is forbidden: User "
                                   "\"system:serviceaccount:llm:autoscaler\" cannot patch resource "
                                   "\"deployments/scale\"")
                          .dump(),
                      "application/json");
      return false;
    }
    return true;
  }

  TestHttpServer http_;
  int port_ = 0;
  std::mutex mu_;
  int replicas_ = 2;
  int ready_ = 1;
  bool forbid_ = false;
  std::string token_ = "tok-1";
  std::vector<SeenRequest> seen_;
};

}  // namespace flotilla::autoscaler::testing
