#include "tests/standins/apiserver/apiserver.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "tests/standins/apiserver/pki.h"
#include "tests/standins/apiserver/selectors.h"
#include "tests/standins/apiserver/table.h"

namespace ambient::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHistory = 10000;  // events kept for watches that resume (like compaction)
constexpr size_t kMaxLog = 10000;      // requests kept for requests(): the demo runs for long
constexpr int kWorkerThreads = 64;     // every open connection (keep-alive, watch) holds one

// ---------------------------------------------------------------------------------------------
// Open TLS connections, tracked through OpenSSL itself: httplib does not expose its accepted
// sockets, but every connection is an SSL object. An ex_data slot marks ours; its free callback
// runs inside SSL_free, before httplib closes the socket, so a registered SSL's fd is always
// still open while the registry lock is held.
class ConnectionRegistry {
 public:
  static int ex_index() {
    static const int index =
        SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &ConnectionRegistry::on_free);
    return index;
  }

  static void on_info(const SSL* ssl, int where, int /*ret*/) {
    auto* registry = static_cast<ConnectionRegistry*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    if (registry == nullptr) return;
    if (where & SSL_CB_HANDSHAKE_START) registry->add(const_cast<SSL*>(ssl));
    if (where & SSL_CB_HANDSHAKE_DONE) registry->handshake_done(ssl);
  }

  int handshakes() const {
    std::lock_guard lock(mu_);
    return handshakes_;
  }
  int open() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(open_.size());
  }

  // shutdown(2), not close: httplib still owns the fd; its next read/write fails and it closes.
  void shutdown_all() {
    std::lock_guard lock(mu_);
    for (const auto& [ssl, done] : open_) ::shutdown(SSL_get_fd(ssl), SHUT_RDWR);
  }

 private:
  static void on_free(void* parent, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
    if (ptr != nullptr) static_cast<ConnectionRegistry*>(ptr)->remove(static_cast<SSL*>(parent));
  }

  void add(SSL* ssl) {
    if (SSL_get_ex_data(ssl, ex_index()) != nullptr) return;  // a later handshake message
    SSL_set_ex_data(ssl, ex_index(), this);
    std::lock_guard lock(mu_);
    open_.emplace(ssl, false);
  }
  void handshake_done(const SSL* ssl) {
    std::lock_guard lock(mu_);
    auto it = open_.find(const_cast<SSL*>(ssl));
    // Counted once per connection: TLS 1.3 may report "done" again after session tickets.
    if (it != open_.end() && !it->second) {
      it->second = true;
      ++handshakes_;
    }
  }
  void remove(SSL* ssl) {
    std::lock_guard lock(mu_);
    open_.erase(ssl);
  }

  mutable std::mutex mu_;
  std::map<SSL*, bool> open_;  // → handshake completed
  int handshakes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Real-shaped metadata and Status objects.

std::string rfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string now_rfc3339() {
  return rfc3339(std::time(nullptr));
}

std::string new_uid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  const uint64_t a = rng(), b = rng();
  char buffer[40];
  // Version 4, variant 10xx.
  std::snprintf(buffer, sizeof(buffer), "%08x-%04x-4%03x-%04x-%012llx",
                static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                static_cast<unsigned>(a & 0x0fff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buffer;
}

std::string reason_for(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 406:
      return "NotAcceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return code >= 500 ? "InternalError" : "Unknown";
  }
}

json status_object(int code, const std::string& reason, const std::string& message,
                   json details = nullptr) {
  json status = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
                 {"status", "Failure"}, {"message", message}, {"reason", reason},
                 {"code", code}};
  if (!details.is_null()) status["details"] = std::move(details);
  return status;
}

// "Namespace"/"namespaces"/"ns" → "Namespace", and the same for pods; "" when unknown.
std::string canonical_kind(std::string_view kind) {
  std::string lower(kind);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (lower == "namespace" || lower == "namespaces" || lower == "ns") return "Namespace";
  if (lower == "pod" || lower == "pods" || lower == "po") return "Pod";
  if (lower == "event" || lower == "events" || lower == "ev") return "Event";
  if (lower == "configmap" || lower == "configmaps" || lower == "cm") return "ConfigMap";
  return "";
}

// Kinds that live in a namespace (the key carries it).
bool namespaced(std::string_view kind) {
  return kind == "Pod" || kind == "Event" || kind == "ConfigMap";
}

std::string resource_of(const std::string& kind) {
  if (kind == "Node") return "nodes";
  if (kind == "Event") return "events";
  if (kind == "ConfigMap") return "configmaps";
  return kind == "Pod" ? "pods" : "namespaces";
}

struct Key {
  std::string kind;
  std::string ns;
  std::string name;
  auto operator<=>(const Key&) const = default;
};

struct Event {
  uint64_t rv;
  std::string type;  // ADDED, MODIFIED, DELETED
  json object;       // with kind/apiVersion, as in a watch event
  json previous;     // the object before a MODIFIED; null otherwise
};

// What a LIST or WATCH selects.
struct Selection {
  std::string kind;
  std::string ns;  // empty = all namespaces
  LabelSelectorQuery labels;
  FieldSelectorQuery fields;
  TableRequest table;  // kubectl's server-side printing

  bool matches(const json& object) const {
    if (object.value("kind", "") != kind) return false;
    if (!ns.empty() && object["metadata"].value("namespace", "") != ns) return false;
    return labels.matches(object) && fields.matches(object);
  }

  // What a watch event carries for this watcher: the object, or a one-row Table of it.
  json event_object(const json& object) const {
    if (!table.wanted) return object;
    return make_table(kind, {&object}, table,
                      {{"resourceVersion", object["metadata"].value("resourceVersion", "")}});
  }
};

struct WatchCursor {
  Selection selection;
  uint64_t position = 0;  // every event up to this resourceVersion has been considered
  std::deque<std::string> pending;
  bool end_after_pending = false;
  std::optional<Clock::time_point> deadline;  // timeoutSeconds
  bool bookmarks = false;
  Clock::time_point next_bookmark;
  uint64_t drop_generation = 0;
  uint64_t bookmark_generation = 0;
  const SSL* ssl = nullptr;
};

bool parse_bool(const std::string& text) {
  // Go's strconv.ParseBool, which the real server uses for query booleans.
  return text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
         text == "True";
}

std::string list_kind(const std::string& kind) {
  return kind + "List";
}

// Strategic merge patch as far as the stand-in supports it: maps merge recursively, `null`
// deletes, `$patch: delete|replace` on a map is honoured, other `$` directives are dropped and
// lists are replaced (no merge keys). nullopt = delete this node.
std::optional<json> apply_strategic(json target, const json& patch) {
  if (!patch.is_object()) return patch;
  if (auto directive = patch.find("$patch"); directive != patch.end()) {
    if (*directive == "delete") return std::nullopt;
    if (*directive == "replace") {
      json replacement = json::object();
      for (auto it = patch.begin(); it != patch.end(); ++it) {
        if (it.key().starts_with("$")) continue;
        if (auto value = apply_strategic(json(), it.value())) replacement[it.key()] = *value;
      }
      return replacement;
    }
  }
  if (!target.is_object()) target = json::object();
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (it.key().starts_with("$")) continue;
    if (it.value().is_null()) {
      target.erase(it.key());
      continue;
    }
    json current = target.contains(it.key()) ? target[it.key()] : json();
    if (auto value = apply_strategic(std::move(current), it.value())) {
      target[it.key()] = std::move(*value);
    } else {
      target.erase(it.key());
    }
  }
  return target;
}

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

