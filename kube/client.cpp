#include "kube/client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <variant>

#include "kube/curl_api.h"

namespace ambient::kube {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = ApiError::Kind;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr unsigned int kCurlWithBlobs = 0x074D00;  // 7.77.0 added CURLOPT_CAINFO_BLOB
constexpr size_t kMaxErrorBody = 64 * 1024;        // of a non-2xx answer, for its message
constexpr milliseconds kMaxBackoff{2000};

std::string_view reason_phrase(long status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status >= 500 ? "Server Error" : "HTTP Error";
  }
}

Kind kind_for_status(long status) {
  switch (status) {
    case 401:
      return Kind::kUnauthorized;
    case 403:
      return Kind::kForbidden;
    case 404:
      return Kind::kNotFound;
    case 409:
      return Kind::kConflict;
    case 410:
      return Kind::kGone;
    default:
      return status >= 500 && status <= 599 ? Kind::kServerError : Kind::kHttpError;
  }
}

// A short single-line excerpt of a body for an error message (a CNI error `msg` is one line).
std::string snippet(std::string_view text, size_t max = 160) {
  std::string out;
  for (char c : text.substr(0, max)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c);
  }
  if (text.size() > max) out += "...";
  return out;
}

// The detail of a non-2xx answer: the message of a Kubernetes Status object when there is one.
std::string answer_detail(long status, std::string_view body) {
  std::string detail = std::to_string(status) + " " + std::string(reason_phrase(status));
  auto json = nlohmann::json::parse(body, nullptr, false);
  std::string message;
  if (json.is_object() && json.value("kind", "") == "Status" && json.contains("message") &&
      json["message"].is_string()) {
    message = json["message"].get<std::string>();
  } else if (!body.empty()) {
    message = snippet(body);
  }
  std::string lower_message = message;
  std::string lower_reason(reason_phrase(status));
  for (auto* s : {&lower_message, &lower_reason}) {
    std::transform(s->begin(), s->end(), s->begin(),
                   [](unsigned char c) { return std::tolower(c); });
  }
  if (!message.empty() && lower_message != lower_reason) detail += ": " + snippet(message, 300);
  return detail;
}

// scheme://host[:port][/prefix], enough to redirect the connection for tls-server-name.
struct ServerUrl {
  std::string scheme;
  std::string host;  // IPv6 literals keep their brackets
  std::string port;
  std::string prefix;
};

std::optional<ServerUrl> split_server(const std::string& server) {
  ServerUrl url;
  const size_t scheme_end = server.find("://");
  if (scheme_end == std::string::npos) return std::nullopt;
  url.scheme = server.substr(0, scheme_end);
  std::string rest = server.substr(scheme_end + 3);
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    url.prefix = rest.substr(slash);
    rest.resize(slash);
  }
  size_t port_colon = std::string::npos;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return std::nullopt;
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return std::nullopt;
      port_colon = close + 1;
    }
  } else {
    port_colon = rest.rfind(':');
  }
  if (port_colon != std::string::npos) {
    url.host = rest.substr(0, port_colon);
    url.port = rest.substr(port_colon + 1);
  } else {
    url.host = rest;
    url.port = url.scheme == "https" ? "443" : "80";
  }
  if (url.host.empty() || url.port.empty()) return std::nullopt;
  return url;
}

// A PEM written to a private file, for a libcurl without the *_BLOB options.
class TempPemFile {
 public:
  TempPemFile() = default;
  TempPemFile(const TempPemFile&) = delete;
  TempPemFile& operator=(const TempPemFile&) = delete;
  ~TempPemFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // Empty string on success, else the reason.
  std::string write(const std::string& pem) {
    if (!path_.empty()) return {};
    const char* dir = std::getenv("TMPDIR");
    std::string templ =
        std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/ambient-kube-XXXXXX";
    const int fd = ::mkstemp(templ.data());  // created 0600: keys stay private
    if (fd < 0) return "mkstemp " + templ + ": " + std::strerror(errno);
    size_t written = 0;
    while (written < pem.size()) {
      const ssize_t n = ::write(fd, pem.data() + written, pem.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        ::unlink(templ.c_str());
        return "write " + templ + ": " + why;
      }
      written += static_cast<size_t>(n);
    }
    ::close(fd);
    path_ = templ;
    return {};
  }

 private:
  std::string path_;
};

