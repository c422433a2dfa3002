#include "gateway/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

std::string StatusLine(int status) {
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  return absl::StrCat("HTTP/1.1 ", status, " ", absl::string_view(reason.data(), reason.size()), "\r\n");
}

struct ServerState {
  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> responses{0};  // see HttpServer::open_responses
};

// The strand-side operations a responder needs; implemented by Session<Stream>.
class SessionIface : public std::enable_shared_from_this<SessionIface> {
 public:
  virtual ~SessionIface() = default;
  virtual void Post(std::function<void()> fn) = 0;
  // Everything below runs on the strand.
  virtual void QueueWrite(std::string bytes, std::function<void(bool)> done, bool ends_response) = 0;
  virtual void SetDisconnectCallback(std::function<void()> cb) = 0;
  virtual bool keep_alive() const = 0;
};

class Responder final : public HttpResponder {
 public:
  explicit Responder(std::shared_ptr<SessionIface> s) : session_(std::move(s)) {}

  void Send(int status, std::string content_type, std::string body, HttpHeaders headers) override {
    auto s = session_;
    session_->Post([this_ = Self(), s, status, ct = std::move(content_type), body = std::move(body),
                    headers = std::move(headers)]() mutable {
      if (this_->state_ != State::kNew) return;
      this_->state_ = State::kDone;
      std::string out = StatusLine(status);
      absl::StrAppend(&out, "Content-Type: ", ct, "\r\nContent-Length: ", body.size(), "\r\n");
      for (const auto& [k, v] : headers) absl::StrAppend(&out, k, ": ", v, "\r\n");
      absl::StrAppend(&out, s->keep_alive() ? "Connection: keep-alive\r\n" : "Connection: close\r\n", "\r\n");
      out += body;
      s->QueueWrite(std::move(out), nullptr, true);
    });
  }

  void StartStream(int status, std::string content_type, HttpHeaders headers) override {
    auto s = session_;
    session_->Post([this_ = Self(), s, status, ct = std::move(content_type), headers = std::move(headers)]() {
      if (this_->state_ != State::kNew) return;
      this_->state_ = State::kStreaming;
      std::string out = StatusLine(status);
      absl::StrAppend(&out, "Content-Type: ", ct, "\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
      for (const auto& [k, v] : headers) absl::StrAppend(&out, k, ": ", v, "\r\n");
      absl::StrAppend(&out, s->keep_alive() ? "Connection: keep-alive\r\n" : "Connection: close\r\n", "\r\n");
      s->QueueWrite(std::move(out), nullptr, false);
    });
  }

  void Write(std::string data, std::function<void(bool)> done) override {
    auto s = session_;
    session_->Post([this_ = Self(), s, data = std::move(data), done = std::move(done)]() mutable {
      if (this_->state_ != State::kStreaming) {
        if (done) done(false);
        return;
      }
      if (data.empty()) {  // an empty chunk would end the stream
        if (done) done(true);
        return;
      }
      std::string out = absl::StrFormat("%x\r\n", data.size());
      out += data;
      out += "\r\n";
      s->QueueWrite(std::move(out), std::move(done), false);
    });
  }

  void End() override {
    auto s = session_;
    session_->Post([this_ = Self(), s]() {
      if (this_->state_ != State::kStreaming) return;
      this_->state_ = State::kDone;
      s->QueueWrite("0\r\n\r\n", nullptr, true);
    });
  }

  void OnDisconnect(std::function<void()> cb) override {
    auto s = session_;
    session_->Post([s, cb = std::move(cb)]() mutable { s->SetDisconnectCallback(std::move(cb)); });
  }

  void set_self(std::weak_ptr<Responder> self) { self_ = std::move(self); }

 private:
  enum class State { kNew, kStreaming, kDone };  // touched on the strand only
  std::shared_ptr<Responder> Self() { return self_.lock(); }

  std::shared_ptr<SessionIface> session_;
  std::weak_ptr<Responder> self_;
  State state_ = State::kNew;
};

template <class Stream>
class Session final : public SessionIface {
 public:
  Session(Stream stream, ServerState* state) : stream_(std::move(stream)), state_(state) {
    state_->connections.fetch_add(1);
  }
  ~Session() override {
    ResponseDone();
    state_->connections.fetch_sub(1);
  }

