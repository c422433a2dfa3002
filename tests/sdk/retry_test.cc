// The SDK's pure parts: backoff schedule, retry decisions, deadlines, chunk accumulation.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "gtest/gtest.h"
#include "flotilla/sdk/client.h"
#include "flotilla/sdk/completion.h"
#include "flotilla/sdk/options.h"
#include "sdk/cpp/src/call_setup.h"

namespace flotilla::sdk {
namespace {

TEST(Backoff, GrowsGeometricallyUpToTheCap) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.multiplier = 2;
  p.max_backoff = absl::Milliseconds(350);
  p.jitter = 0;
  EXPECT_EQ(BackoffFor(p, 1, 0.5), absl::Milliseconds(100));
  EXPECT_EQ(BackoffFor(p, 2, 0.5), absl::Milliseconds(200));
  EXPECT_EQ(BackoffFor(p, 3, 0.5), absl::Milliseconds(350));
  EXPECT_EQ(BackoffFor(p, 30, 0.5), absl::Milliseconds(350));
}

TEST(Backoff, JitterStaysInItsBand) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.jitter = 0.2;
  EXPECT_EQ(BackoffFor(p, 1, 0.0), absl::Milliseconds(80));
  EXPECT_EQ(BackoffFor(p, 1, 0.5), absl::Milliseconds(100));
  EXPECT_LE(BackoffFor(p, 1, 0.999), absl::Milliseconds(120));
  EXPECT_GT(BackoffFor(p, 1, 0.999), absl::Milliseconds(119));
}