struct SlistDeleter {
  const detail::CurlApi* api;
  void operator()(curl_slist* list) const {
    if (list != nullptr) api->slist_free_all(list);
  }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// An answer's body, up to a cap: past it the transfer is aborted (returning less than given
// makes libcurl fail the transfer with CURLE_WRITE_ERROR).
struct BodySink {
  std::string* body;
  std::size_t max;
  bool too_big = false;
};

size_t append_body(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  const size_t n = size * count;
  if (sink->body->size() + n > sink->max) {
    sink->too_big = true;
    return 0;
  }
  sink->body->append(data, n);
  return n;
}

// State shared with the watch write callback. Exceptions cannot cross libcurl (C) frames, so
// the callback records them and aborts the transfer; watch() rethrows after perform returns.
struct WatchState {
  const detail::CurlApi* api = nullptr;
  CURL* easy = nullptr;
  const std::function<bool(const nlohmann::json&)>* on_event = nullptr;
  std::string describe;
  long status = 0;
  std::string buffer;  // an incomplete line, or the body of a non-2xx answer
  std::size_t max_line = 0;
  bool stopped = false;  // on_event returned false
  std::exception_ptr error;

  // Delivers every complete line in buffer; false to abort the transfer.
  bool deliver(bool flush_partial) {
    size_t start = 0;
    while (true) {
      size_t end = buffer.find('\n', start);
      if (end == std::string::npos) {
        if (!flush_partial || start >= buffer.size()) break;
        end = buffer.size();
      }
      std::string_view line(buffer.data() + start, end - start);
      start = end + (end < buffer.size() ? 1 : 0);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
      if (line.empty()) continue;
      auto event = nlohmann::json::parse(line, nullptr, false);
      if (event.is_discarded() || !event.is_object() || !event.contains("type") ||
          !event["type"].is_string() || !event.contains("object")) {
        error = std::make_exception_ptr(ApiError(
            Kind::kBadResponse, status, describe + ": not a watch event: " + snippet(line)));
        return false;
      }
      try {
        if (!(*on_event)(event)) {
          stopped = true;
          return false;
        }
      } catch (...) {
        error = std::current_exception();
        return false;
      }
    }
    buffer.erase(0, start);
    return true;
  }
};

int on_watch_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel->load() ? 1 : 0;  // non-zero aborts the transfer
}

size_t on_watch_data(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<WatchState*>(user);
  const size_t n = size * count;
  if (state->status == 0)
    state->api->easy_getinfo(state->easy, CURLINFO_RESPONSE_CODE, &state->status);
  if (state->status < 200 || state->status > 299) {
    // An error answer: keep (a bounded amount of) the body for the message.
    if (state->buffer.size() < kMaxErrorBody) state->buffer.append(data, n);
    return n;
  }
  state->buffer.append(data, n);
  if (!state->deliver(false)) return 0;  // 0 aborts the transfer (CURLE_WRITE_ERROR)
  if (state->buffer.size() > state->max_line) {
    state->error = std::make_exception_ptr(
        ApiError(Kind::kBadResponse, state->status,
                 state->describe + ": a watch event longer than " +
                     std::to_string(state->max_line) + " bytes (no newline)"));
    return 0;
  }
  return n;
}

}  // namespace

struct Client::Impl {
  Kubeconfig config;
  ClientOptions options;
  const detail::CurlApi* api = nullptr;
  CURL* easy = nullptr;
  char error_buffer[CURL_ERROR_SIZE] = {};
  std::optional<ServerUrl> server_url;
  std::string connect_to;  // "sni:port:host:port" when tls-server-name differs from the host
  TempPemFile ca_file, cert_file, key_file;
  std::minstd_rand jitter{static_cast<unsigned>(Clock::now().time_since_epoch().count()) ^
                          static_cast<unsigned>(::getpid())};

  Impl(Kubeconfig c, ClientOptions o) : config(std::move(c)), options(std::move(o)) {
    if (options.max_attempts < 1) options.max_attempts = 1;
    server_url = split_server(config.server);
    if (server_url && !config.tls_server_name.empty()) {
      // libcurl has no "SNI override": address the URL to tls-server-name (SNI and certificate
      // check use it) and send the connection to the real host.
      connect_to = config.tls_server_name + ":" + server_url->port + ":" + server_url->host + ":" +
                   server_url->port;
    }
  }

