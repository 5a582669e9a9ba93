#include "kube/kubeconfig.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "kube/base64.h"
#include "tests/kube/test_util.h"

namespace ambient::kube {
namespace {

using test::TempDir;
using test::write_file;

// Expects parse to throw a KubeconfigError whose message contains every `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no KubeconfigError";
  } catch (const KubeconfigError& e) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << part << "\"";
    }
  }
}

// A kubeconfig with two of everything, so that following current-context is really tested.
std::string two_contexts(const std::string& current, const std::string& cluster_extra,
                         const std::string& user_extra) {
  return "apiVersion: v1\n"
         "kind: Config\n"
         "current-context: " +
         current +
         "\n"
         "clusters:\n"
         "- name: other\n"
         "  cluster:\n"
         "    server: https://other.example:6443\n"
         "- name: main\n"
         "  cluster:\n"
         "    server: https://10.0.0.1:6443/\n" +
         cluster_extra +
         "contexts:\n"
         "- name: other-ctx\n"
         "  context: {cluster: other, user: other-user}\n"
         "- name: main-ctx\n"
         "  context:\n"
         "    cluster: main\n"
         "    user: admin\n"
         "    namespace: demo\n"
         "users:\n"
         "- name: other-user\n"
         "  user: {token: other-token}\n"
         "- name: admin\n"
         "  user:\n" +
         user_extra;
}

class KubeconfigTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(KubeconfigTest, InlineFieldsOfTheCurrentContext) {
  const std::string ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
  const std::string cert = "client cert pem";
  const std::string key = "client key pem";
  const auto config =
      parse_kubeconfig(two_contexts("main-ctx",
                                    "    certificate-authority-data: " + base64_encode(ca) +
                                        "\n"
                                        "    tls-server-name: api.internal\n",
                                    "    token: abc.def\n"
                                    "    client-certificate-data: " +
                                        base64_encode(cert) +
                                        "\n"
                                        "    client-key-data: " +
                                        base64_encode(key) + "\n"),
                       dir_.path());
  EXPECT_EQ(config.server, "https://10.0.0.1:6443");  // trailing slash dropped
  EXPECT_EQ(config.ca_pem, ca);
  EXPECT_EQ(config.ca_file, "");
  EXPECT_EQ(config.tls_server_name, "api.internal");
  EXPECT_FALSE(config.insecure_skip_tls_verify);
  EXPECT_EQ(config.token, "abc.def");
  EXPECT_EQ(config.token_file, "");
  EXPECT_EQ(config.client_cert_pem, cert);
  EXPECT_EQ(config.client_key_pem, key);
  EXPECT_EQ(config.client_cert_file, "");
  EXPECT_EQ(config.client_key_file, "");
}

TEST_F(KubeconfigTest, OtherContextSelectsOtherClusterAndUser) {
  const auto config =
      parse_kubeconfig(two_contexts("other-ctx", "", "    token: x\n"), dir_.path());
  EXPECT_EQ(config.server, "https://other.example:6443");
  EXPECT_EQ(config.token, "other-token");
}

// kubectl's --context: another context than the current one, with its namespace.
TEST_F(KubeconfigTest, AChosenContextWinsOverTheCurrentOneAndBringsItsNamespace) {
  const auto yaml = two_contexts("other-ctx", "", "    token: main-token\n");
  const auto current = parse_kubeconfig(yaml, dir_.path(), "kubeconfig x");
  EXPECT_EQ(current.context, "other-ctx");
  EXPECT_EQ(current.namespace_, "");
  const auto chosen = parse_kubeconfig(yaml, dir_.path(), "kubeconfig x", "main-ctx");
  EXPECT_EQ(chosen.context, "main-ctx");
  EXPECT_EQ(chosen.server, "https://10.0.0.1:6443");
  EXPECT_EQ(chosen.token, "main-token");
  EXPECT_EQ(chosen.namespace_, "demo");
  expect_error([&] { parse_kubeconfig(yaml, dir_.path(), "kubeconfig x", "nope"); },
               {"kubeconfig x", "contexts: no entry named \"nope\""});
  // A chosen context needs no current-context at all.
  std::string without = yaml;
  without.erase(
      without.find("current-context"),
      without.find('\n', without.find("current-context")) - without.find("current-context") + 1);
  EXPECT_EQ(parse_kubeconfig(without, dir_.path(), "k", "main-ctx").token, "main-token");
  expect_error([&] { parse_kubeconfig(without, dir_.path(), "k"); },
               {"current-context is not set"});
  write_file(dir_ / "config", yaml);
  EXPECT_EQ(load_kubeconfig(dir_ / "config", "main-ctx").namespace_, "demo");
}

