// TokenRequester (install/plugin_token.h) against the API stand-in's TokenRequest, with a clock
// the test moves: what it asks for, when it renews, what it does when the API fails.
#include "install/plugin_token.h"

#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "install/errors.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::install {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::ApiFault;
using testing::ApiServerStandin;
using Clock = TokenRequester::Clock;

constexpr const char* kTokenPath =
    "/api/v1/namespaces/istio-system/serviceaccounts/ambient-cni-plugin/token";

class PluginToken : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiServerStandin>(api_options());
    api_->add_service_account("istio-system", "ambient-cni-plugin");
    api_->add_node("node-a", "u-1");
    api_->start();
    log_ = std::make_shared<spdlog::logger>(
        "token", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text_));
  }

  TokenRequestOptions options() const {
    TokenRequestOptions o;
    o.namespace_name = "istio-system";
    o.service_account = "ambient-cni-plugin";
    o.bound_node = "node-a";
    o.degraded = [this](const std::string& what) { degraded_.push_back(what); };
    return o;
  }
  std::unique_ptr<TokenRequester> requester(TokenRequestOptions o) {
    return std::make_unique<TokenRequester>(
        std::move(o),
        [this] {
          kube::Kubeconfig k;
          k.server = api_->url();
          k.ca_pem = api_->ca_pem();
          k.token = api_->token();
          kube::ClientOptions c;
          c.deadline = 1500ms;
          c.initial_backoff = 10ms;
          return kube::Client(k, c);
        },
        log_, [this] { return now_; });
  }
  size_t token_requests() const {
    size_t n = 0;
    for (const auto& r : api_->requests()) n += r.path == kTokenPath && r.method == "POST";
    return n;
  }
  std::string log() const { return log_text_.str(); }

  virtual ApiServerStandin::Options api_options() const { return {}; }

  std::unique_ptr<ApiServerStandin> api_;
  mutable std::vector<std::string> degraded_;  // what the requester reported
  std::ostringstream log_text_;
  std::shared_ptr<spdlog::logger> log_;
  // Close to the real time: the stand-in stamps expirations with its own clock.
  Clock::time_point now_ = Clock::now();
};

TEST_F(PluginToken, AsksForABoundTokenOnceAndCachesIt) {
  auto r = requester(options());
  EXPECT_EQ(r->requests(), 0u);  // nothing before the first use
  const auto token = r->token();
  EXPECT_EQ(r->token(), token);
  EXPECT_EQ(token_requests(), 1u);
  const auto issued = api_->issued_tokens();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].token, token);
  EXPECT_EQ(issued[0].expiration_seconds, 3600);
  EXPECT_EQ(issued[0].bound_kind, "Node");
  EXPECT_EQ(issued[0].bound_uid, "u-1");
  for (const auto& req : api_->requests()) {
    if (req.path != kTokenPath) continue;
    const auto body = json::parse(req.body);
    EXPECT_EQ(body["kind"], "TokenRequest");
    EXPECT_EQ(body["apiVersion"], "authentication.k8s.io/v1");
    EXPECT_EQ(body["spec"]["boundObjectRef"],
              json({{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "node-a"}}));
  }
  EXPECT_EQ(log().find(token), std::string::npos) << "the token was logged";
  EXPECT_NE(log().find("bound to node node-a"), std::string::npos) << log();
}

TEST_F(PluginToken, RenewsOnceFourFifthsOfTheGrantedLifetimeHavePassed) {
  auto r = requester(options());
  const auto first = r->token();
  const auto start = now_;
  ASSERT_TRUE(r->renew_at());
  // The stand-in stamps whole seconds: renewal is 80 % of what it granted, ± 1 s.
  EXPECT_NEAR(std::chrono::duration<double>(*r->renew_at() - start).count(), 2880, 1.0);
  now_ = start + 2870s;
  EXPECT_EQ(r->token(), first);
  EXPECT_EQ(token_requests(), 1u);
  now_ = start + 2890s;
  const auto second = r->token();
  EXPECT_NE(second, first);
  EXPECT_EQ(token_requests(), 2u);
  EXPECT_EQ(r->token(), second);
}

// A server whose --service-account-max-token-expiration is 20 minutes.
class PluginTokenCapped : public PluginToken {
 protected:
  ApiServerStandin::Options api_options() const override {
    ApiServerStandin::Options o;
    o.max_token_seconds = 1200;
    return o;
  }
};

TEST_F(PluginTokenCapped, AShorterLifetimeFromTheServerIsWhatCounts) {
  auto r = requester(options());
  r->token();
  ASSERT_TRUE(r->renew_at());
  EXPECT_NEAR(std::chrono::duration<double>(*r->renew_at() - now_).count(), 960, 1.0);
}