  ~Impl() {
    if (easy != nullptr) api->easy_cleanup(easy);
  }

  static std::string describe(std::string_view method, std::string_view path) {
    return std::string(method) + " " + std::string(path);
  }

  void ensure_handle(const std::string& what) {
    if (api == nullptr) {
      try {
        api = &detail::curl_api();
      } catch (const ApiError& e) {
        throw ApiError(e.kind(), 0, what + ": " + e.what());
      }
    }
    if (easy == nullptr) {
      easy = api->easy_init();
      if (easy == nullptr) {
        throw ApiError(Kind::kClientUnavailable, 0, what + ": curl_easy_init failed");
      }
    }
  }

  std::string url_for(std::string_view path) const {
    if (!connect_to.empty()) {
      return server_url->scheme + "://" + config.tls_server_name + ":" + server_url->port +
             server_url->prefix + std::string(path);
    }
    return config.server + std::string(path);
  }

  // The bearer token: tokenFile wins and is read on every request, so a rotated token is used
  // as soon as it is written (client-go does the same).
  std::string bearer_token(const std::string& what) const {
    std::string token = config.token;
    if (!config.token_file.empty()) {
      std::ifstream in(config.token_file, std::ios::binary);
      std::ostringstream text;
      if (in) text << in.rdbuf();
      if (!in || in.bad()) {
        throw ApiError(
            Kind::kUnauthorized, 0,
            what + ": cannot read token file " + config.token_file + ": " + std::strerror(errno));
      }
      token = text.str();
    }
    const auto first = token.find_first_not_of(" \t\r\n");
    const auto last = token.find_last_not_of(" \t\r\n");
    token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
    for (char c : token) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        // Never echo the token itself.
        throw ApiError(Kind::kUnauthorized, 0, what + ": bearer token contains control characters");
      }
    }
    return token;
  }

  template <typename T>
  void set(CURLoption option, T value, const std::string& what, const char* name) {
    const CURLcode rc = api->easy_setopt(easy, option, value);
    if (rc != CURLE_OK) {
      throw ApiError(
          Kind::kClientUnavailable, 0,
          what + ": " + api->library + " rejected " + name + ": " + api->easy_strerror(rc));
    }
  }

  bool use_blobs() const {
    return !detail::pem_blobs_disabled_for_testing() && api->version_num >= kCurlWithBlobs;
  }

  // In-memory PEM through a *_BLOB option, or through a private temp file when this libcurl
  // lacks the option.
  void set_pem(CURLoption blob_option, CURLoption file_option, const std::string& pem,
               TempPemFile& fallback, const std::string& what, const char* name) {
    if (use_blobs()) {
      curl_blob blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_NOCOPY};
      if (api->easy_setopt(easy, blob_option, &blob) == CURLE_OK) return;
    }
    if (const std::string why = fallback.write(pem); !why.empty()) {
      throw ApiError(Kind::kClientUnavailable, 0, what + ": cannot stage " + name + ": " + why);
    }
    set(file_option, fallback.path().c_str(), what, name);
  }

  void apply_tls(const std::string& what) {
    if (config.insecure_skip_tls_verify) {
      set(CURLOPT_SSL_VERIFYPEER, 0L, what, "CURLOPT_SSL_VERIFYPEER");
      set(CURLOPT_SSL_VERIFYHOST, 0L, what, "CURLOPT_SSL_VERIFYHOST");
    } else if (!config.ca_pem.empty() || !config.ca_file.empty()) {
      // Trust exactly the cluster CA, as client-go does: no system CA directory on top.
      set(CURLOPT_CAPATH, static_cast<const char*>(nullptr), what, "CURLOPT_CAPATH");
      if (!config.ca_pem.empty()) {
        set_pem(CURLOPT_CAINFO_BLOB, CURLOPT_CAINFO, config.ca_pem, ca_file, what,
                "the certificate authority");
      } else {
        set(CURLOPT_CAINFO, config.ca_file.c_str(), what, "CURLOPT_CAINFO");
      }
    }
    if (!config.client_cert_pem.empty()) {
      set(CURLOPT_SSLCERTTYPE, "PEM", what, "CURLOPT_SSLCERTTYPE");
      set_pem(CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERT, config.client_cert_pem, cert_file, what,
              "the client certificate");
    } else if (!config.client_cert_file.empty()) {
      set(CURLOPT_SSLCERT, config.client_cert_file.c_str(), what, "CURLOPT_SSLCERT");
    }
    if (!config.client_key_pem.empty()) {
      set(CURLOPT_SSLKEYTYPE, "PEM", what, "CURLOPT_SSLKEYTYPE");
      set_pem(CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEY, config.client_key_pem, key_file, what,
              "the client key");
    } else if (!config.client_key_file.empty()) {
      set(CURLOPT_SSLKEY, config.client_key_file.c_str(), what, "CURLOPT_SSLKEY");
    }
  }

  // Resets the handle (its connection cache survives curl_easy_reset) and sets everything one
  // request needs. `lists` keeps the header and connect-to lists alive until perform returns.
  void prepare(std::string_view method, std::string_view path, const std::string* body,
               std::string_view content_type, milliseconds timeout, milliseconds connect_timeout,
               std::vector<Slist>& lists, const std::string& what) {
    if (!server_url) {
      throw ApiError(Kind::kUnreachable, 0,
                     what + ": server \"" + config.server + "\" is not a valid URL");
    }
    api->easy_reset(easy);
    error_buffer[0] = '\0';
    set(CURLOPT_ERRORBUFFER, static_cast<char*>(error_buffer), what, "CURLOPT_ERRORBUFFER");
    // No signals: the timeouts must work from any thread (the agent is multi-threaded).
    set(CURLOPT_NOSIGNAL, 1L, what, "CURLOPT_NOSIGNAL");
    const std::string url = url_for(path);
    set(CURLOPT_URL, url.c_str(), what, "CURLOPT_URL");
    set(CURLOPT_USERAGENT, options.user_agent.c_str(), what, "CURLOPT_USERAGENT");
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(1, timeout.count())), what,
        "CURLOPT_TIMEOUT_MS");
    set(CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(std::max<int64_t>(1, std::min(timeout, connect_timeout).count())), what,
        "CURLOPT_CONNECTTIMEOUT_MS");
    set(CURLOPT_TCP_KEEPALIVE, 1L, what, "CURLOPT_TCP_KEEPALIVE");

    Slist headers(nullptr, SlistDeleter{api});
    auto add_header = [&](const std::string& line) {
      curl_slist* next = api->slist_append(headers.get(), line.c_str());
      if (next == nullptr) throw ApiError(Kind::kClientUnavailable, 0, what + ": out of memory");
      headers.release();
      headers.reset(next);
    };
    add_header("Accept: application/json");
    const std::string token = bearer_token(what);
    if (!token.empty()) add_header("Authorization: Bearer " + token);
    if (body != nullptr) add_header("Content-Type: " + std::string(content_type));
    add_header("Expect:");  // no 100-continue round trip for PATCH bodies
    set(CURLOPT_HTTPHEADER, headers.get(), what, "CURLOPT_HTTPHEADER");
    lists.push_back(std::move(headers));

    if (!connect_to.empty()) {
      Slist redirect(api->slist_append(nullptr, connect_to.c_str()), SlistDeleter{api});
      set(CURLOPT_CONNECT_TO, redirect.get(), what, "CURLOPT_CONNECT_TO");
      lists.push_back(std::move(redirect));
    }
    apply_tls(what);

    if (method == "GET") {
      set(CURLOPT_HTTPGET, 1L, what, "CURLOPT_HTTPGET");
    } else {
      const std::string method_text(method);
      set(CURLOPT_CUSTOMREQUEST, method_text.c_str(), what, "CURLOPT_CUSTOMREQUEST");
      if (body != nullptr) {
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()), what,
            "CURLOPT_POSTFIELDSIZE_LARGE");
        set(CURLOPT_POSTFIELDS, body->c_str(), what, "CURLOPT_POSTFIELDS");
      }
    }
  }

  struct Failure {
    Kind kind;
    long status;
    std::string detail;
    bool retryable;
  };
  struct Answer {
    long status;
    std::string body;
  };

  Failure transport_failure(CURLcode rc) const {
    std::string detail = std::string(api->easy_strerror(rc));
    if (error_buffer[0] != '\0' && detail != error_buffer)
      detail += " (" + std::string(error_buffer) + ")";
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        return {Kind::kTimeout, 0, detail, true};
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_HTTP2:
      case CURLE_HTTP2_STREAM:
        return {Kind::kUnreachable, 0, "cannot reach " + config.server + ": " + detail, true};
      default:
        // Certificate verification, bad client certificate, malformed URL, …: a retry would
        // fail the same way.
        return {Kind::kUnreachable, 0, "cannot reach " + config.server + ": " + detail, false};
    }
  }

  std::variant<Answer, Failure> attempt_request(std::string_view method, std::string_view path,
                                                const std::string* body,
                                                std::string_view content_type,
                                                milliseconds remaining, const std::string& what) {
    std::vector<Slist> lists;
    prepare(method, path, body, content_type, remaining, options.connect_timeout, lists, what);
    Answer answer{0, {}};
    BodySink sink{&answer.body, options.max_body_bytes};
    set(CURLOPT_WRITEFUNCTION, &append_body, what, "CURLOPT_WRITEFUNCTION");
    set(CURLOPT_WRITEDATA, static_cast<void*>(&sink), what, "CURLOPT_WRITEDATA");
    const CURLcode rc = api->easy_perform(easy);
    if (sink.too_big) {
      return Failure{
          Kind::kBadResponse, 0,
          "the answer is larger than " + std::to_string(options.max_body_bytes) + " bytes", false};
    }
    if (rc != CURLE_OK) return transport_failure(rc);
    api->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &answer.status);
    if (answer.status >= 200 && answer.status <= 299) return answer;
    const bool retryable = answer.status >= 500 && answer.status <= 599;
    return Failure{kind_for_status(answer.status), answer.status,
                   answer_detail(answer.status, answer.body), retryable};
  }

  nlohmann::json request(std::string_view method, std::string_view path, const std::string* body,
                         std::string_view content_type) {
    const std::string what = describe(method, path);
    ensure_handle(what);
    const auto start = Clock::now();
    const auto deadline = start + options.deadline;
    auto attempt_note = [&](int attempt) {
      return attempt > 1 ? " (attempt " + std::to_string(attempt) + " of " +
                               std::to_string(options.max_attempts) + ")"
                         : std::string();
    };
    for (int attempt = 1;; ++attempt) {
      const auto remaining = duration_cast<milliseconds>(deadline - Clock::now());
      if (remaining.count() <= 0) {
        throw ApiError(Kind::kTimeout, 0,
                       what + ": no answer within the " + std::to_string(options.deadline.count()) +
                           " ms deadline" + attempt_note(attempt - 1));
      }
      auto outcome = attempt_request(method, path, body, content_type, remaining, what);
      if (auto* answer = std::get_if<Answer>(&outcome)) {
        auto json = nlohmann::json::parse(answer->body, nullptr, false);
        if (json.is_discarded() || !json.is_object()) {
          throw ApiError(Kind::kBadResponse, answer->status,
                         what + ": " + std::to_string(answer->status) +
                             " but the body is not a JSON object: " + snippet(answer->body));
        }
        return json;
      }
      auto& failure = std::get<Failure>(outcome);
      const bool budget_spent = Clock::now() >= deadline;
      if (failure.kind == Kind::kTimeout && budget_spent) {
        throw ApiError(Kind::kTimeout, 0,
                       what + ": no answer within the " + std::to_string(options.deadline.count()) +
                           " ms deadline" + attempt_note(attempt));
      }
      if (!failure.retryable || attempt >= options.max_attempts) {
        throw ApiError(failure.kind, failure.status,
                       what + ": " + failure.detail + attempt_note(attempt));
      }
      // Exponential backoff with ±20% jitter, so plugins started together do not retry in step.
      auto backoff = options.initial_backoff * (1LL << std::min(attempt - 1, 16));
      backoff = std::min<milliseconds>(backoff, kMaxBackoff);
      std::uniform_int_distribution<int64_t> spread(backoff.count() * 8 / 10,
                                                    backoff.count() * 12 / 10);
      const milliseconds pause(spread(jitter));
      if (Clock::now() + pause >= deadline) {
        throw ApiError(failure.kind, failure.status,
                       what + ": " + failure.detail + attempt_note(attempt) +
                           "; no time left to retry within the " +
                           std::to_string(options.deadline.count()) + " ms deadline");
      }
      std::this_thread::sleep_for(pause);
    }
  }

  WatchEnd watch(std::string_view path_with_query,
                 const std::function<bool(const nlohmann::json&)>& on_event, milliseconds timeout,
                 const std::atomic<bool>* cancel) {
    std::string path(path_with_query);
    const size_t query = path.find('?');
    const std::string query_text = query == std::string::npos ? "" : path.substr(query + 1);
    if (("&" + query_text).find("&watch=") == std::string::npos) {
      path += query == std::string::npos ? "?watch=true" : "&watch=true";
    }
    const std::string what = "WATCH " + path;
    ensure_handle(what);
    if (timeout.count() <= 0) timeout = milliseconds(1);
    std::vector<Slist> lists;
    prepare("GET", path, nullptr, {}, timeout, options.connect_timeout, lists, what);
    WatchState state;
    state.api = api;
    state.easy = easy;
    state.on_event = &on_event;
    state.describe = what;
    state.max_line = options.max_event_bytes;
    set(CURLOPT_WRITEFUNCTION, &on_watch_data, what, "CURLOPT_WRITEFUNCTION");
    set(CURLOPT_WRITEDATA, static_cast<void*>(&state), what, "CURLOPT_WRITEDATA");
    if (cancel != nullptr) {
      set(CURLOPT_XFERINFOFUNCTION, &on_watch_progress, what, "CURLOPT_XFERINFOFUNCTION");
      set(CURLOPT_XFERINFODATA, const_cast<void*>(static_cast<const void*>(cancel)), what,
          "CURLOPT_XFERINFODATA");
      set(CURLOPT_NOPROGRESS, 0L, what, "CURLOPT_NOPROGRESS");
    }
    const CURLcode rc = api->easy_perform(easy);
    if (cancel != nullptr) set(CURLOPT_NOPROGRESS, 1L, what, "CURLOPT_NOPROGRESS");
    if (cancel != nullptr && cancel->load() && rc == CURLE_ABORTED_BY_CALLBACK) {
      return WatchEnd::kStopped;
    }
    if (state.error) std::rethrow_exception(state.error);
    if (state.stopped) return WatchEnd::kStopped;
    if (state.status == 0) api->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &state.status);
    const bool ok_status = state.status >= 200 && state.status <= 299;
    if (state.status != 0 && !ok_status && (rc == CURLE_OK || rc == CURLE_OPERATION_TIMEDOUT)) {
      throw ApiError(kind_for_status(state.status), state.status,
                     what + ": " + answer_detail(state.status, state.buffer));
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      if (ok_status) return WatchEnd::kTimeout;  // the stream was open: the caller's timeout
      throw ApiError(Kind::kTimeout, 0,
                     what + ": no answer within " + std::to_string(timeout.count()) + " ms");
    }
    if (rc != CURLE_OK) {
      Failure failure = transport_failure(rc);
      std::string detail = failure.detail;
      if (ok_status) detail = "stream broken: " + detail;
      throw ApiError(failure.kind, state.status, what + ": " + detail);
    }
    // A clean end: an unterminated last line is still an event.
    if (!state.deliver(true)) {
      if (state.error) std::rethrow_exception(state.error);
      return WatchEnd::kStopped;
    }
    return WatchEnd::kStreamEnded;
  }
};

