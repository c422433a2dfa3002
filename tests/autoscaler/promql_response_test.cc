// Parsing Prometheus /api/v1/query answers (the shapes Prometheus 2.x returns).
#include <gtest/gtest.h>

#include "autoscaler/promql_reader.h"

namespace flotilla::autoscaler {
namespace {

TEST(PromqlResponseTest, SumsAVector) {
  absl::StatusOr<QueryValue> v = ParsePromqlResponse(200, R"({"status":"success","data":{"resultType":"vector",
    "result":[{"metric":{"model":"m","instance":"a"},"value":[1700000000.1,"3"]},
              {"metric":{"model":"m","instance":"b"},"value":[1700000000.1,"4.5"]}]}})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->series, 2);
  EXPECT_DOUBLE_EQ(*v->value, 7.5);
}

TEST(PromqlResponseTest, EmptyAndNaNAreNoValue) {
  absl::StatusOr<QueryValue> v =
      ParsePromqlResponse(200, R"({"status":"success","data":{"resultType":"vector","result":[]}})");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->value.has_value());
  EXPECT_EQ(v->series, 0);
  v = ParsePromqlResponse(200, R"({"status":"success","data":{"resultType":"vector",
    "result":[{"metric":{},"value":[1700000000,"NaN"]}]}})");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->value.has_value());
  v = ParsePromqlResponse(200, R"({"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}})");
  ASSERT_TRUE(v.ok());
  EXPECT_DOUBLE_EQ(*v->value, 2);
}

TEST(PromqlResponseTest, ErrorsAreStatuses) {
  absl::StatusOr<QueryValue> v = ParsePromqlResponse(
      400, R"({"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"})");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("parse error"), std::string::npos);
  EXPECT_FALSE(ParsePromqlResponse(502, "<html>bad gateway</html>").ok());
  EXPECT_FALSE(ParsePromqlResponse(200, R"({"status":"success","data":{"resultType":"matrix","result":[]}})").ok());
}

}  // namespace
}  // namespace flotilla::autoscaler
