// ChildProcess: start, exit codes, signals, logs, environment, process group, exec failures.
#include "autoscaler/child_process.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/autoscaler/test_util.h"

namespace flotilla::autoscaler {
namespace {

using testing::PollUntil;
using testing::TempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ExitInfo WaitExit(ChildProcess& p) {
  ExitInfo e;
  PollUntil([&] { return (e = p.Poll()).exited; }, 20, 10);
  return e;
}

TEST(ChildProcessTest, ExitCodeLogAndEnvironment) {
  TempDir dir("child_process_test");
  absl::StatusOr<ChildProcess> p = ChildProcess::Start(
      {{"/bin/sh", "-c", "echo out=$FLOTILLA_TEST_VAR; echo err >&2; exit 3"}, {"FLOTILLA_TEST_VAR=42"},
       dir.File("log")});
  ASSERT_TRUE(p.ok()) << p.status();
  ExitInfo e = WaitExit(*p);
  ASSERT_TRUE(e.exited);
  EXPECT_EQ(e.code, 3);
  EXPECT_EQ(e.description, "exit 3");
  EXPECT_EQ(Slurp(dir.File("log")), "out=42\nerr\n");
  // Reaped once; later polls keep the result.
  EXPECT_EQ(p->Poll().code, 3);
}

TEST(ChildProcessTest, SignalsAndOwnProcessGroup) {
  absl::StatusOr<ChildProcess> p = ChildProcess::Start({{"sleep", "30"}, {}, ""});
  ASSERT_TRUE(p.ok()) << p.status();
  // Its own group: a terminal's Ctrl-C goes to the parent, which drains children in order.
  ASSERT_TRUE(PollUntil([&] { return getpgid(p->pid()) == p->pid(); }, 5, 5));
  EXPECT_FALSE(p->Poll().exited);
  ASSERT_TRUE(p->Signal(SIGTERM).ok());
  ExitInfo e = WaitExit(*p);
  ASSERT_TRUE(e.exited);
  EXPECT_EQ(e.code, 128 + SIGTERM);
  EXPECT_NE(e.description.find("signal 15"), std::string::npos) << e.description;
  EXPECT_TRUE(p->Signal(SIGTERM).ok()) << "signalling a reaped child is a no-op";
}

TEST(ChildProcessTest, ExecFailureIsReportedAndNothingRuns) {
  absl::StatusOr<ChildProcess> p = ChildProcess::Start({{"/nonexistent/flotilla-worker"}, {}, ""});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("No such file"), std::string::npos) << p.status();
  EXPECT_FALSE(ChildProcess::Start({{}, {}, ""}).ok());
}

TEST(ChildProcessTest, DescriptorsOfTheParentAreNotInherited) {
  TempDir dir("child_process_fd_test");
  // An fd opened without O_CLOEXEC (as a listening socket of some library might be).
  int fd = ::open(dir.File("held").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  absl::StatusOr<ChildProcess> p = ChildProcess::Start(
      {{"/bin/sh", "-c", "ls /proc/self/fd | wc -l"}, {}, dir.File("log")});
  ASSERT_TRUE(p.ok());
  WaitExit(*p);
  ::close(fd);
  // 0, 1, 2 and the one ls opens to read the directory.
  EXPECT_EQ(Slurp(dir.File("log")), "4\n");
}

}  // namespace
}  // namespace flotilla::autoscaler
