// The API client against the API stand-in: real TLS, real HTTP, injected faults.
#include "kube/client.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <set>

#include "kube/curl_api.h"
#include "tests/kube/test_util.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::kube {
namespace {

using ambient::testing::ApiFault;
using ambient::testing::ApiServerStandin;
using Kind = ApiError::Kind;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using test::TempDir;
using test::write_file;

constexpr std::string_view kPodPath = "/api/v1/namespaces/demo/pods/web";

nlohmann::json demo_namespace() {
  return {{"kind", "Namespace"}, {"metadata", {{"name", "demo"}, {"labels", {{"team", "a"}}}}}};
}

nlohmann::json web_pod() {
  return {{"kind", "Pod"},
          {"metadata", {{"name", "web"}, {"namespace", "demo"}, {"labels", {{"app", "web"}}}}},
          {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", "web"}, {"hostNetwork", false}}},
          {"status",
           {{"phase", "Running"}, {"podIP", "10.1.0.7"}, {"podIPs", {{{"ip", "10.1.0.7"}}}}}}};
}

// Runs fn, which must throw ApiError; returns it.
template <typename Fn>
ApiError api_error(Fn&& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError";
  return ApiError(Kind::kHttpError, -1, "none");
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.put(demo_namespace());
    server_.put(web_pod());
    server_.start();
  }

  Kubeconfig config() const {
    Kubeconfig c;
    c.server = server_.url();
    c.ca_pem = server_.ca_pem();
    c.token = server_.token();
    return c;
  }

  static ClientOptions fast() {
    ClientOptions o;
    o.deadline = milliseconds(3000);
    o.initial_backoff = milliseconds(10);
    return o;
  }

  size_t count_requests(std::string_view path) const {
    size_t n = 0;
    for (const auto& r : server_.requests()) n += r.path == path;
    return n;
  }

  ApiServerStandin server_;
  TempDir dir_;
};

TEST_F(ClientTest, GetReturnsTheObject) {
  Client client(config(), fast());
  const auto pod = client.get(kPodPath);
  EXPECT_EQ(pod["kind"], "Pod");
  EXPECT_EQ(pod["metadata"]["name"], "web");
  EXPECT_EQ(pod["metadata"]["labels"]["app"], "web");
  EXPECT_EQ(pod["spec"]["nodeName"], "node-1");
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_TRUE(requests[0].authorized);
  EXPECT_EQ(requests[0].user, "token");
}

TEST_F(ClientTest, ConsecutiveCallsReuseOneConnection) {
  const int before = server_.tls_connections();
  Client client(config(), fast());
  client.get(kPodPath);
  client.get("/api/v1/namespaces/demo");
  client.patch("/api/v1/namespaces/demo", {{"metadata", {{"labels", {{"x", "1"}}}}}},
               "application/merge-patch+json");
  client.get(kPodPath);
  EXPECT_EQ(server_.tls_connections() - before, 1);
  std::set<int> ports;
  for (const auto& r : server_.requests()) ports.insert(r.remote_port);
  EXPECT_EQ(ports.size(), 1u);
}

TEST_F(ClientTest, SeparateClientsUseSeparateConnections) {
  const int before = server_.tls_connections();
  Client a(config(), fast());
  Client b(config(), fast());
  a.get(kPodPath);
  b.get(kPodPath);
  EXPECT_EQ(server_.tls_connections() - before, 2);
}

TEST_F(ClientTest, MovedClientKeepsItsConnection) {
  Client client(config(), fast());
  client.get(kPodPath);
  const int after_first = server_.tls_connections();
  Client moved = std::move(client);
  moved.get(kPodPath);
  EXPECT_EQ(server_.tls_connections(), after_first);
}

TEST_F(ClientTest, NoTokenIsUnauthorizedWithoutRetry) {
  auto c = config();
  c.token.clear();
  Client client(c, fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnauthorized);
  EXPECT_EQ(e.http_status(), 401);
  EXPECT_STREQ(e.what(), "GET /api/v1/namespaces/demo/pods/web: 401 Unauthorized");
  EXPECT_EQ(count_requests(kPodPath), 1u);
  EXPECT_FALSE(server_.requests()[0].authorized);
}

TEST_F(ClientTest, WrongTokenIsUnauthorizedAndNeverEchoed) {
  auto c = config();
  c.token = "wrong-secret-4711";
  Client client(c, fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnauthorized);
  EXPECT_FALSE(contains(e.what(), "wrong-secret-4711")) << e.what();
  EXPECT_EQ(count_requests(kPodPath), 1u);
}

TEST_F(ClientTest, ForbiddenIsNotRetried) {
  server_.add_fault({.path_prefix = "/api/v1/namespaces/demo/pods", .status = 403});
  Client client(config(), fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kForbidden);
  EXPECT_EQ(e.http_status(), 403);
  EXPECT_TRUE(contains(e.what(), "GET /api/v1/namespaces/demo/pods/web: 403 Forbidden"))
      << e.what();
  EXPECT_EQ(count_requests(kPodPath), 1u);
}

TEST_F(ClientTest, NotFoundCarriesTheStatusMessage) {
  Client client(config(), fast());
  const auto e = api_error([&] { client.get("/api/v1/namespaces/demo/pods/nope"); });
  EXPECT_EQ(e.kind(), Kind::kNotFound);
  EXPECT_EQ(e.http_status(), 404);
  EXPECT_STREQ(e.what(),
               "GET /api/v1/namespaces/demo/pods/nope: 404 Not Found: pods \"nope\" not found");
  EXPECT_EQ(count_requests("/api/v1/namespaces/demo/pods/nope"), 1u);
}

TEST_F(ClientTest, ConflictAndGoneMapToTheirKinds) {
  Client client(config(), fast());
  const std::string stale = client.get("/api/v1/namespaces/demo")["metadata"]["resourceVersion"];
  client.patch("/api/v1/namespaces/demo", {{"metadata", {{"labels", {{"x", "1"}}}}}},
               "application/merge-patch+json");
  // A patch carrying the resourceVersion it was computed from is a precondition.
  const auto conflict = api_error([&] {
    client.patch("/api/v1/namespaces/demo",
                 {{"metadata", {{"resourceVersion", stale}, {"labels", {{"x", "2"}}}}}},
                 "application/merge-patch+json");
  });
  EXPECT_EQ(conflict.kind(), Kind::kConflict);
  EXPECT_EQ(conflict.http_status(), 409);
  EXPECT_TRUE(contains(conflict.what(), "the object has been modified")) << conflict.what();

  server_.add_fault({.path_prefix = "/api/v1/pods", .status = 410, .times = 1});
  const auto gone = api_error([&] { client.list("/api/v1/pods"); });
  EXPECT_EQ(gone.kind(), Kind::kGone);
  EXPECT_EQ(count_requests("/api/v1/pods"), 1u);
}

TEST_F(ClientTest, OtherClientErrorsAreHttpErrorsWithoutRetry) {
  server_.add_fault({.path_prefix = "/api/v1/namespaces/demo", .status = 429});
  Client client(config(), fast());
  const auto e = api_error([&] { client.get("/api/v1/namespaces/demo"); });
  EXPECT_EQ(e.kind(), Kind::kHttpError);
  EXPECT_EQ(e.http_status(), 429);
  EXPECT_EQ(count_requests("/api/v1/namespaces/demo"), 1u);
}

TEST_F(ClientTest, ServerErrorThenSuccessIsRetried) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .status = 500, .times = 1});
  Client client(config(), fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
  EXPECT_EQ(count_requests(kPodPath), 2u);
}