void write_file_atomically(const std::filesystem::path& path, const std::string& text,
                           mode_t mode) {
  const std::filesystem::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + temp.string());
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write " + temp.string());
  }
  ::chmod(temp.c_str(), mode);
  std::filesystem::rename(temp, path);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct ApiServerStandin::Impl {
  Options options;
  Pki pki;
  ConnectionRegistry connections;

  mutable std::mutex mu;
  std::condition_variable changed;  // history grew, or stop/drop/bookmark was asked for
  std::map<Key, json> objects;
  TokenAuthority tokens;
  std::map<std::string, std::string> nodes;  // name → uid (add_node)
  Rbac rbac;
  uint64_t rv = 0;
  std::deque<Event> history;
  uint64_t compacted_rv = 0;  // events up to here are gone
  uint64_t drop_generation = 0;
  uint64_t bookmark_generation = 0;
  bool stopping = false;
  int watches = 0;
  std::vector<ApiFault> faults;
  std::vector<ApiRequest> log;

  std::unique_ptr<httplib::SSLServer> server;
  std::thread listener;
  int port = 0;

  explicit Impl(Options o) : options(std::move(o)), pki(extra_sans(options.bind_address)) {
    port = options.port;
  }
  ~Impl() { stop(); }

  static std::vector<std::string> extra_sans(const std::string& bind_address) {
    if (bind_address.empty() || bind_address == "127.0.0.1" || bind_address == "::1" ||
        bind_address == "localhost" || bind_address == "0.0.0.0" || bind_address == "::") {
      return {};
    }
    const bool ip = bind_address.find_first_not_of("0123456789.:abcdefABCDEF") == std::string::npos;
    return {(ip ? "IP:" : "DNS:") + bind_address};
  }

  std::string host_for_url() const {
    const std::string& a = options.bind_address;
    if (a == "0.0.0.0" || a.empty()) return "127.0.0.1";
    if (a == "::") return "[::1]";
    return a.find(':') != std::string::npos ? "[" + a + "]" : a;
  }

  // ---- store ----------------------------------------------------------------------------------

  void record_event(std::string type, const json& object, json previous) {
    history.push_back(Event{rv, std::move(type), object, std::move(previous)});
    while (history.size() > kMaxHistory) {
      compacted_rv = history.front().rv;
      history.pop_front();
    }
    changed.notify_all();
  }

  void put(json object) {
    if (!object.is_object()) throw std::invalid_argument("put: not a JSON object");
    const std::string kind = canonical_kind(object.value("kind", ""));
    if (kind.empty()) {
      throw std::invalid_argument("put: kind must be Namespace, Pod, Event or ConfigMap, not \"" +
                                  object.value("kind", "") + "\"");
    }
    object["kind"] = kind;
    object["apiVersion"] = "v1";
    json& metadata = object["metadata"];
    if (!metadata.is_object() || !metadata.contains("name") || !metadata["name"].is_string() ||
        metadata["name"].get<std::string>().empty()) {
      throw std::invalid_argument("put: metadata.name is required");
    }
    if (kind == "Pod") {
      if (!metadata.contains("namespace")) metadata["namespace"] = "default";
      if (!object.contains("spec")) object["spec"] = json::object();
      // Admission gives every real pod a service account.
      if (!object["spec"].contains("serviceAccountName")) {
        object["spec"]["serviceAccountName"] = "default";
      }
      if (!object.contains("status")) object["status"] = {{"phase", "Pending"}};
    } else if (namespaced(kind)) {
      if (!metadata.contains("namespace")) metadata["namespace"] = "default";
    } else {
      metadata.erase("namespace");
      if (!object.contains("spec")) object["spec"] = {{"finalizers", {"kubernetes"}}};
      if (!object.contains("status")) object["status"] = {{"phase", "Active"}};
    }
    Key key{kind, metadata.value("namespace", ""), metadata["name"].get<std::string>()};
    std::lock_guard lock(mu);
    auto existing = objects.find(key);
    json previous;
    if (existing != objects.end()) {
      previous = existing->second;
      // A replacement of the same object keeps its identity unless told otherwise.
      for (const char* field : {"uid", "creationTimestamp"}) {
        if (!metadata.contains(field)) metadata[field] = previous["metadata"][field];
      }
    }
    if (!metadata.contains("uid")) metadata["uid"] = new_uid();
    if (!metadata.contains("creationTimestamp")) metadata["creationTimestamp"] = now_rfc3339();
    metadata["resourceVersion"] = std::to_string(++rv);
    objects[key] = object;
    const char* type = previous.is_null() ? "ADDED" : "MODIFIED";
    record_event(type, object, std::move(previous));
  }

  bool update(std::string_view kind_text, std::string_view ns, std::string_view name,
              const std::function<void(json&)>& change) {
    const std::string kind = canonical_kind(kind_text);
    Key key{kind, namespaced(kind) ? std::string(ns) : "", std::string(name)};
    std::lock_guard lock(mu);
    auto it = objects.find(key);
    if (it == objects.end()) return false;
    json next = it->second;
    change(next);
    for (const char* field : {"name", "namespace", "uid", "resourceVersion"}) {
      if (it->second["metadata"].contains(field)) {
        next["metadata"][field] = it->second["metadata"][field];
      }
    }
    if (next == it->second) return true;  // a no-op keeps the resourceVersion, as a patch does
    json previous = it->second;
    next["metadata"]["resourceVersion"] = std::to_string(++rv);
    it->second = next;
    record_event("MODIFIED", next, std::move(previous));
    return true;
  }

  void remove(std::string_view kind_text, std::string_view ns, std::string_view name) {
    const std::string kind = canonical_kind(kind_text);
    Key key{kind, namespaced(kind) ? std::string(ns) : "", std::string(name)};
    std::lock_guard lock(mu);
    auto it = objects.find(key);
    if (it == objects.end()) return;
    json last = it->second;
    objects.erase(it);
    last["metadata"]["resourceVersion"] = std::to_string(++rv);
    record_event("DELETED", last, nullptr);
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  static void reply(httplib::Response& res, int code, const json& body) {
    res.status = code;
    res.set_content(body.dump(), "application/json");
  }
  static void reply_status(httplib::Response& res, int code, const std::string& message,
                           json details = nullptr) {
    reply(res, code, status_object(code, reason_for(code), message, std::move(details)));
  }
  static void reply_not_found(httplib::Response& res, const std::string& kind,
                              const std::string& name) {
    const std::string resource = resource_of(kind);
    reply(res, 404,
          status_object(404, "NotFound", resource + " \"" + name + "\" not found",
                        {{"name", name}, {"kind", resource}}));
  }

  static void hard_close(const SSL* ssl) {
    if (ssl != nullptr) ::shutdown(SSL_get_fd(ssl), SHUT_RDWR);
  }

  std::optional<ApiFault> take_fault(const std::string& path, const std::string& query) {
    std::lock_guard lock(mu);
    for (auto& fault : faults) {
      if (fault.times == 0 || !path.starts_with(fault.path_prefix)) continue;
      if (!fault.query_contains.empty() && query.find(fault.query_contains) == std::string::npos) {
        continue;
      }
      if (fault.times > 0) --fault.times;
      return fault;
    }
    return std::nullopt;
  }

  // "" when unauthenticated.
  std::string authenticate(const httplib::Request& req) {
    const std::string header = req.get_header_value("Authorization");
    if (header.starts_with("Bearer ")) {
      const std::string bearer = header.substr(7);
      std::lock_guard lock(mu);
      if (bearer == options.token) return "token";
      if (const auto* sa = tokens.find(bearer); sa != nullptr && token_valid(*sa)) return sa->user;
    }
    if (req.ssl != nullptr && SSL_get_verify_result(req.ssl) == X509_V_OK) {
      X509* peer = SSL_get1_peer_certificate(req.ssl);
      if (peer != nullptr) {
        char cn[256] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
        X509_free(peer);
        if (cn[0] != '\0') return cn;
      }
    }
    return "";
  }

  // An issued token is valid until it expires and, when bound, while the object it is bound to
  // (same uid) exists. Under mu.
  bool token_valid(const ServiceAccountToken& t) const {
    if (std::chrono::system_clock::now() >= t.expires) return false;
    if (t.bound_kind.empty()) return true;
    if (t.bound_kind == "Node") {
      const auto node = nodes.find(t.bound_name);
      return node != nodes.end() && node->second == t.bound_uid;
    }
    const auto it = objects.find(Key{"Pod", t.ns, t.bound_name});
    return it != objects.end() && it->second["metadata"].value("uid", std::string()) == t.bound_uid;
  }

  // RBAC for service-account users; the main token and certificates may do everything.
  bool authorize(const httplib::Request& req, const std::string& user, httplib::Response& res) {
    std::lock_guard lock(mu);
    if (!tokens.is_service_account_user(user)) return true;
    const std::string watch = req.get_param_value("watch");
    const auto attributes =
        request_attributes(req.method, split_path(req.path), watch == "true" || watch == "1");
    if (!attributes || rbac.allows(user, *attributes)) return true;
    json details = {{"kind", attributes->resource}};
    if (!attributes->name.empty()) details["name"] = attributes->name;
    reply(res, 403, status_object(403, "Forbidden", forbidden_message(user, *attributes), details));
    return false;
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    ApiRequest entry;
    entry.method = req.method;
    entry.path = req.path;
    if (const size_t q = req.target.find('?'); q != std::string::npos) {
      entry.query = req.target.substr(q + 1);
    }
    entry.content_type = req.get_header_value("Content-Type");
    entry.body = req.body;
    entry.remote_port = req.remote_port;
    entry.user_agent = req.get_header_value("User-Agent");

    // Faults first: they stand for a broken network or proxy in front of the server.
    if (auto fault = take_fault(req.path, entry.query)) {
      if (fault->delay_ms > 0) {
        std::unique_lock lock(mu);
        changed.wait_for(lock, std::chrono::milliseconds(fault->delay_ms),
                         [&] { return stopping; });
      }
      if (fault->drop || fault->status != 0 || fault->bad_json || fault->body) {
        log_request(std::move(entry), fault->drop ? "dropped" : "fault");
        if (fault->drop) {
          hard_close(req.ssl);
        } else if (fault->status != 0) {
          reply_status(res, fault->status, "injected fault");
        } else if (fault->body) {
          res.status = 200;
          res.set_content(*fault->body, "application/json");
        } else {
          res.status = 200;
          res.set_content("{\"kind\": \"Pod\", this is not JSON", "application/json");
        }
        return;
      }
    }

    entry.user = authenticate(req);
    entry.authorized = !entry.user.empty();
    const bool authorized = entry.authorized;
    const std::string user = entry.user;
    log_request(std::move(entry), "");
    if (!authorized) {
      reply(res, 401, status_object(401, "Unauthorized", "Unauthorized"));
      return;
    }
    if (!authorize(req, user, res)) return;
    try {
      route(req, res);
    } catch (const std::exception& e) {
      reply_status(res, 500, std::string("stand-in failure: ") + e.what());
    }
  }

  void log_request(ApiRequest entry, const char* note) {
    if (options.log_requests) {
      std::cerr << "[apiserver-standin] " << entry.method << " " << entry.path
                << (entry.query.empty() ? "" : "?" + entry.query)
                << " user=" << (entry.user.empty() ? "-" : entry.user)
                << " port=" << entry.remote_port << (*note ? std::string(" ") + note : "")
                << std::endl;
    }
    std::lock_guard lock(mu);
    if (log.size() >= kMaxLog) log.erase(log.begin(), log.begin() + kMaxLog / 10);
    log.push_back(std::move(entry));
  }

  void route(const httplib::Request& req, httplib::Response& res) {
    const auto parts = split_path(req.path);
    const std::string& method = req.method;
    auto only_get = [&]() {
      if (method == "GET") return true;
      reply_status(res, 405, "the server does not allow this method on the requested resource");
      return false;
    };
    if (parts.size() == 1 &&
        (parts[0] == "healthz" || parts[0] == "livez" || parts[0] == "readyz")) {
      if (only_get()) res.set_content("ok", "text/plain");
      return;
    }
    if (parts.size() == 1 && parts[0] == "version") {
      if (only_get()) reply(res, 200, version_document());
      return;
    }
    if (parts.size() == 1 && parts[0] == "apis") {
      if (only_get())
        reply(res, 200,
              {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", json::array()}});
      return;
    }
    if (parts.empty() || parts[0] != "api") return reply_unknown_path(res);
    if (parts.size() == 1) {
      if (only_get()) {
        reply(res, 200,
              {{"kind", "APIVersions"},
               {"versions", {"v1"}},
               {"serverAddressByClientCIDRs",
                {{{"clientCIDR", "0.0.0.0/0"},
                  {"serverAddress", host_for_url() + ":" + std::to_string(port)}}}}});
      }
      return;
    }
    if (parts[1] != "v1") return reply_unknown_path(res);
    if (parts.size() == 2) {
      if (only_get()) reply(res, 200, resource_list());
      return;
    }
    // /api/v1/namespaces, /api/v1/namespaces/{n}, /api/v1/pods,
    // /api/v1/namespaces/{ns}/pods[/{name}[/status]]
    const size_t n = parts.size();
    if (n == 3 && parts[2] == "namespaces") return collection(req, res, "Namespace", "");
    if (n == 3 && parts[2] == "pods") return collection(req, res, "Pod", "");
    if (n == 3 && parts[2] == "events") return collection(req, res, "Event", "");
    if (n >= 4 && parts[2] == "namespaces") {
      if (n == 4) return single(req, res, "Namespace", "", parts[3], false);
      if (n == 5 && parts[4] == "events") {
        if (method == "POST") return create_event(req, res, parts[3]);
        return collection(req, res, "Event", parts[3]);
      }
      if (n == 6 && parts[4] == "events") {
        return single(req, res, "Event", parts[3], parts[5], false);
      }
      if (n == 5 && parts[4] == "configmaps") return collection(req, res, "ConfigMap", parts[3]);
      if (n == 6 && parts[4] == "configmaps") {
        return single(req, res, "ConfigMap", parts[3], parts[5], false);
      }
      if (n >= 7 && parts[4] == "pods" && parts[6] == "proxy") {
        return proxy_to_pod(req, res, parts[3], parts[5]);
      }
      if (n == 5 && parts[4] == "pods") return collection(req, res, "Pod", parts[3]);
      if (n == 6 && parts[4] == "pods") return single(req, res, "Pod", parts[3], parts[5], false);
      if (n == 7 && parts[4] == "pods" && parts[6] == "status") {
        return single(req, res, "Pod", parts[3], parts[5], true);
      }
      if (n == 7 && parts[4] == "serviceaccounts" && parts[6] == "token") {
        return token_request(req, res, parts[3], parts[5]);
      }
    }
    reply_unknown_path(res);
  }

  static void reply_unknown_path(httplib::Response& res) {
    reply(res, 404,
          status_object(404, "NotFound", "the server could not find the requested resource",
                        json::object()));
  }

  static json version_document() {
    return {{"major", "1"},
            {"minor", "32"},
            {"gitVersion", "v1.32.0+ambient-standin"},
            {"gitCommit", "0000000000000000000000000000000000000000"},
            {"gitTreeState", "clean"},
            {"buildDate", "2025-01-01T00:00:00Z"},
            {"goVersion", "go1.23.4"},
            {"compiler", "gc"},
            {"platform", "linux/amd64"}};
  }

  static json resource_list() {
    const json verbs = {"get", "list", "patch", "watch"};
    return {{"kind", "APIResourceList"},
            {"groupVersion", "v1"},
            {"resources",
             {{{"name", "namespaces"},
               {"singularName", "namespace"},
               {"namespaced", false},
               {"kind", "Namespace"},
               {"verbs", verbs},
               {"shortNames", {"ns"}}},
              {{"name", "pods"},
               {"singularName", "pod"},
               {"namespaced", true},
               {"kind", "Pod"},
               {"verbs", verbs},
               {"shortNames", {"po"}},
               {"categories", {"all"}}},
              {{"name", "pods/status"},
               {"singularName", ""},
               {"namespaced", true},
               {"kind", "Pod"},
               {"verbs", {"get", "patch"}}},
              {{"name", "pods/proxy"},
               {"singularName", ""},
               {"namespaced", true},
               {"kind", "PodProxyOptions"},
               {"verbs", {"create", "delete", "get", "patch", "update"}}},
              {{"name", "events"},
               {"singularName", "event"},
               {"namespaced", true},
               {"kind", "Event"},
               {"verbs", {"create", "get", "list", "watch"}},
               {"shortNames", {"ev"}}},
              {{"name", "configmaps"},
               {"singularName", "configmap"},
               {"namespaced", true},
               {"kind", "ConfigMap"},
               {"verbs", verbs},
               {"shortNames", {"cm"}}},
              {{"name", "serviceaccounts/token"},
               {"singularName", ""},
               {"namespaced", true},
               {"group", "authentication.k8s.io"},
               {"version", "v1"},
               {"kind", "TokenRequest"},
               {"verbs", {"create"}}}}}};
  }

  // ---- Events -------------------------------------------------------------------------------

  // POST /api/v1/namespaces/{ns}/events with kube-apiserver's rules for core/v1 Events: the
  // object's namespace (if given) is the URL's, a name or generateName that is a path segment,
  // involvedObject.namespace equal to the Event's (for Events without eventTime; with one:
  // reportingComponent, reportingInstance, action and reason required), the namespace must
  // exist, a taken name is 409 AlreadyExists.
  void create_event(const httplib::Request& req, httplib::Response& res, const std::string& ns) {
    json event = json::parse(req.body, nullptr, false);
    if (!event.is_object()) return reply_status(res, 400, "the request body is not a JSON object");
    if (event.contains("kind") && event["kind"] != "Event") {
      return reply_status(res, 400,
                          "the API version in the data (" + event.value("apiVersion", "") +
                              ") does not match the expected API version (v1)");
    }
    json& metadata = event["metadata"];
    if (!metadata.is_object()) metadata = json::object();
    if (metadata.contains("namespace") && metadata["namespace"] != ns) {
      return reply_status(res, 400,
                          "the namespace of the provided object does not match the namespace "
                          "sent on the request");
    }
    std::string name = metadata.value("name", "");
    if (name.empty() && !metadata.value("generateName", "").empty()) {
      name = metadata.value("generateName", "") + new_uid().substr(0, 5);
    }
    auto invalid = [&](const std::string& field, const std::string& detail) {
      reply(res, 422,
            status_object(422, "Invalid",
                          "Event \"" + name + "\" is invalid: " + field + ": " + detail,
                          {{"name", name}, {"kind", "Event"}}));
    };
    if (name.empty()) {
      return invalid("metadata.name", "Required value: name or generateName is required");
    }
    // core/v1 Events get only the generic name check (a path segment), not the DNS rules of
    // events.k8s.io.
    if (name == "." || name == ".." || name.find_first_of("/%") != std::string::npos) {
      return invalid("metadata.name", "Invalid value: \"" + name +
                                          "\": may not be '.' or '..' or contain '/' or '%'");
    }
    const json involved = event.value("involvedObject", json::object());
    const std::string involved_ns = involved.value("namespace", "");
    if (event.value("eventTime", json()).is_null()) {
      if (involved_ns.empty() ? (ns != "default") : involved_ns != ns) {
        return invalid("involvedObject.namespace",
                       "Invalid value: \"" + involved_ns + "\": does not match event.namespace");
      }
    } else {
      if (involved_ns.empty() && ns != "default" && ns != "kube-system") {
        return invalid("involvedObject.namespace",
                       "Invalid value: \"\": does not match event.namespace");
      }
      for (const char* field : {"reportingComponent", "reportingInstance", "action", "reason"}) {
        if (event.value(field, "").empty()) return invalid(field, "Required value");
      }
    }
    event["kind"] = "Event";
    event["apiVersion"] = "v1";
    metadata["name"] = name;
    metadata["namespace"] = ns;
    metadata.erase("generateName");
    std::lock_guard lock(mu);
    if (objects.find(Key{"Namespace", "", ns}) == objects.end()) {
      return reply_not_found(res, "Namespace", ns);
    }
    const Key key{"Event", ns, name};
    if (objects.contains(key)) {
      return reply(res, 409,
                   status_object(409, "AlreadyExists", "events \"" + name + "\" already exists",
                                 {{"name", name}, {"kind", "events"}}));
    }
    metadata["uid"] = new_uid();
    metadata["creationTimestamp"] = now_rfc3339();
    metadata["resourceVersion"] = std::to_string(++rv);
    objects[key] = event;
    record_event("ADDED", event, nullptr);
    reply(res, 201, event);
  }

  // ---- pods/proxy -----------------------------------------------------------------------------

  // GET /api/v1/namespaces/{ns}/pods/[scheme:]{name}[:port]/proxy/{path}: the API server
  // connects to the pod's IP and relays the answer (plain HTTP here). Nothing of the caller's
  // credentials is passed on.
  void proxy_to_pod(const httplib::Request& req, httplib::Response& res, const std::string& ns,
                    const std::string& target) {
    if (req.method != "GET") {
      return reply_status(res, 405, "the stand-in proxies GET only");
    }
    std::vector<std::string> bits;
    for (std::size_t start = 0;;) {
      const auto colon = target.find(':', start);
      bits.push_back(target.substr(start, colon == std::string::npos ? colon : colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    const std::string name = bits.size() == 3 ? bits[1] : bits[0];
    std::string port = bits.size() == 3 ? bits[2] : bits.size() == 2 ? bits[1] : "";
    std::string ip;
    {
      std::lock_guard lock(mu);
      const auto it = objects.find(Key{"Pod", ns, name});
      if (it == objects.end()) return reply_not_found(res, "Pod", name);
      ip = it->second.value(json::json_pointer("/status/podIP"), std::string());
      if (port.empty()) {
        const auto ports =
            it->second.value(json::json_pointer("/spec/containers/0/ports"), json::array());
        if (!ports.empty()) port = std::to_string(ports[0].value("containerPort", 0));
      }
    }
    if (ip.empty() || port.empty()) {
      return reply_status(res, 503, "pod " + name + " has no IP or no port to proxy to");
    }
    // What follows .../proxy in the raw target (path and query).
    const std::string marker = "/" + target + "/proxy";
    const auto at = req.target.find(marker);
    std::string rest = at == std::string::npos ? "/" : req.target.substr(at + marker.size());
    if (rest.empty() || rest[0] != '/') rest = "/" + rest;
    httplib::Client client(ip, std::stoi(port));
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    const auto answer = client.Get(rest.c_str());
    if (!answer) {
      return reply_status(res, 503,
                          "error trying to reach service: dial tcp " + ip + ":" + port +
                              ": connect: connection refused");
    }
    res.status = answer->status;
    res.set_content(answer->body, answer->get_header_value("Content-Type").c_str());
  }

  // ---- TokenRequest
  // ------------------------------------------------------------------------------

  void token_request(const httplib::Request& req, httplib::Response& res, const std::string& ns,
                     const std::string& name) {
    if (req.method != "POST") {
      return reply_status(res, 405,
                          "the server does not allow this method on the requested resource");
    }
    const json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || body.value("kind", "") != "TokenRequest") {
      return reply_status(res, 400, "the request body is not a TokenRequest object");
    }
    const json spec = body.contains("spec") && body["spec"].is_object() ? body["spec"] : json{};
    std::int64_t seconds = 3600;
    if (spec.contains("expirationSeconds")) {
      if (!spec["expirationSeconds"].is_number_integer()) {
        return reply_status(res, 400, "spec.expirationSeconds is not an integer");
      }
      seconds = spec["expirationSeconds"].get<std::int64_t>();
    }
    if (seconds < 600) {
      return reply_status(
          res, 422,
          "TokenRequest.authentication.k8s.io \"" + name +
              "\" is invalid: spec.expirationSeconds: Invalid value: " + std::to_string(seconds) +
              ": may not specify a duration less than 10 minutes");
    }
    std::lock_guard lock(mu);
    if (options.max_token_seconds > 0 && seconds > options.max_token_seconds) {
      seconds = options.max_token_seconds;
    }
    if (!tokens.has_service_account(ns, name)) {
      return reply(res, 404,
                   status_object(404, "NotFound", "serviceaccounts \"" + name + "\" not found",
                                 {{"name", name}, {"kind", "serviceaccounts"}}));
    }
    ServiceAccountToken t;
    t.ns = ns;
    t.service_account = name;
    t.expiration_seconds = seconds;
    t.expires = std::chrono::system_clock::now() + std::chrono::seconds(seconds);
    json out_spec = {{"audiences", {"https://kubernetes.default.svc.cluster.local"}},
                     {"expirationSeconds", seconds}};
    // The rules of kube-apiserver's token REST storage (pkg/registry/core/serviceaccount):
    // a Pod only for the service account it runs as, a Node only with its feature gate on.
    if (spec.contains("boundObjectRef") && spec["boundObjectRef"].is_object()) {
      const json& ref = spec["boundObjectRef"];
      t.bound_kind = ref.value("kind", "");
      t.bound_name = ref.value("name", "");
      if (t.bound_kind != "Pod" && t.bound_kind != "Node") {
        return reply_status(res, 400,
                            "cannot bind token to object of type /v1, Kind=" + t.bound_kind);
      }
      if (t.bound_kind == "Node" && !options.node_token_binding) {
        return reply_status(res, 400,
                            "cannot bind token to a Node object as the "
                            "\"ServiceAccountTokenNodeBinding\" feature-gate is disabled");
      }
      if (t.bound_kind == "Node") {
        const auto node = nodes.find(t.bound_name);
        if (node == nodes.end()) return reply_not_found(res, "Node", t.bound_name);
        t.bound_uid = node->second;
      } else {
        const auto pod = objects.find(Key{"Pod", ns, t.bound_name});
        if (pod == objects.end()) return reply_not_found(res, "Pod", t.bound_name);
        if (pod->second.value(json::json_pointer("/spec/serviceAccountName"),
                              std::string("default")) != name) {
          return reply_status(res, 400,
                              "cannot bind token for serviceaccount \"" + name +
                                  "\" to pod running with different serviceaccount name.");
        }
        t.bound_uid = pod->second["metadata"].value("uid", std::string());
      }
      const std::string asked = ref.value("uid", "");
      if (!asked.empty() && asked != t.bound_uid) {
        return reply_status(res, 409,
                            "Operation cannot be fulfilled on " + t.bound_kind + " \"" +
                                t.bound_name + "\": the UID in the bound object reference (" +
                                asked +
                                ") does not match the UID in record. The object might have been "
                                "deleted and then recreated");
      }
      out_spec["boundObjectRef"] = {{"kind", t.bound_kind},
                                    {"apiVersion", "v1"},
                                    {"name", t.bound_name},
                                    {"uid", t.bound_uid}};
    }
    const auto& issued = tokens.issue(std::move(t));
    const std::string stamp = rfc3339(std::chrono::system_clock::to_time_t(issued.expires));
    reply(res, 201,
          {{"kind", "TokenRequest"},
           {"apiVersion", "authentication.k8s.io/v1"},
           {"metadata", {{"name", name}, {"namespace", ns}, {"creationTimestamp", nullptr}}},
           {"spec", out_spec},
           {"status", {{"token", issued.token}, {"expirationTimestamp", stamp}}}});
  }

  // ---- GET / PATCH of one object ----------------------------------------------------------------

  void single(const httplib::Request& req, httplib::Response& res, const std::string& kind,
              const std::string& ns, const std::string& name, bool status_subresource) {
    if (req.method == "GET") {
      std::lock_guard lock(mu);
      auto it = objects.find(Key{kind, ns, name});
      if (it == objects.end()) return reply_not_found(res, kind, name);
      const auto table =
          table_request(req.get_header_value("Accept"), req.get_param_value("includeObject"));
      if (table.wanted) {
        return reply(res, 200,
                     make_table(kind, {&it->second}, table,
                                {{"resourceVersion", it->second["metadata"]["resourceVersion"]}}));
      }
      return reply(res, 200, it->second);
    }
    if (req.method == "PATCH") return patch(req, res, Key{kind, ns, name}, status_subresource);
    reply_status(res, 405, "the server does not allow this method on the requested resource");
  }

  void patch(const httplib::Request& req, httplib::Response& res, const Key& key,
             bool status_subresource) {
    std::string type = req.get_header_value("Content-Type");
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    const bool json_patch = type == "application/json-patch+json";
    const bool merge = type == "application/merge-patch+json";
    const bool strategic = type == "application/strategic-merge-patch+json";
    if (!json_patch && !merge && !strategic) {
      return reply_status(res, 415,
                          "the body of the request was in an unknown format - accepted media "
                          "types include: application/json-patch+json, "
                          "application/merge-patch+json, application/strategic-merge-patch+json");
    }
    const json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) return reply_status(res, 400, "the request body is not valid JSON");

    std::lock_guard lock(mu);
    auto it = objects.find(key);
    if (it == objects.end()) return reply_not_found(res, key.kind, key.name);
    const json& current = it->second;
    json result;
    try {
      if (json_patch) {
        if (!body.is_array()) return reply_status(res, 400, "a JSON patch must be an array");
        result = current.patch(body);
      } else if (merge) {
        result = current;
        result.merge_patch(body);
      } else {
        result = apply_strategic(current, body).value_or(json::object());
      }
    } catch (const json::exception& e) {
      return reply_status(res, 422, std::string("the patch could not be applied: ") + e.what());
    }
    if (!result.is_object() || !result["metadata"].is_object()) {
      return reply_status(res, 422, "the patched object has no metadata");
    }
    json& metadata = result["metadata"];
    const json& old_metadata = current["metadata"];
    const std::string resource = resource_of(key.kind);
    // resourceVersion in a patch is a precondition: optimistic concurrency, as in the real API.
    if (metadata.contains("resourceVersion") &&
        metadata["resourceVersion"] != old_metadata["resourceVersion"]) {
      return reply(res, 409,
                   status_object(409, "Conflict",
                                 "Operation cannot be fulfilled on " + resource + " \"" + key.name +
                                     "\": the object has been modified; please apply your "
                                     "changes to the latest version and try again",
                                 {{"name", key.name}, {"kind", resource}}));
    }
    for (const char* field : {"name", "namespace", "uid", "creationTimestamp"}) {
      const json old_value = old_metadata.contains(field) ? old_metadata[field] : json();
      const json new_value = metadata.contains(field) ? metadata[field] : json();
      if (new_value.is_null()) {
        if (!old_value.is_null()) metadata[field] = old_value;  // removal is not a change
      } else if (new_value != old_value) {
        return reply_status(res, 422,
                            resource + " \"" + key.name + "\" is invalid: metadata." + field +
                                ": Invalid value: field is immutable");
      }
    }
    if (result.value("kind", "") != current["kind"] ||
        result.value("apiVersion", "") != current["apiVersion"]) {
      return reply_status(res, 400, "kind and apiVersion cannot be changed by a patch");
    }
    for (const char* map : {"labels", "annotations"}) {
      if (!metadata.contains(map)) continue;
      const json& values = metadata[map];
      bool valid = values.is_object();
      if (valid) {
        for (const auto& [k, v] : values.items()) valid = valid && v.is_string() && !k.empty();
      }
      if (!valid) {
        return reply_status(res, 422,
                            resource + " \"" + key.name + "\" is invalid: metadata." + map +
                                ": Invalid value: must be a map of strings");
      }
      if (values.empty()) metadata.erase(map);  // the real server omits empty maps
    }
    // What each endpoint may change, as the real registry strategies decide.
    if (status_subresource) {
      result["spec"] = current["spec"];
      if (old_metadata.contains("ownerReferences")) {
        metadata["ownerReferences"] = old_metadata["ownerReferences"];
      } else {
        metadata.erase("ownerReferences");
      }
    } else if (current.contains("status")) {
      result["status"] = current["status"];
    }
    metadata["resourceVersion"] = old_metadata["resourceVersion"];
    if (result == current) return reply(res, 200, current);  // no-op: no new resourceVersion
    metadata["resourceVersion"] = std::to_string(++rv);
    json previous = current;
    it->second = result;
    record_event("MODIFIED", result, std::move(previous));
    reply(res, 200, result);
  }

  // ---- LIST / WATCH ---------------------------------------------------------------------------

  void collection(const httplib::Request& req, httplib::Response& res, const std::string& kind,
                  const std::string& ns) {
    if (req.method != "GET") {
      return reply_status(res, 405,
                          "the server does not allow this method on the requested resource");
    }
    Selection selection{kind, ns, {}, {}, {}};
    selection.table =
        table_request(req.get_header_value("Accept"), req.get_param_value("includeObject"));
    try {
      selection.labels = LabelSelectorQuery::parse(req.get_param_value("labelSelector"));
    } catch (const std::invalid_argument& e) {
      return reply_status(res, 400, std::string("unable to parse requirement: ") + e.what());
    }
    try {
      selection.fields = FieldSelectorQuery::parse(req.get_param_value("fieldSelector"), kind);
    } catch (const std::invalid_argument& e) {
      return reply_status(res, 400, e.what());
    }
    if (parse_bool(req.get_param_value("watch"))) return watch(req, res, std::move(selection));
    list(req, res, selection);
  }

  void list(const httplib::Request& req, httplib::Response& res, const Selection& selection) {
    long limit = 0;
    if (req.has_param("limit")) {
      try {
        limit = std::stol(req.get_param_value("limit"));
      } catch (const std::exception&) {
        return reply_status(res, 400, "limit must be an integer");
      }
    }
    // continue: the last key of the previous page; keys are listed in order, like etcd's.
    std::optional<Key> after;
    if (const std::string token = req.get_param_value("continue"); !token.empty()) {
      const json decoded = json::parse(token, nullptr, false);
      if (!decoded.is_array() || decoded.size() != 2 || !decoded[0].is_string() ||
          !decoded[1].is_string()) {
        return reply_status(res, 400, "invalid continue token");
      }
      after = Key{selection.kind, decoded[0].get<std::string>(), decoded[1].get<std::string>()};
    }
    json items = json::array();
    std::vector<const json*> rows;  // for a Table
    std::string next;
    long remaining = 0;
    std::lock_guard lock(mu);
    for (const auto& [key, object] : objects) {
      if (key.kind != selection.kind || (after && !(*after < key))) continue;
      if (!selection.matches(object)) continue;
      if (limit > 0 && static_cast<long>(items.size()) >= limit) {
        ++remaining;
        continue;
      }
      rows.push_back(&object);
      json item = object;
      // Items of a real List carry no kind/apiVersion of their own.
      item.erase("kind");
      item.erase("apiVersion");
      items.push_back(std::move(item));
      if (limit > 0 && static_cast<long>(items.size()) == limit)
        next = json({key.ns, key.name}).dump();
    }
    json metadata = {{"resourceVersion", std::to_string(rv)}};
    if (remaining > 0) {
      metadata["continue"] = next;
      metadata["remainingItemCount"] = remaining;
    }
    if (selection.table.wanted)
      return reply(res, 200, make_table(selection.kind, rows, selection.table, metadata));
    reply(res, 200,
          {{"kind", list_kind(selection.kind)},
           {"apiVersion", "v1"},
           {"metadata", metadata},
           {"items", items}});
  }

  static std::string event_line(const std::string& type, const json& object) {
    return json{{"type", type}, {"object", object}}.dump() + "\n";
  }

  // The event a watcher with this selection sees, if any: an object that starts or stops
  // matching a selector is ADDED or DELETED for that watcher, as with the real watch cache.
  static std::optional<std::string> filtered(const Event& event, const Selection& selection) {
    if (event.type == "DELETED") {
      if (!selection.matches(event.object)) return std::nullopt;
      return event_line("DELETED", selection.event_object(event.object));
    }
    const bool now = selection.matches(event.object);
    const bool before = !event.previous.is_null() && selection.matches(event.previous);
    if (event.type == "ADDED" || !before) {
      return now ? std::optional(event_line("ADDED", selection.event_object(event.object)))
                 : std::nullopt;
    }
    return event_line(now ? "MODIFIED" : "DELETED", selection.event_object(event.object));
  }

  static std::string expired_line(uint64_t requested, uint64_t oldest) {
    return event_line(
        "ERROR", status_object(410, "Expired",
                               "too old resource version: " + std::to_string(requested) + " (" +
                                   std::to_string(oldest) + ")"));
  }

  void watch(const httplib::Request& req, httplib::Response& res, Selection selection) {
    auto cursor = std::make_shared<WatchCursor>();
    cursor->selection = std::move(selection);
    cursor->ssl = req.ssl;
    cursor->bookmarks = parse_bool(req.get_param_value("allowWatchBookmarks"));
    if (req.has_param("timeoutSeconds")) {
      try {
        const long seconds = std::stol(req.get_param_value("timeoutSeconds"));
        if (seconds > 0) cursor->deadline = Clock::now() + std::chrono::seconds(seconds);
      } catch (const std::exception&) {
        return reply_status(res, 400, "timeoutSeconds must be an integer");
      }
    }
    const std::string requested = req.get_param_value("resourceVersion");
    uint64_t from = 0;
    if (!requested.empty() && requested != "0") {
      try {
        size_t used = 0;
        from = std::stoull(requested, &used);
        if (used != requested.size()) throw std::invalid_argument(requested);
      } catch (const std::exception&) {
        return reply_status(res, 400, "invalid resource version: " + requested);
      }
    }
    {
      std::lock_guard lock(mu);
      if (requested.empty() || requested == "0") {
        // No resourceVersion: the current state as ADDED events, then changes.
        for (const auto& [key, object] : objects) {
          if (cursor->selection.matches(object))
            cursor->pending.push_back(event_line("ADDED", cursor->selection.event_object(object)));
        }
        cursor->position = rv;
      } else if (from < compacted_rv) {
        cursor->pending.push_back(expired_line(from, compacted_rv + 1));
        cursor->end_after_pending = true;
      } else {
        cursor->position = from;
      }
      cursor->drop_generation = drop_generation;
      cursor->bookmark_generation = bookmark_generation;
      cursor->next_bookmark = Clock::now() + options.bookmark_interval;
      ++watches;
    }
    res.status = 200;
    // Not plain "application/json": httplib would gzip that for Go clients (they send
    // Accept-Encoding: gzip) and zlib holds events back until its buffer fills. The real server
    // never compresses watches either; client-go accepts the stream=watch parameter.
    res.set_chunked_content_provider(
        "application/json;stream=watch",
        [this, cursor](size_t, httplib::DataSink& sink) { return stream(*cursor, sink); },
        [this](bool) {
          std::lock_guard lock(mu);
          --watches;
        });
  }

  // One step of a watch stream: waits for something to send, sends it. false = abort.
  bool stream(WatchCursor& cursor, httplib::DataSink& sink) {
    std::vector<std::string> lines;
    bool end = false;
    {
      std::unique_lock lock(mu);
      auto ready = [&] {
        return stopping || drop_generation != cursor.drop_generation || !cursor.pending.empty() ||
               cursor.end_after_pending || rv > cursor.position ||
               (cursor.bookmarks && bookmark_generation != cursor.bookmark_generation);
      };
      auto wake = Clock::now() + std::chrono::milliseconds(500);
      if (cursor.deadline) wake = std::min(wake, *cursor.deadline);
      if (cursor.bookmarks) wake = std::min(wake, cursor.next_bookmark);
      changed.wait_until(lock, wake, ready);
      if (drop_generation != cursor.drop_generation) {
        hard_close(cursor.ssl);  // no final chunk: the client sees a broken stream
        return false;
      }
      if (stopping) {
        end = true;
      } else {
        while (!cursor.pending.empty()) {
          lines.push_back(std::move(cursor.pending.front()));
          cursor.pending.pop_front();
        }
        if (cursor.end_after_pending) {
          end = true;
        } else if (rv > cursor.position) {
          if (cursor.position < compacted_rv) {
            // Events this watcher has not seen were compacted away.
            lines.push_back(expired_line(cursor.position, compacted_rv + 1));
            end = true;
          } else {
            auto first = std::upper_bound(
                history.begin(), history.end(), cursor.position,
                [](uint64_t position, const Event& event) { return position < event.rv; });
            for (auto it = first; it != history.end(); ++it) {
              if (auto line = filtered(*it, cursor.selection)) lines.push_back(std::move(*line));
            }
            cursor.position = rv;
          }
        }
        const auto now = Clock::now();
        if (!end && cursor.bookmarks &&
            (bookmark_generation != cursor.bookmark_generation || now >= cursor.next_bookmark)) {
          lines.push_back(event_line(
              "BOOKMARK", {{"kind", cursor.selection.kind},
                           {"apiVersion", "v1"},
                           {"metadata", {{"resourceVersion", std::to_string(cursor.position)}}}}));
          cursor.bookmark_generation = bookmark_generation;
          cursor.next_bookmark = now + options.bookmark_interval;
        }
        if (cursor.deadline && now >= *cursor.deadline) end = true;
      }
    }
    for (const auto& line : lines) {
      if (!sink.write(line.data(), line.size())) return false;
    }
    if (end) sink.done();
    return true;
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  bool setup_tls(SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate(&ctx, pki.server().cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(&ctx, pki.server().key.get()) != 1 ||
        SSL_CTX_check_private_key(&ctx) != 1) {
      return false;
    }
    // Ask for (never require) a client certificate; whether it authenticates anyone is decided
    // per request from the verification result, so token clients are unaffected.
    X509_STORE_add_cert(SSL_CTX_get_cert_store(&ctx), pki.ca().cert.get());
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    // With peer verification on, OpenSSL refuses to resume a session (a reconnecting client
    // such as libcurl offers one) unless a session id context is set: "internal error" alert.
    static constexpr unsigned char kSessionContext[] = "ambient-apiserver-standin";
    SSL_CTX_set_session_id_context(&ctx, kSessionContext, sizeof(kSessionContext) - 1);
    SSL_CTX_set_app_data(&ctx, &connections);
    SSL_CTX_set_info_callback(&ctx, &ConnectionRegistry::on_info);
    return true;
  }

  void start() {
    if (listener.joinable()) return;
    // A client that hangs up mid-answer must not kill the process: OpenSSL writes to the
    // socket without MSG_NOSIGNAL.
    std::signal(SIGPIPE, SIG_IGN);
    ConnectionRegistry::ex_index();
    {
      std::lock_guard lock(mu);
      stopping = false;
    }
    server = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) { return setup_tls(ctx); });
    if (!server->is_valid()) throw std::runtime_error("API stand-in: TLS setup failed");
    server->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
    // The real server keeps idle connections for long and never caps requests per connection;
    // connection reuse is part of what the client tests prove.
    server->set_keep_alive_max_count(1000000);
    server->set_keep_alive_timeout(120);
    // httplib writes headers and body separately; with Nagle on, the body waits for the
    // client's delayed ACK (40 ms per answer). Go's net/http, like the real server, sets it.
    server->set_tcp_nodelay(true);
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res);
    };
    server->Get(".*", handler);
    server->Patch(".*", handler);
    server->Put(".*", handler);
    server->Post(".*", handler);
    server->Delete(".*", handler);
    if (port == 0) {
      port = server->bind_to_any_port(options.bind_address);
      if (port <= 0) {
        port = 0;
        throw std::runtime_error("API stand-in: cannot bind " + options.bind_address);
      }
    } else if (!server->bind_to_port(options.bind_address, port)) {
      throw std::runtime_error("API stand-in: cannot bind " + options.bind_address + ":" +
                               std::to_string(port));
    }
    // bind_* already listen(2)s: connections queue from here, so start() may return now.
    listener = std::thread([this] { server->listen_after_bind(); });
    // httplib's stop() does nothing until the accept loop has started (is_running), so a
    // stop() right after start() would leave the listener blocked in accept(2) forever.
    while (!server->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  void stop() {
    if (!listener.joinable()) return;
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    changed.notify_all();
    server->stop();
    // Idle keep-alive connections would hold their worker (and so the join) until they time
    // out; cut them.
    connections.shutdown_all();
    listener.join();
    server.reset();
  }
};

// ---------------------------------------------------------------------------------------------

ApiServerStandin::ApiServerStandin() : ApiServerStandin(Options{}) {}
ApiServerStandin::ApiServerStandin(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
ApiServerStandin::~ApiServerStandin() = default;

void ApiServerStandin::start() {
  impl_->start();
}
void ApiServerStandin::stop() {
  impl_->stop();
}
int ApiServerStandin::port() const {
  return impl_->port;
}
std::string ApiServerStandin::url() const {
  return "https://" + impl_->host_for_url() + ":" + std::to_string(impl_->port);
}
const std::string& ApiServerStandin::ca_pem() const {
  return impl_->pki.ca_pem();
}
void ApiServerStandin::add_service_account(const std::string& ns, const std::string& name) {
  std::lock_guard lock(impl_->mu);
  impl_->tokens.add_service_account(ns, name);
}

void ApiServerStandin::add_node(const std::string& name, const std::string& uid) {
  std::lock_guard lock(impl_->mu);
  impl_->nodes[name] = uid;
}

void ApiServerStandin::remove_node(const std::string& name) {
  std::lock_guard lock(impl_->mu);
  impl_->nodes.erase(name);
}

void ApiServerStandin::grant(const std::string& user, std::vector<std::string> verbs,
                             std::vector<std::string> resources, std::string ns,
                             std::vector<std::string> names) {
  std::lock_guard lock(impl_->mu);
  impl_->rbac.grant(user, Rbac::Rule{{verbs.begin(), verbs.end()},
                                     {resources.begin(), resources.end()},
                                     std::move(ns),
                                     {names.begin(), names.end()}});
}

std::vector<ServiceAccountToken> ApiServerStandin::issued_tokens() const {
  std::lock_guard lock(impl_->mu);
  return impl_->tokens.issued();
}

void ApiServerStandin::expire_issued_tokens() {
  std::lock_guard lock(impl_->mu);
  impl_->tokens.expire_all(std::chrono::system_clock::now());
}

const std::string& ApiServerStandin::token() const {
  return impl_->options.token;
}
void ApiServerStandin::set_token(std::string token) {
  std::lock_guard lock(impl_->mu);
  impl_->options.token = std::move(token);
}

void ApiServerStandin::write_kubeconfig(const std::filesystem::path& path,
                                        const std::filesystem::path& token_file) const {
  std::string user;
  if (token_file.empty()) {
    user = "    token: " + json(token()).dump() + "\n";
  } else {
    write_file_atomically(token_file, token(), 0600);
    user = "    tokenFile: " + json(std::filesystem::absolute(token_file).string()).dump() + "\n";
  }
  // YAML; the double-quoted scalars are JSON strings, which YAML reads the same way.
  const std::string text =
      "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n"
      "  cluster:\n    server: " +
      json(url()).dump() + "\n    certificate-authority-data: " + base64(ca_pem()) +
      "\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n"
      "    user: standin\ncurrent-context: standin\nusers:\n"
      "- name: standin\n  user:\n" +
      user;
  write_file_atomically(path, text, 0600);
}

ApiServerStandin::ClientCertificate ApiServerStandin::issue_client_certificate(
    const std::string& user) const {
  const CertifiedKey issued = impl_->pki.issue_client(user, {});
  return {issued.cert_pem(), issued.key_pem()};
}

void ApiServerStandin::put(nlohmann::json object) {
  impl_->put(std::move(object));
}
bool ApiServerStandin::update(std::string_view kind, std::string_view ns, std::string_view name,
                              const std::function<void(nlohmann::json&)>& change) {
  return impl_->update(kind, ns, name, change);
}
void ApiServerStandin::remove_object(std::string_view kind, std::string_view ns,
                                     std::string_view name) {
  impl_->remove(kind, ns, name);
}

std::optional<nlohmann::json> ApiServerStandin::get_object(std::string_view kind,
                                                           std::string_view ns,
                                                           std::string_view name) const {
  const std::string canonical = canonical_kind(kind);
  std::lock_guard lock(impl_->mu);
  auto it = impl_->objects.find(
      Key{canonical, namespaced(canonical) ? std::string(ns) : "", std::string(name)});
  if (it == impl_->objects.end()) return std::nullopt;
  return it->second;
}

std::vector<nlohmann::json> ApiServerStandin::list_objects(std::string_view kind) const {
  const std::string canonical = canonical_kind(kind);
  std::vector<nlohmann::json> out;
  std::lock_guard lock(impl_->mu);
  for (const auto& [key, obj] : impl_->objects) {
    if (key.kind == canonical) out.push_back(obj);
  }
  return out;
}

void ApiServerStandin::load_objects(const nlohmann::json& objects) {
  const json* items = &objects;
  if (objects.is_object() && objects.contains("items")) items = &objects["items"];
  if (!items->is_array()) {
    throw std::invalid_argument("objects must be a JSON array or a List with items");
  }
  for (const auto& object : *items) put(object);
}

std::string ApiServerStandin::resource_version() const {
  std::lock_guard lock(impl_->mu);
  return std::to_string(impl_->rv);
}

void ApiServerStandin::add_fault(ApiFault fault) {
  std::lock_guard lock(impl_->mu);
  impl_->faults.push_back(std::move(fault));
}
void ApiServerStandin::clear_faults() {
  std::lock_guard lock(impl_->mu);
  impl_->faults.clear();
}

std::vector<ApiRequest> ApiServerStandin::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->log;
}
void ApiServerStandin::clear_requests() {
  std::lock_guard lock(impl_->mu);
  impl_->log.clear();
}

int ApiServerStandin::tls_connections() const {
  return impl_->connections.handshakes();
}
int ApiServerStandin::open_connections() const {
  return impl_->connections.open();
}
int ApiServerStandin::open_watches() const {
  std::lock_guard lock(impl_->mu);
  return impl_->watches;
}

void ApiServerStandin::drop_watches() {
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->drop_generation;
  }
  impl_->changed.notify_all();
}
void ApiServerStandin::drop_connections() {
  drop_watches();
  impl_->connections.shutdown_all();
}
void ApiServerStandin::compact_history() {
  std::lock_guard lock(impl_->mu);
  impl_->history.clear();
  impl_->compacted_rv = impl_->rv;
  impl_->changed.notify_all();
}
void ApiServerStandin::send_bookmarks() {
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->bookmark_generation;
  }
  impl_->changed.notify_all();
}

}  // namespace ambient::testing