// A credential plugin (gke-gcloud-auth-plugin, aws eks get-token…), for an operator's CLI only.
TEST_F(KubeconfigTest, AnExecPluginIsRunAsKubectlRunsItWhenTheCallerAllowsIt) {
  write_file(
      dir_ / "bin/auth-plugin",
      "#!/bin/sh\n"
      "printf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$(dirname \"$0\")/../exec-info\"\n"
      "printf '%s %s %s' \"$1\" \"$2\" \"$PLUGIN_MODE\" > \"$(dirname \"$0\")/../seen\"\n"
      "read -r x && echo 'stdin was not /dev/null' >&2 && exit 9\n"
      "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
      "\"status\":{\"token\":\"minted-token\",\"expirationTimestamp\":"
      "\"2099-01-01T00:00:00Z\"}}'\n");
  std::filesystem::permissions(dir_ / "bin/auth-plugin", std::filesystem::perms::owner_all);
  const std::string user =
      "    exec:\n"
      "      apiVersion: client.authentication.k8s.io/v1\n"
      "      command: ./bin/auth-plugin\n"
      "      args: [get-token, --cluster=main]\n"
      "      env: [{name: PLUGIN_MODE, value: quiet}]\n"
      "      provideClusterInfo: true\n"
      "      installHint: install it with your cloud's CLI\n";
  const auto yaml = two_contexts("main-ctx", "", user);
  // Everything but an operator's CLI refuses it: a file must never make us run a program.
  expect_error([&] { parse_kubeconfig(yaml, dir_.path(), "kubeconfig k"); },
               {"users[name=admin].user.exec is not supported"});
  auto config = parse_kubeconfig(yaml, dir_.path(), "kubeconfig k", "", /*allow_exec=*/true);
  ASSERT_TRUE(config.exec.has_value());
  EXPECT_EQ(config.exec->command, (dir_ / "bin/auth-plugin").string());  // relative to the file
  EXPECT_EQ(config.token, "");
  run_exec_plugin(config);
  EXPECT_EQ(config.token, "minted-token");
  EXPECT_FALSE(config.exec.has_value());
  EXPECT_EQ(test::read_file(dir_ / "seen"), "get-token --cluster=main quiet");
  EXPECT_EQ(test::read_file(dir_ / "exec-info"),
            R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":)"
            R"({"interactive":false,"cluster":{"server":"https://10.0.0.1:6443"}}})");
}

TEST_F(KubeconfigTest, AnExecPluginThatFailsIsNamedWithWhatWentWrong) {
  const auto with = [&](const std::string& command, const std::string& extra = "") {
    auto c =
        parse_kubeconfig(two_contexts("main-ctx", "",
                                      "    exec:\n"
                                      "      apiVersion: client.authentication.k8s.io/v1beta1\n"
                                      "      command: " +
                                          command +
                                          "\n"
                                          "      installHint: see https://example/install\n" +
                                          extra),
                         dir_.path(), "kubeconfig k", "", true);
    return c;
  };
  auto missing = with("no-such-auth-plugin-here");
  expect_error([&] { run_exec_plugin(missing); },
               {"users[name=admin].user.exec (no-such-auth-plugin-here): cannot run it",
                "see https://example/install"});
  write_file(dir_ / "fail", "#!/bin/sh\nexit 3\n");
  write_file(dir_ / "garbage", "#!/bin/sh\necho not json at all: [\n");
  write_file(dir_ / "wrongversion",
             "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
             "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}'\n");
  write_file(dir_ / "empty",
             "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\","
             "\"kind\":\"ExecCredential\",\"status\":{}}'\n");
  write_file(dir_ / "slow", "#!/bin/sh\nexec sleep 30\n");
  for (const char* f : {"fail", "garbage", "wrongversion", "empty", "slow"}) {
    std::filesystem::permissions(dir_ / f, std::filesystem::perms::owner_all);
  }
  auto fail = with("./fail");
  expect_error([&] { run_exec_plugin(fail); }, {"exited with status 3"});
  auto garbage = with("./garbage");
  expect_error([&] { run_exec_plugin(garbage); },
               {"(" + (dir_ / "garbage").string() + ")", "its answer is not JSON"});
  auto wrong = with("./wrongversion");
  expect_error([&] { run_exec_plugin(wrong); },
               {"its answer's apiVersion is not client.authentication.k8s.io/v1beta1"});
  auto empty = with("./empty");
  expect_error([&] { run_exec_plugin(empty); }, {"neither status.token nor"});
  auto slow = with("./slow");
  expect_error([&] { run_exec_plugin(slow, std::chrono::milliseconds(300)); },
               {"no answer within 300 ms"});
  expect_error(
      [&] {
        parse_kubeconfig(
            two_contexts("main-ctx", "", "    exec:\n      apiVersion: v9\n      command: x\n"),
            dir_.path(), "kubeconfig k", "", true);
      },
      {"users[name=admin].user.exec.apiVersion \"v9\" is not client.authentication.k8s.io/v1"});
}

TEST_F(KubeconfigTest, RelativeFilePathsResolveAgainstTheBaseDirectory) {
  write_file(dir_ / "pki/ca.crt", "ca");
  write_file(dir_ / "pki/client.crt", "cert");
  write_file(dir_ / "pki/client.key", "key");
  write_file(dir_ / "token", "tok\n");
  const auto config =
      parse_kubeconfig(two_contexts("main-ctx", "    certificate-authority: pki/ca.crt\n",
                                    "    tokenFile: ./token\n"
                                    "    client-certificate: pki/client.crt\n"
                                    "    client-key: pki/../pki/client.key\n"),
                       dir_.path());
  EXPECT_EQ(config.ca_file, (dir_ / "pki/ca.crt").string());
  EXPECT_EQ(config.token_file, (dir_ / "token").string());
  EXPECT_EQ(config.client_cert_file, (dir_ / "pki/client.crt").string());
  EXPECT_EQ(config.client_key_file, (dir_ / "pki/client.key").string());
  EXPECT_EQ(config.ca_pem, "");
  EXPECT_EQ(config.token, "");
}

TEST_F(KubeconfigTest, AbsoluteFilePathsStayAsTheyAre) {
  TempDir elsewhere;
  write_file(elsewhere / "ca.crt", "ca");
  const auto config = parse_kubeconfig(
      two_contexts("main-ctx",
                   "    certificate-authority: " + (elsewhere / "ca.crt").string() + "\n",
                   "    token: t\n"),
      dir_.path());
  EXPECT_EQ(config.ca_file, (elsewhere / "ca.crt").string());
}

TEST_F(KubeconfigTest, InsecureSkipTlsVerifyOnlyWhenSaid) {
  auto config = parse_kubeconfig(
      two_contexts("main-ctx", "    insecure-skip-tls-verify: true\n", "    token: t\n"),
      dir_.path());
  EXPECT_TRUE(config.insecure_skip_tls_verify);
  config = parse_kubeconfig(two_contexts("main-ctx", "", "    token: t\n"), dir_.path());
  EXPECT_FALSE(config.insecure_skip_tls_verify);
}

TEST_F(KubeconfigTest, ContextWithoutUserIsAnonymous) {
  const auto config = parse_kubeconfig(
      "current-context: c\n"
      "contexts: [{name: c, context: {cluster: k}}]\n"
      "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:8080'}}]\n",
      dir_.path());
  EXPECT_EQ(config.server, "http://127.0.0.1:8080");
  EXPECT_EQ(config.token, "");
  EXPECT_EQ(config.token_file, "");
}

TEST_F(KubeconfigTest, LoadReadsTheFileAndResolvesPathsNextToIt) {
  write_file(dir_ / "conf/ca.crt", "ca");
  write_file(dir_ / "conf/kubeconfig",
             two_contexts("main-ctx", "    certificate-authority: ca.crt\n", "    token: t\n"));
  const auto config = load_kubeconfig(dir_ / "conf/kubeconfig");
  EXPECT_EQ(config.ca_file, (dir_ / "conf/ca.crt").string());
  EXPECT_EQ(config.token, "t");
}

TEST_F(KubeconfigTest, LoadNamesAMissingFile) {
  const auto path = dir_ / "nope";
  expect_error([&] { load_kubeconfig(path); },
               {"kubeconfig " + path.string(), "cannot read", "No such file"});
}

TEST_F(KubeconfigTest, LoadErrorsNameTheFile) {
  write_file(dir_ / "kc", "current-context: x\n");
  expect_error([&] { load_kubeconfig(dir_ / "kc"); },
               {"kubeconfig " + (dir_ / "kc").string() + ": ", "contexts"});
}

TEST_F(KubeconfigTest, MissingCurrentContext) {
  expect_error([&] { parse_kubeconfig("clusters: []\n", dir_.path()); },
               {"current-context is not set"});
  expect_error([&] { parse_kubeconfig("current-context: ''\nclusters: []\n", dir_.path()); },
               {"current-context is not set"});
}

TEST_F(KubeconfigTest, CurrentContextNamesNoContext) {
  expect_error([&] { parse_kubeconfig(two_contexts("ghost", "", "    token: t\n"), dir_.path()); },
               {"contexts: no entry named \"ghost\""});
}

TEST_F(KubeconfigTest, ContextWithoutCluster) {
  expect_error(
      [&] {
        parse_kubeconfig("current-context: c\ncontexts: [{name: c, context: {user: u}}]\n",
                         dir_.path());
      },
      {"contexts[name=c].context.cluster is not set"});
}

TEST_F(KubeconfigTest, ContextNamesMissingClusterOrUser) {
  expect_error(
      [&] {
        parse_kubeconfig("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n",
                         dir_.path());
      },
      {"clusters: no entry named \"k\""});
  expect_error(
      [&] {
        parse_kubeconfig(
            "current-context: c\n"
            "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "clusters: [{name: k, cluster: {server: 'https://a'}}]\n",
            dir_.path());
      },
      {"users: no entry named \"u\""});
}

TEST_F(KubeconfigTest, ServerMissingOrNotAUrl) {
  expect_error(
      [&] {
        parse_kubeconfig(
            "current-context: c\n"
            "contexts: [{name: c, context: {cluster: k}}]\n"
            "clusters: [{name: k, cluster: {insecure-skip-tls-verify: true}}]\n",
            dir_.path());
      },
      {"clusters[name=k].cluster.server is not set"});
  expect_error(
      [&] {
        parse_kubeconfig(
            "current-context: c\n"
            "contexts: [{name: c, context: {cluster: k}}]\n"
            "clusters: [{name: k, cluster: {server: '10.0.0.1:6443'}}]\n",
            dir_.path());
      },
      {"clusters[name=k].cluster.server", "is not an http(s) URL"});
}

TEST_F(KubeconfigTest, BadBase64NamesTheField) {
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "    certificate-authority-data: not*base64\n",
                                      "    token: t\n"),
                         dir_.path());
      },
      {"clusters[name=main].cluster.certificate-authority-data is not valid base64"});
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "",
                                      "    client-certificate-data: " + base64_encode("c") +
                                          "\n"
                                          "    client-key-data: abc\n"),
                         dir_.path());
      },
      {"users[name=admin].user.client-key-data is not valid base64"});
}