TEST_F(ClientTest, ServerErrorForeverFailsAfterMaxAttempts) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .status = 503});
  auto options = fast();
  options.max_attempts = 3;
  Client client(config(), options);
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kServerError);
  EXPECT_EQ(e.http_status(), 503);
  EXPECT_TRUE(contains(e.what(), "503 Service Unavailable")) << e.what();
  EXPECT_TRUE(contains(e.what(), "attempt 3 of 3")) << e.what();
  EXPECT_EQ(count_requests(kPodPath), 3u);
}

TEST_F(ClientTest, DelayBeyondTheDeadlineTimesOut) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .delay_ms = 5000});
  auto options = fast();
  options.deadline = milliseconds(300);
  Client client(config(), options);
  const auto start = Clock::now();
  const auto e = api_error([&] { client.get(kPodPath); });
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(e.kind(), Kind::kTimeout);
  EXPECT_TRUE(contains(e.what(), "300 ms deadline")) << e.what();
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(2500));  // generous: only "about the deadline, not 5 s"
}

TEST_F(ClientTest, TheDeadlineCoversAllRetries) {
  // Every attempt takes 150 ms and fails: ten attempts would need 1.5 s, the budget is 400 ms.
  server_.add_fault({.path_prefix = std::string(kPodPath), .delay_ms = 150, .status = 500});
  auto options = fast();
  options.deadline = milliseconds(400);
  options.max_attempts = 10;
  Client client(config(), options);
  const auto start = Clock::now();
  const auto e = api_error([&] { client.get(kPodPath); });
  const auto elapsed = Clock::now() - start;
  EXPECT_TRUE(e.kind() == Kind::kServerError || e.kind() == Kind::kTimeout) << e.what();
  EXPECT_LT(elapsed, milliseconds(1400));
  EXPECT_GE(count_requests(kPodPath), 2u);
  EXPECT_LE(count_requests(kPodPath), 4u);
}

