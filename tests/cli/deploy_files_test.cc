// deploy/ cannot be run here (no Docker engine, no Helm, no cluster): this runs the static checks
// of tests/cli/deploy_lint.py (YAML/JSON syntax, chart template consistency, promtool on the
// rules and the dashboard's queries, Dockerfile targets) and fails with its findings.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace {

TEST(DeployFiles, PassStaticChecks) {
  const char* src = std::getenv("FLOTILLA_SOURCE_DIR");
  const std::string root = src != nullptr ? src : ".";
  // Debian's python3 carries PyYAML (pyenv's may not).
  const std::string cmd = "/usr/bin/python3 " + root + "/tests/cli/deploy_lint.py " + root + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("ok templates/worker-deployment.yaml"), std::string::npos) << out;
}

}  // namespace