TEST_F(KubeconfigTest, MissingReferencedFileNamesFieldAndPath) {
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "    certificate-authority: missing/ca.crt\n",
                                      "    token: t\n"),
                         dir_.path());
      },
      {"clusters[name=main].cluster.certificate-authority: ", (dir_ / "missing/ca.crt").string()});
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "", "    tokenFile: /nonexistent/token\n"),
                         dir_.path());
      },
      {"users[name=admin].user.tokenFile: /nonexistent/token"});
}

TEST_F(KubeconfigTest, BadYamlIsReportedWithItsPosition) {
  expect_error([&] { parse_kubeconfig("current-context: [unclosed\n", dir_.path()); },
               {"kubeconfig: not valid YAML", "line"});
  expect_error([&] { parse_kubeconfig("- just\n- a list\n", dir_.path()); },
               {"is not a YAML mapping"});
  expect_error([&] { parse_kubeconfig("", dir_.path()); }, {"is empty"});
}

TEST_F(KubeconfigTest, WrongTypesNameTheField) {
  expect_error(
      [&] { parse_kubeconfig(two_contexts("main-ctx", "", "    token: [a, b]\n"), dir_.path()); },
      {"users[name=admin].user.token must be a string"});
  expect_error(
      [&] {
        parse_kubeconfig(
            two_contexts("main-ctx", "    insecure-skip-tls-verify: maybe\n", "    token: t\n"),
            dir_.path());
      },
      {"clusters[name=main].cluster.insecure-skip-tls-verify must be true or false"});
  expect_error([&] { parse_kubeconfig("current-context: c\ncontexts: {}\n", dir_.path()); },
               {"contexts must be a list"});
}