TEST_F(ClientTest, DroppedConnectionIsRetried) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .drop = true, .times = 1});
  Client client(config(), fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
  EXPECT_EQ(count_requests(kPodPath), 2u);
}

TEST_F(ClientTest, DroppedConnectionForeverIsUnreachable) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .drop = true});
  Client client(config(), fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnreachable);
  EXPECT_TRUE(contains(e.what(), "GET /api/v1/namespaces/demo/pods/web: cannot reach")) << e.what();
  EXPECT_EQ(count_requests(kPodPath), 3u) << e.what();
}

TEST_F(ClientTest, BadJsonIsABadResponseWithoutRetry) {
  server_.add_fault({.path_prefix = std::string(kPodPath), .bad_json = true});
  Client client(config(), fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kBadResponse);
  EXPECT_TRUE(contains(e.what(), "not a JSON object")) << e.what();
  EXPECT_EQ(count_requests(kPodPath), 1u);
}

TEST_F(ClientTest, ServerDownIsUnreachable) {
  auto c = config();
  server_.stop();
  Client client(c, fast());
  const auto start = Clock::now();
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnreachable);
  EXPECT_TRUE(contains(e.what(), "cannot reach " + server_.url())) << e.what();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
}

TEST_F(ClientTest, ServerRestartIsSurvivedByTheNextCall) {
  Client client(config(), fast());
  client.get(kPodPath);
  server_.stop();
  server_.start();  // same port: the cached connection is dead, a new one is made
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
}