std::string query_escape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

Client::Client(Kubeconfig config, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

nlohmann::json Client::get(std::string_view path) {
  return impl_->request("GET", path, nullptr, {});
}

nlohmann::json Client::patch(std::string_view path, const nlohmann::json& body,
                             std::string_view content_type) {
  const std::string text = body.dump();
  return impl_->request("PATCH", path, &text, content_type);
}

nlohmann::json Client::create(std::string_view path, const nlohmann::json& body) {
  const std::string text = body.dump();
  return impl_->request("POST", path, &text, "application/json");
}

nlohmann::json Client::remove(std::string_view path, const nlohmann::json& options) {
  const std::string text = options.dump();
  return impl_->request("DELETE", path, &text, "application/json");
}

nlohmann::json Client::list(std::string_view path) {
  nlohmann::json result = impl_->request("GET", path, nullptr, {});
  if (!result.contains("items") || !result["items"].is_array()) {
    throw ApiError(Kind::kBadResponse, 200,
                   "GET " + std::string(path) + ": the answer is not a List (no items array)");
  }
  return result;
}

WatchEnd Client::watch(std::string_view path_with_query,
                       const std::function<bool(const nlohmann::json& event)>& on_event,
                       std::chrono::milliseconds timeout, const std::atomic<bool>* cancel) {
  return impl_->watch(path_with_query, on_event, timeout, cancel);
}

}  // namespace ambient::kube
