// A small asynchronous HTTP/1.1 server on Boost.Beast/Asio: a fixed pool of I/O threads serves
// every connection, so hundreds of open Server-Sent-Event streams cost memory, not threads.
// Keep-alive and pipelined requests are supported; responses are either complete (Send) or
// streamed with chunked transfer encoding (StartStream/Write/End). While a request is being
// answered the server keeps reading the socket, so a client that disconnects is noticed at once
// and reported through OnDisconnect (the gateway then cancels the worker call). Optional TLS.
//
// Thread-safety: HttpResponder methods may be called from any thread; they are queued onto the
// connection's strand. The handler runs on an I/O thread and must not block.
// Lifetime: stop the server only after every responder has been released.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::gateway {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  int threads = 2;
  std::string tls_cert_file;  // both set: HTTPS only
  std::string tls_key_file;
  size_t max_body_bytes = 8 << 20;
  size_t max_connections = 20000;
  int64_t header_timeout_ms = 30000;  // to receive a request's headers and body
  int64_t idle_timeout_ms = 120000;   // keep-alive connection with nothing to do
  int64_t write_timeout_ms = 60000;   // a client that stops reading is dropped after this
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path?query
  std::string path;
  std::string query;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string remote;

  // The first value of a header (name in lower case), or "".
  std::string Header(absl::string_view name) const;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  // A complete response.
  virtual void Send(int status, std::string content_type, std::string body, HttpHeaders headers = {}) = 0;
  // Starts a chunked response; follow with Write... and End.
  virtual void StartStream(int status, std::string content_type, HttpHeaders headers = {}) = 0;
  // Queues one chunk; `done(ok)` runs once it was written (ok) or can never be (client gone).
  virtual void Write(std::string data, std::function<void(bool ok)> done) = 0;
  virtual void End() = 0;
  // `cb` runs once if the client goes away before the response ended (at once if it already has).
  virtual void OnDisconnect(std::function<void()> cb) = 0;
};

using HttpHandler = std::function<void(const HttpRequest& request, std::shared_ptr<HttpResponder> responder)>;

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, HttpHandler handler);
  virtual ~HttpServer() = default;

  virtual int port() const = 0;
  virtual bool tls() const = 0;
  // Stops accepting new connections (existing ones go on).
  virtual void StopAccepting() = 0;
  // Stops the I/O threads. Open connections are dropped.
  virtual void Stop() = 0;
  virtual int64_t open_connections() const = 0;
  // Requests handed to the handler whose response is not yet written out (nor its connection
  // gone): a drain waits for these before Stop, which drops whatever is still queued.
  virtual int64_t open_responses() const = 0;
};

}  // namespace flotilla::gateway