TEST_F(ClientTest, TokenFileIsReadOnEveryRequest) {
  server_.write_kubeconfig(dir_ / "kubeconfig", dir_ / "token");
  Client client(load_kubeconfig(dir_ / "kubeconfig"), fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");

  server_.set_token("rotated-token");
  EXPECT_EQ(api_error([&] { client.get(kPodPath); }).kind(), Kind::kUnauthorized);

  write_file(dir_ / "token", "rotated-token\n");  // the trailing newline is trimmed
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
}

TEST_F(ClientTest, UnreadableTokenFileIsNamed) {
  auto c = config();
  c.token.clear();
  c.token_file = (dir_ / "missing-token").string();
  Client client(c, fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_TRUE(contains(e.what(), "cannot read token file " + c.token_file)) << e.what();
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(ClientTest, KubeconfigWrittenByTheStandinWorks) {
  server_.write_kubeconfig(dir_ / "kubeconfig");
  Client client(load_kubeconfig(dir_ / "kubeconfig"), fast());
  EXPECT_EQ(client.get("/api/v1/namespaces/demo")["kind"], "Namespace");
}

TEST_F(ClientTest, CertificateAuthorityMismatchIsATlsFailure) {
  ApiServerStandin other;  // never started: only its (different) CA is used
  auto c = config();
  c.ca_pem = other.ca_pem();
  Client client(c, fast());
  const auto e = api_error([&] { client.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnreachable);
  EXPECT_TRUE(contains(e.what(), "certificate")) << e.what();
  EXPECT_TRUE(server_.requests().empty());  // no HTTP request ever left the client
}

TEST_F(ClientTest, CertificateAuthorityFromAFile) {
  write_file(dir_ / "ca.crt", server_.ca_pem());
  auto c = config();
  c.ca_pem.clear();
  c.ca_file = (dir_ / "ca.crt").string();
  Client client(c, fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
}

TEST_F(ClientTest, WithoutACertificateAuthorityTheServerIsNotTrusted) {
  auto c = config();
  c.ca_pem.clear();
  Client client(c, fast());
  EXPECT_EQ(api_error([&] { client.get(kPodPath); }).kind(), Kind::kUnreachable);
}

TEST_F(ClientTest, InsecureSkipTlsVerifyOnlyWhenConfigured) {
  auto c = config();
  c.ca_pem.clear();
  c.insecure_skip_tls_verify = true;
  Client client(c, fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
}

TEST_F(ClientTest, TlsServerNameIsVerifiedInsteadOfTheHost) {
  auto c = config();
  c.tls_server_name = "localhost";  // in the certificate; the connection still goes to 127.0.0.1
  Client good(c, fast());
  EXPECT_EQ(good.get(kPodPath)["metadata"]["name"], "web");

  c.tls_server_name = "api.wrong.example";  // not in the certificate
  Client bad(c, fast());
  const auto e = api_error([&] { bad.get(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kUnreachable);
  EXPECT_TRUE(contains(e.what(), "api.wrong.example")) << e.what();
}

TEST_F(ClientTest, ClientCertificateFromMemory) {
  const auto issued = server_.issue_client_certificate("alice");
  auto c = config();
  c.token.clear();
  c.client_cert_pem = issued.cert_pem;
  c.client_key_pem = issued.key_pem;
  Client client(c, fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
  EXPECT_EQ(server_.requests().back().user, "alice");
}

TEST_F(ClientTest, ClientCertificateFromFiles) {
  const auto issued = server_.issue_client_certificate("bob");
  write_file(dir_ / "client.crt", issued.cert_pem);
  write_file(dir_ / "client.key", issued.key_pem);
  auto c = config();
  c.token.clear();
  c.client_cert_file = (dir_ / "client.crt").string();
  c.client_key_file = (dir_ / "client.key").string();
  Client client(c, fast());
  EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
  EXPECT_EQ(server_.requests().back().user, "bob");
}

TEST_F(ClientTest, ClientCertificateOfAnotherCaIsNotAccepted) {
  ApiServerStandin other;
  const auto issued = other.issue_client_certificate("mallory");
  auto c = config();
  c.token.clear();
  c.client_cert_pem = issued.cert_pem;
  c.client_key_pem = issued.key_pem;
  Client client(c, fast());
  EXPECT_EQ(api_error([&] { client.get(kPodPath); }).kind(), Kind::kUnauthorized);
}

// A libcurl without the *_BLOB options gets the PEMs through private files that do not outlive
// the client.
TEST_F(ClientTest, PemFallbackThroughPrivateTemporaryFiles) {
  TempDir tmp;
  const char* old_tmpdir = std::getenv("TMPDIR");
  const std::string saved = old_tmpdir ? old_tmpdir : "";
  setenv("TMPDIR", tmp.path().c_str(), 1);
  detail::set_pem_blobs_disabled_for_testing(true);
  {
    const auto issued = server_.issue_client_certificate("carol");
    auto c = config();
    c.token.clear();
    c.client_cert_pem = issued.cert_pem;
    c.client_key_pem = issued.key_pem;
    Client client(c, fast());
    EXPECT_EQ(client.get(kPodPath)["metadata"]["name"], "web");
    EXPECT_EQ(server_.requests().back().user, "carol");
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
      ++files;
      const auto perms = std::filesystem::status(entry).permissions();
      EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
                std::filesystem::perms::none);
    }
    EXPECT_EQ(files, 3);  // CA, certificate, key
  }
  detail::set_pem_blobs_disabled_for_testing(false);
  if (old_tmpdir) {
    setenv("TMPDIR", saved.c_str(), 1);
  } else {
    unsetenv("TMPDIR");
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

TEST_F(ClientTest, MergePatchOfLabels) {
  Client client(config(), fast());
  const std::string before = client.get("/api/v1/namespaces/demo")["metadata"]["resourceVersion"];
  const auto patched = client.patch(
      "/api/v1/namespaces/demo",
      {{"metadata", {{"labels", {{"istio.io/dataplane-mode", "ambient"}, {"team", nullptr}}}}}},
      "application/merge-patch+json");
  EXPECT_EQ(patched["metadata"]["labels"]["istio.io/dataplane-mode"], "ambient");
  EXPECT_FALSE(patched["metadata"]["labels"].contains("team"));
  EXPECT_GT(std::stoull(patched["metadata"]["resourceVersion"].get<std::string>()),
            std::stoull(before));
  EXPECT_EQ(server_.get_object("Namespace", "", "demo").value()["metadata"]["labels"],
            patched["metadata"]["labels"]);
  const auto last = server_.requests().back();
  EXPECT_EQ(last.method, "PATCH");
  EXPECT_EQ(last.content_type, "application/merge-patch+json");
  EXPECT_EQ(nlohmann::json::parse(last.body)["metadata"]["labels"]["istio.io/dataplane-mode"],
            "ambient");
}

TEST_F(ClientTest, StrategicPatchOfThePodStatusSubresource) {
  Client client(config(), fast());
  const auto patched =
      client.patch(std::string(kPodPath) + "/status",
                   {{"metadata", {{"annotations", {{"ambient.istio.io/redirection", "enabled"}}}}}},
                   "application/strategic-merge-patch+json");
  EXPECT_EQ(patched["metadata"]["annotations"]["ambient.istio.io/redirection"], "enabled");
  EXPECT_EQ(client.get(kPodPath)["metadata"]["annotations"]["ambient.istio.io/redirection"],
            "enabled");
}

TEST_F(ClientTest, ListReturnsAListAndRejectsAnythingElse) {
  Client client(config(), fast());
  const auto pods = client.list("/api/v1/namespaces/demo/pods?labelSelector=app%3Dweb");
  EXPECT_EQ(pods["kind"], "PodList");
  ASSERT_EQ(pods["items"].size(), 1u);
  EXPECT_EQ(pods["items"][0]["metadata"]["name"], "web");
  EXPECT_FALSE(pods["metadata"]["resourceVersion"].get<std::string>().empty());

  const auto e = api_error([&] { client.list(kPodPath); });
  EXPECT_EQ(e.kind(), Kind::kBadResponse);
  EXPECT_TRUE(contains(e.what(), "not a List")) << e.what();
}

TEST(QueryEscape, EncodesEverythingButUnreservedCharacters) {
  EXPECT_EQ(query_escape("istio.io/dataplane-mode in (ambient,none)"),
            "istio.io%2Fdataplane-mode%20in%20%28ambient%2Cnone%29");
  EXPECT_EQ(query_escape("spec.nodeName=node-1,!a~b_c"), "spec.nodeName%3Dnode-1%2C%21a~b_c");
  EXPECT_EQ(query_escape(""), "");
}

TEST_F(ClientTest, EscapedSetBasedSelectorReachesTheServer) {
  Client client(config(), fast());
  const auto pods = client.list("/api/v1/pods?labelSelector=" + query_escape("app in (web, db)"));
  ASSERT_EQ(pods["items"].size(), 1u);
  EXPECT_EQ(pods["items"][0]["metadata"]["name"], "web");
}

TEST_F(ClientTest, UnparsableServerUrlIsReported) {
  auto c = config();
  c.server = "not a url";
  Client client(c, fast());
  EXPECT_EQ(api_error([&] { client.get(kPodPath); }).kind(), Kind::kUnreachable);
}

// libcurl is loaded on first use; a missing library is a clear kClientUnavailable. Run in a
// fresh process (threadsafe death-test style re-executes the binary) so that nothing has loaded
// libcurl yet.
TEST(ClientUnavailable, MissingLibcurlIsNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        detail::set_libcurl_name_for_testing("libcurl-not-installed.so.4");
        Kubeconfig c;
        c.server = "https://127.0.0.1:1";
        Client client(c, ClientOptions{});
        try {
          client.get("/api/v1/namespaces/demo");
        } catch (const ApiError& e) {
          const bool ok =
              e.kind() == Kind::kClientUnavailable &&
              std::string(e.what()).find("libcurl-not-installed.so.4") != std::string::npos &&
              std::string(e.what()).starts_with("GET /api/v1/namespaces/demo: ");
          std::exit(ok ? 0 : 3);
        }
        std::exit(4);
      },
      ::testing::ExitedWithCode(0), "");
}

// The point of the function table: nothing maps libcurl until the first request needs it.
TEST(ClientLoading, LibcurlIsMappedOnlyOnFirstUse) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto mapped = [] {
          return test::read_file("/proc/self/maps").find("libcurl") != std::string::npos;
        };
        const bool at_start = mapped();
        Kubeconfig c;
        c.server = "https://127.0.0.1:6443";
        Client client(c, ClientOptions{});  // constructing a client loads nothing either
        const bool after_construction = mapped();
        detail::curl_api();
        std::exit(!at_start && !after_construction && mapped() ? 0 : 5);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ambient::kube