TEST_F(KubeconfigTest, InsecureWithACertificateAuthorityIsRejected) {
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx",
                                      "    insecure-skip-tls-verify: true\n"
                                      "    certificate-authority-data: " +
                                          base64_encode("ca") + "\n",
                                      "    token: t\n"),
                         dir_.path());
      },
      {"insecure-skip-tls-verify cannot be combined"});
}

TEST_F(KubeconfigTest, UnsupportedAuthenticationIsNamed) {
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "", "    exec: {command: aws}\n"), dir_.path());
      },
      {"users[name=admin].user.exec is not supported"});
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "", "    auth-provider: {name: gcp}\n"),
                         dir_.path());
      },
      {"users[name=admin].user.auth-provider is not supported"});
}

TEST_F(KubeconfigTest, CertificateAndKeyComeTogether) {
  expect_error(
      [&] {
        parse_kubeconfig(two_contexts("main-ctx", "",
                                      "    client-certificate-data: " + base64_encode("c") + "\n"),
                         dir_.path());
      },
      {"users[name=admin].user: client-certificate without client-key"});
  write_file(dir_ / "k", "key");
  expect_error(
      [&] { parse_kubeconfig(two_contexts("main-ctx", "", "    client-key: k\n"), dir_.path()); },
      {"client-key without client-certificate"});
}

