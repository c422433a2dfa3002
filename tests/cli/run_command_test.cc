// `flotilla run`: local generation with the real binary and the shared stories260K files.
#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"
#include "tests/common/test_models.h"

namespace flotilla::testing {
namespace {

// Greedy, and room for the golden's 5 prompt + 128 generated tokens (the file states 128).
std::vector<std::string> GreedyRun(const Golden& g, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", "-m", "stories260K-f32.gguf", "-p", g.prompt, "--temp", "0",
                                   "-n", std::to_string(g.generated_ids.size()), "-c", "512", "-t", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(RunCommand, GreedyPrintsThePromptThenTheGoldenText) {
  const Golden g = LoadGolden("stories260K-f32.json");
  ASSERT_FALSE(g.text.empty());
  TempDir dir;
  const CliResult r = RunCli(dir, GreedyRun(g));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, g.prompt + g.text + "\n");
  EXPECT_NE(r.err.find("stories260K-f32.gguf"), std::string::npos) << r.err;  // names the model it ran
}

TEST(RunCommand, GreedyIdsAreTheGoldenIds) {
  const Golden g = LoadGolden("stories260K-f32.json");
  ASSERT_FALSE(g.generated_ids.empty());
  TempDir dir;
  const CliResult r = RunCli(dir, GreedyRun(g, {"--ids"}));
  ASSERT_EQ(r.code, 0) << r.err;
  std::string want;
  for (size_t i = 0; i < g.generated_ids.size(); ++i) want += (i ? " " : "") + std::to_string(g.generated_ids[i]);
  EXPECT_EQ(r.out, want + "\n");
}

TEST(RunCommand, BadModelPathExitsNonZeroNamingTheFile) {
  TempDir dir;
  const std::string missing = dir.File("no-such-model.gguf");
  CliResult r = RunCli(dir, {"run", "-m", missing, "-n", "4"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  const std::string not_a_model = dir.File("notes.gguf");
  WriteBytes(not_a_model, "not a model\n");
  r = RunCli(dir, {"run", "-m", not_a_model, "-n", "4"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(not_a_model), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace flotilla::testing