TEST(Retry, OnlyUnavailableByDefault) {
  RetryPolicy p;
  EXPECT_TRUE(IsRetryable(p, absl::StatusCode::kUnavailable));
  EXPECT_FALSE(IsRetryable(p, absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(IsRetryable(p, absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsRetryable(p, absl::StatusCode::kDeadlineExceeded));
  p.retry_resource_exhausted = true;
  EXPECT_TRUE(IsRetryable(p, absl::StatusCode::kResourceExhausted));
}

TEST(Retry, BoundedByAttemptsAndDeadline) {
  RetryPolicy p;
  p.max_attempts = 3;
  p.initial_backoff = absl::Milliseconds(100);
  p.jitter = 0;
  const absl::Time now = absl::FromUnixSeconds(1000);
  const absl::Status unavailable = absl::UnavailableError("x");
  EXPECT_EQ(internal::RetryWait(p, unavailable, 1, absl::ZeroDuration(), absl::InfiniteFuture(), now, 0.5),
            absl::Milliseconds(100));
  EXPECT_EQ(internal::RetryWait(p, unavailable, 2, absl::ZeroDuration(), absl::InfiniteFuture(), now, 0.5),
            absl::Milliseconds(200));
  // Three attempts made: no more.
  EXPECT_FALSE(internal::RetryWait(p, unavailable, 3, absl::ZeroDuration(), absl::InfiniteFuture(), now, 0.5));
  // The wait would end past the deadline: give up now rather than fail later.
  EXPECT_FALSE(internal::RetryWait(p, unavailable, 1, absl::ZeroDuration(), now + absl::Milliseconds(50), now, 0.5));
  // Not retryable at all.
  EXPECT_FALSE(internal::RetryWait(p, absl::InvalidArgumentError("x"), 1, absl::ZeroDuration(), absl::InfiniteFuture(),
                                   now, 0.5));
  // The server's retry-after wins when longer.
  p.retry_resource_exhausted = true;
  EXPECT_EQ(internal::RetryWait(p, absl::ResourceExhaustedError("x"), 1, absl::Seconds(1), absl::InfiniteFuture(), now,
                                0.5),
            absl::Seconds(1));
}

// Serialized google.rpc.Status{code, message, details: [Any{RetryInfo{retry_delay}}]}, as gRPC
// servers (the gateway among them) send it in grpc-status-details-bin.
std::string StatusWithRetryInfo(int64_t seconds, int32_t nanos, const std::string& type_url) {
  using google::protobuf::io::CodedOutputStream;
  using google::protobuf::io::StringOutputStream;
  auto encode = [](auto&& fn) {
    std::string out;
    {
      StringOutputStream s(&out);
      CodedOutputStream c(&s);
      fn(c);
    }
    return out;
  };
  auto bytes_field = [](CodedOutputStream& c, int field, const std::string& b) {
    c.WriteTag(static_cast<uint32_t>(field << 3 | 2));
    c.WriteVarint32(static_cast<uint32_t>(b.size()));
    c.WriteString(b);
  };
  const std::string duration = encode([&](CodedOutputStream& c) {
    c.WriteTag(1 << 3);
    c.WriteVarint64(static_cast<uint64_t>(seconds));
    c.WriteTag(2 << 3);
    c.WriteVarint32(static_cast<uint32_t>(nanos));
  });
  const std::string retry_info = encode([&](CodedOutputStream& c) { bytes_field(c, 1, duration); });
  const std::string any = encode([&](CodedOutputStream& c) {
    bytes_field(c, 1, type_url);
    bytes_field(c, 2, retry_info);
  });
  return encode([&](CodedOutputStream& c) {
    c.WriteTag(1 << 3);
    c.WriteVarint32(8);
    bytes_field(c, 2, "overloaded");
    bytes_field(c, 3, any);
  });
}

TEST(Retry, ReadsTheServersRetryInfo) {
  EXPECT_EQ(internal::RetryDelayFromStatusDetails(
                StatusWithRetryInfo(1, 500000000, "type.googleapis.com/google.rpc.RetryInfo")),
            absl::Milliseconds(1500));
  EXPECT_EQ(internal::RetryDelayFromStatusDetails(StatusWithRetryInfo(1, 0, "type.googleapis.com/other.Thing")),
            absl::ZeroDuration());
  EXPECT_EQ(internal::RetryDelayFromStatusDetails("garbage\xff\xff"), absl::ZeroDuration());
  EXPECT_EQ(internal::RetryDelayFromStatusDetails(""), absl::ZeroDuration());
  const grpc::Status st(grpc::StatusCode::RESOURCE_EXHAUSTED, "overloaded",
                        StatusWithRetryInfo(0, 250000000, "type.googleapis.com/google.rpc.RetryInfo"));
  EXPECT_EQ(internal::ServerRetryDelay(st), absl::Milliseconds(250));
}

TEST(Deadline, CallOverridesClientAndAbsoluteWinsWhenEarlier) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  ClientOptions c;
  CallOptions call;
  EXPECT_EQ(internal::CallDeadline(c, call, now), absl::InfiniteFuture());
  c.timeout = absl::Seconds(10);
  EXPECT_EQ(internal::CallDeadline(c, call, now), now + absl::Seconds(10));
  call.timeout = absl::Seconds(3);
  EXPECT_EQ(internal::CallDeadline(c, call, now), now + absl::Seconds(3));
  call.deadline = now + absl::Seconds(1);
  EXPECT_EQ(internal::CallDeadline(c, call, now), now + absl::Seconds(1));
}

TEST(Completion, AccumulatesChunks) {
  Completion c;
  flotilla::v1::GenerateResponse a;
  a.set_request_id("r1");
  a.set_model("m");
  a.set_text("Hel");
  a.add_token_ids(1);
  a.set_time_to_first_token_s(0.25);
  flotilla::v1::GenerateResponse b;
  b.set_text("lo");
  b.add_token_ids(2);
  b.add_token_ids(3);
  b.set_finish_reason(flotilla::v1::FINISH_REASON_LENGTH);
  b.mutable_usage()->set_prompt_tokens(4);
  b.mutable_usage()->set_completion_tokens(3);
  Accumulate(a, &c);
  Accumulate(b, &c);
  EXPECT_EQ(c.request_id, "r1");
  EXPECT_EQ(c.model, "m");
  EXPECT_EQ(c.text, "Hello");
  EXPECT_EQ(c.token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(c.finish_reason, flotilla::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(c.usage.completion_tokens(), 3u);
  EXPECT_DOUBLE_EQ(c.time_to_first_token_s, 0.25);
  EXPECT_EQ(c.chunks, 2);
  EXPECT_STREQ(FinishReasonName(c.finish_reason), "length");
}

TEST(Client, RejectsBadOptions) {
  ClientOptions o;
  EXPECT_FALSE(Client::Create(o).ok());  // no target
  o.target = "127.0.0.1:1";
  o.retry.max_attempts = 0;
  EXPECT_FALSE(Client::Create(o).ok());
  o.retry.max_attempts = 1;
  o.tls.root_certs_pem = "x";  // certificates without TLS
  EXPECT_FALSE(Client::Create(o).ok());
  o.tls.enabled = true;
  EXPECT_TRUE(Client::Create(o).ok());
}

}  // namespace
}  // namespace flotilla::sdk
