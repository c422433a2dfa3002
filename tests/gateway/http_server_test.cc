// The HTTP server's count of open responses, which a drain waits on before stopping the server:
// a request counts from the handler's call until its response is written out or its client goes.
#include "gateway/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace flotilla::gateway {
namespace {

using namespace std::chrono_literals;

template <class F>
bool WaitFor(F&& f, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return f();
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until `want` has arrived (or the peer closes, or a second passes).
std::string ReadUntil(int fd, const std::string& want) {
  std::string got;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  while (got.find(want) == std::string::npos) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Holds the responder of the request in flight, as the gateway's dispatcher does.
struct Pending {
  std::mutex mu;
  std::shared_ptr<HttpResponder> responder;
  std::shared_ptr<HttpResponder> Take() {
    std::lock_guard<std::mutex> lock(mu);
    return std::move(responder);
  }
};

TEST(HttpServer, OpenResponsesCountUntilTheResponseIsWrittenOrTheClientGoes) {
  auto pending = std::make_shared<Pending>();
  auto server = HttpServer::Start(HttpServerOptions{}, [pending](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
    std::lock_guard<std::mutex> lock(pending->mu);
    pending->responder = std::move(r);
  });
  ASSERT_TRUE(server.ok()) << server.status();
  HttpServer& s = **server;
  EXPECT_EQ(s.open_responses(), 0);

  // A complete response: open while the handler holds it, closed once written.
  int fd = Connect(s.port());
  ASSERT_GE(fd, 0);
  const std::string get = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  ASSERT_TRUE(WaitFor([&] { return s.open_responses() == 1; }));
  std::shared_ptr<HttpResponder> r;
  ASSERT_TRUE(WaitFor([&] { return (r = pending->Take()) != nullptr; }));
  r->Send(200, "text/plain", "hello");
  r.reset();
  EXPECT_NE(ReadUntil(fd, "hello").find("hello"), std::string::npos);
  EXPECT_TRUE(WaitFor([&] { return s.open_responses() == 0; }));

  // The next request on the same kept-alive connection, streamed: open until its end is written.
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  ASSERT_TRUE(WaitFor([&] { return (r = pending->Take()) != nullptr; }));
  EXPECT_EQ(s.open_responses(), 1);
  r->StartStream(200, "text/event-stream");
  r->Write("data: 1\n\n", nullptr);
  EXPECT_NE(ReadUntil(fd, "data: 1").find("data: 1"), std::string::npos);
  EXPECT_EQ(s.open_responses(), 1) << "a stream under way is still open";
  r->End();
  r.reset();
  EXPECT_NE(ReadUntil(fd, "0\r\n\r\n").find("0\r\n\r\n"), std::string::npos);
  EXPECT_TRUE(WaitFor([&] { return s.open_responses() == 0; }));
  close(fd);

  // A client that goes away before its answer: no longer open, although the handler still
  // holds the responder (its Send then goes nowhere).
  fd = Connect(s.port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  ASSERT_TRUE(WaitFor([&] { return (r = pending->Take()) != nullptr; }));
  EXPECT_EQ(s.open_responses(), 1);
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return s.open_responses() == 0; }));
  r->Send(200, "text/plain", "late");
  r.reset();
  s.Stop();
  EXPECT_EQ(s.open_responses(), 0);
}

}  // namespace
}  // namespace flotilla::gateway