TEST_F(PluginToken, AFailedRenewalKeepsTheValidTokenAndTriesAgain) {
  auto r = requester(options());
  const auto first = r->token();
  api_->add_fault(ApiFault{.path_prefix = kTokenPath, .status = 503, .times = 20});
  now_ += 3000s;  // past renewal, before expiry
  EXPECT_EQ(r->token(), first);
  EXPECT_NE(log().find("keeping the current token"), std::string::npos) << log();
  EXPECT_EQ(degraded_, std::vector<std::string>{"plugin_token_renewal_failed"});
  api_->clear_faults();
  const auto second = r->token();  // the next pass renews
  EXPECT_NE(second, first);
  EXPECT_EQ(log().find(first), std::string::npos) << "the token was logged";
  EXPECT_EQ(log().find(second), std::string::npos) << "the token was logged";
}

TEST_F(PluginToken, NoTokenAtAllIsAnErrorThatNamesTheServiceAccountAndTheAnswer) {
  api_->add_fault(ApiFault{.path_prefix = kTokenPath, .status = 403});
  auto r = requester(options());
  try {
    r->token();
    FAIL() << "no error";
  } catch (const InstallError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("serviceaccount istio-system/ambient-cni-plugin"), std::string::npos)
        << what;
    EXPECT_NE(what.find("403"), std::string::npos) << what;
  }
  // An expired token is no fallback either.
  api_->clear_faults();
  r->token();
  api_->add_fault(ApiFault{.path_prefix = kTokenPath, .status = 503});
  now_ += 3700s;
  EXPECT_THROW(r->token(), InstallError);
  EXPECT_EQ(degraded_,
            (std::vector<std::string>{"plugin_token_unavailable", "plugin_token_unavailable"}));
}

TEST_F(PluginToken, ABindingToANodeThatIsNotThereIsRefusedByTheApi) {
  auto o = options();
  o.bound_node = "node-b";
  try {
    requester(o)->token();
    FAIL() << "no error";
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(api_->issued_tokens().empty());
}

// The real API binds a token to a pod only for the service account that pod runs as: the plugin's
// service account can never be bound to the agent's pod (what a real kube-apiserver answered).
TEST_F(PluginToken, TheStandInRefusesAPodBindingForAnotherServiceAccountAsTheApiDoes) {
  api_->put({{"kind", "Pod"},
             {"metadata", {{"name", "agent"}, {"namespace", "istio-system"}}},
             {"spec", {{"serviceAccountName", "ambient-cni-node"}}}});
  kube::Kubeconfig k;
  k.server = api_->url();
  k.ca_pem = api_->ca_pem();
  k.token = api_->token();
  kube::Client c(k, {});
  try {
    c.create(kTokenPath, {{"apiVersion", "authentication.k8s.io/v1"},
                          {"kind", "TokenRequest"},
                          {"spec", {{"boundObjectRef", {{"kind", "Pod"}, {"name", "agent"}}}}}});
    FAIL() << "bound";
  } catch (const kube::ApiError& e) {
    EXPECT_EQ(e.http_status(), 400);
    EXPECT_NE(std::string(e.what()).find("to pod running with different serviceaccount name"),
              std::string::npos)
        << e.what();
  }
}

// Node binding off (the ServiceAccountTokenNodeBinding gate, off before Kubernetes 1.31).
class PluginTokenNoNodeBinding : public PluginToken {
 protected:
  ApiServerStandin::Options api_options() const override {
    ApiServerStandin::Options o;
    o.node_token_binding = false;
    return o;
  }
};

TEST_F(PluginTokenNoNodeBinding, FallsBackToAnUnboundTokenOnceAndSaysSo) {
  auto r = requester(options());
  const auto first = r->token();
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(token_requests(), 2u);  // bound (refused), then unbound
  ASSERT_EQ(api_->issued_tokens().size(), 1u);
  EXPECT_EQ(api_->issued_tokens()[0].bound_kind, "");
  EXPECT_NE(log().find("cannot bind tokens to nodes"), std::string::npos) << log();
  now_ += 3000s;  // the renewal does not ask for a binding again
  EXPECT_NE(r->token(), first);
  EXPECT_EQ(token_requests(), 3u);
  EXPECT_TRUE(degraded_.empty());
}

TEST_F(PluginToken, OptionsTheApiWouldRefuseAreNamedBeforeAnyRequest) {
  auto short_life = options();
  short_life.lifetime = 599s;
  EXPECT_THROW(requester(short_life), InstallError);
  auto nameless = options();
  nameless.service_account.clear();
  EXPECT_THROW(requester(nameless), InstallError);
  EXPECT_EQ(token_requests(), 0u);
}

}  // namespace
}  // namespace ambient::install