// in_cluster_config reads the process environment; each test sets exactly what it needs.
class InClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir_ / "ca.crt", "ca");
    write_file(dir_ / "token", "sa-token");
  }
  void TearDown() override {
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
  }
  TempDir dir_;
};

TEST_F(InClusterTest, ServiceEnvironmentAndServiceAccountFiles) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  const auto config = in_cluster_config(dir_.path());
  EXPECT_EQ(config.server, "https://10.96.0.1:443");
  EXPECT_EQ(config.ca_file, (dir_ / "ca.crt").string());
  EXPECT_EQ(config.token_file, (dir_ / "token").string());
  EXPECT_EQ(config.token, "");  // read per request from token_file, so rotation works
  EXPECT_FALSE(config.insecure_skip_tls_verify);
}

TEST_F(InClusterTest, Ipv6HostGetsBrackets) {
  setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
  EXPECT_EQ(in_cluster_config(dir_.path()).server, "https://[fd00:10:96::1]:6443");
}

TEST_F(InClusterTest, MissingEnvironment) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  expect_error([&] { in_cluster_config(dir_.path()); },
               {"in-cluster config", "KUBERNETES_SERVICE_PORT"});
}

TEST_F(InClusterTest, BadPort) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "https", 1);
  expect_error([&] { in_cluster_config(dir_.path()); },
               {"KUBERNETES_SERVICE_PORT \"https\" is not a port number"});
}

TEST_F(InClusterTest, MissingServiceAccountFileIsNamed) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  std::filesystem::remove(dir_ / "token");
  expect_error([&] { in_cluster_config(dir_.path()); }, {(dir_ / "token").string()});
}

}  // namespace
}  // namespace ambient::kube