  void Run() {
    auto self = Shared();
    net::dispatch(stream_.get_executor(), [self] {
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        self->DoRead();
      } else {
        beast::get_lowest_layer(self->stream_).expires_after(std::chrono::milliseconds(self->state_->options.header_timeout_ms));
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->Close();
          self->DoRead();
        });
      }
    });
  }

  void Post(std::function<void()> fn) override { net::post(stream_.get_executor(), std::move(fn)); }

  bool keep_alive() const override { return keep_alive_; }

  void SetDisconnectCallback(std::function<void()> cb) override {
    if (closed_ && in_request_) {
      cb();
      return;
    }
    on_disconnect_ = std::move(cb);
  }

  void QueueWrite(std::string bytes, std::function<void(bool)> done, bool ends_response) override {
    if (closed_) {
      if (done) done(false);
      return;
    }
    writes_.push_back({std::move(bytes), std::move(done), ends_response});
    if (!write_pending_) DoWrite();
  }

 private:
  struct WriteItem {
    std::string bytes;
    std::function<void(bool)> done;
    bool ends_response;
  };

  std::shared_ptr<Session> Shared() { return std::static_pointer_cast<Session>(shared_from_this()); }
  auto& Lowest() { return beast::get_lowest_layer(stream_); }

  void DoRead() {
    if (closed_) return;
    parser_.emplace();
    parser_->body_limit(state_->options.max_body_bytes);
    parser_->header_limit(64 * 1024);
    // A kept-alive connection may idle longer than a request may take to arrive.
    Lowest().expires_after(std::chrono::milliseconds(served_ > 0 && buffer_.size() == 0 ? state_->options.idle_timeout_ms
                                                                                       : state_->options.header_timeout_ms));
    reading_request_ = true;
    http::async_read(stream_, buffer_, *parser_, [self = Shared()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    reading_request_ = false;
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      in_request_ = true;
      ResponseOpen();
      std::string body = R"({"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":null}})";
      QueueWrite(absl::StrCat(StatusLine(413), "Content-Type: application/json\r\nContent-Length: ", body.size(),
                              "\r\nConnection: close\r\n\r\n", body),
                 nullptr, true);
      return;
    }
    if (ec) return Close();
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    size_t q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    req.body = std::move(msg.body());
    for (const auto& f : msg) {
      req.headers.emplace_back(absl::AsciiStrToLower(absl::string_view(f.name_string().data(), f.name_string().size())),
                               std::string(f.value()));
    }
    beast::error_code ignored;
    auto ep = Lowest().socket().remote_endpoint(ignored);
    if (!ignored) req.remote = ep.address().to_string();
    in_request_ = true;
    ResponseOpen();
    on_disconnect_ = nullptr;
    // Requests can take long (generation): no read timeout while it is answered; writes set their own.
    Lowest().expires_never();
    StartWatch();
    auto responder = std::make_shared<Responder>(shared_from_this());
    responder->set_self(responder);
    state_->handler(req, std::move(responder));
  }

  // Keeps a read pending while the response is produced, to notice a client that goes away.
  // Bytes that arrive (a pipelined next request) stay in buffer_ for the next parse.
  void StartWatch() {
    if (watch_pending_ || closed_ || buffer_.size() > 64 * 1024) return;
    watch_pending_ = true;
    Lowest().socket().async_wait(tcp::socket::wait_read, [self = Shared()](beast::error_code ec) { self->OnWatch(ec); });
  }

  void OnWatch(beast::error_code ec) {
    watch_pending_ = false;
    if (closed_) return;
    if (ec) {
      if (ec != net::error::operation_aborted) Close();
      return;
    }
    // Readable: data, or EOF. Peek to tell them apart without consuming (TLS records included).
    // The socket must be non-blocking for this: readiness can be stale, and a blocking peek would
    // then hold an I/O thread until the client sends something.
    char c;
    beast::error_code pec;
    if (!Lowest().socket().non_blocking()) Lowest().socket().non_blocking(true, pec);
    size_t n = pec ? 0 : Lowest().socket().receive(net::buffer(&c, 1), tcp::socket::message_peek, pec);
    if (pec == net::error::would_block || pec == net::error::try_again) {
      StartWatch();
      return;
    }
    if (pec || n == 0) {
      Close();  // EOF or reset: the client is gone
      return;
    }
    // A pipelined request (or TLS data) is waiting: the next DoRead will take it.
    if (!in_request_ && !reading_request_ && !write_pending_) DoRead();
  }

  void DoWrite() {
    if (writes_.empty() || closed_) return;
    write_pending_ = true;
    Lowest().expires_after(std::chrono::milliseconds(state_->options.write_timeout_ms));
    net::async_write(stream_, net::buffer(writes_.front().bytes),
                     [self = Shared()](beast::error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(beast::error_code ec) {
    write_pending_ = false;
    WriteItem item = std::move(writes_.front());
    writes_.pop_front();
    if (ec || closed_) {
      if (item.done) item.done(false);
      Close();
      return;
    }
    if (item.done) item.done(true);
    if (item.ends_response) {
      ResponseComplete();
      return;
    }
    if (!writes_.empty()) {
      DoWrite();
    } else {
      Lowest().expires_never();
    }
  }

  // A request's response counts as open from the handler's call until its last byte is written
  // or the connection closes.
  void ResponseOpen() {
    if (!response_open_) state_->responses.fetch_add(1);
    response_open_ = true;
  }
  void ResponseDone() {
    if (response_open_) state_->responses.fetch_sub(1);
    response_open_ = false;
  }

  void ResponseComplete() {
    ResponseDone();
    in_request_ = false;
    ++served_;
    on_disconnect_ = nullptr;
    if (!keep_alive_) {
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      Close();
      return;
    }
    // The watch may still be pending (nothing sent yet): cancel it and parse the next request.
    if (watch_pending_) {
      beast::error_code ignored;
      Lowest().socket().cancel(ignored);
    }
    DoRead();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    ResponseDone();
    // The item being written stays until its handler runs (it owns the buffer being sent).
    auto first = writes_.begin() + (write_pending_ && !writes_.empty() ? 1 : 0);
    std::vector<std::function<void(bool)>> dones;
    for (auto it = first; it != writes_.end(); ++it) {
      if (it->done) dones.push_back(std::move(it->done));
    }
    writes_.erase(first, writes_.end());
    for (auto& d : dones) d(false);
    if (in_request_ && on_disconnect_) {
      auto cb = std::move(on_disconnect_);
      on_disconnect_ = nullptr;
      cb();
    }
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().socket().close(ignored);
  }

  Stream stream_;
  ServerState* state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<WriteItem> writes_;
  std::function<void()> on_disconnect_;
  bool keep_alive_ = true;
  bool in_request_ = false;
  bool reading_request_ = false;
  bool watch_pending_ = false;
  bool write_pending_ = false;
  bool closed_ = false;
  bool response_open_ = false;
  int64_t served_ = 0;
};

class BeastServer final : public HttpServer {
 public:
  // The acceptor lives on a strand: its completion handler (which re-arms the accept) and
  // StopAccepting's close run on any of the I/O threads, and an acceptor must not be used from two
  // threads at once.
  BeastServer(HttpServerOptions options, HttpHandler handler) : acceptor_(net::make_strand(ioc_)) {
    state_.options = std::move(options);
    state_.handler = std::move(handler);
  }
  ~BeastServer() override { Stop(); }

  absl::Status Init() {
    const auto& o = state_.options;
    if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
      if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
        return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
      }
      ssl_ctx_.emplace(ssl::context::tls_server);
      ssl_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                            ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      beast::error_code ec;
      ssl_ctx_->use_certificate_chain_file(o.tls_cert_file, ec);
      if (ec) return absl::InvalidArgumentError(absl::StrCat("TLS certificate ", o.tls_cert_file, ": ", ec.message()));
      ssl_ctx_->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
      if (ec) return absl::InvalidArgumentError(absl::StrCat("TLS key ", o.tls_key_file, ": ", ec.message()));
    }
    beast::error_code ec;
    auto addr = net::ip::make_address(o.host, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("bad HTTP host '", o.host, "': ", ec.message()));
    tcp::endpoint ep(addr, static_cast<unsigned short>(o.port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("HTTP listen on ", o.host, ":", o.port, ": ", ec.message()));
    port_ = acceptor_.local_endpoint().port();
    DoAccept();
    for (int i = 0; i < std::max(1, o.threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  bool tls() const override { return ssl_ctx_.has_value(); }
  int64_t open_connections() const override { return state_.connections.load(); }
  int64_t open_responses() const override { return state_.responses.load(); }

  void StopAccepting() override {
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
  }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec != net::error::operation_aborted && acceptor_.is_open()) DoAccept();
        return;
      }
      // Error-code overloads only: a connection already gone must not throw out of an I/O
      // thread (a throwing set_option terminated the gateway once during a SIGTERM drain).
      const bool over = static_cast<size_t>(state_.connections.load()) >= state_.options.max_connections;
      beast::error_code opt_ec;
      if (!over) socket.set_option(tcp::no_delay(true), opt_ec);
      if (over || opt_ec) {
        beast::error_code ignored;
        socket.close(ignored);  // over the limit (refuse rather than grow without bound), or dead
      } else {
        if (ssl_ctx_) {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
              beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *ssl_ctx_), &state_)
              ->Run();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), &state_)->Run();
        }
      }
      DoAccept();
    });
  }

  ServerState state_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::optional<ssl::context> ssl_ctx_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  int port_ = 0;
};

}  // namespace

std::string HttpRequest::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options, HttpHandler handler) {
  auto server = std::make_unique<BeastServer>(std::move(options), std::move(handler));
  if (absl::Status st = server->Init(); !st.ok()) return st;
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace flotilla::gateway
