// ADD of an excluded-namespace pod against the exec floor and a Go no-op chained plugin
// (Debian's portmap without mappings), interleaved in one run. Medians and ratios; never a
// pass/fail threshold.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/process.h"

namespace {

using ambient::testing::Execution;

struct Subject {
  std::string name;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string input;
  std::vector<double> ms;
};

std::string prev_result() {
  return R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/bench"}],)"
         R"("ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":0}],"dns":{}})";
}

std::vector<std::string> cni_env(const std::string& netns, const std::string& args) {
  return {"CNI_COMMAND=ADD",
          "CNI_CONTAINERID=bench0001",
          "CNI_NETNS=" + netns,
          "CNI_IFNAME=eth0",
          "CNI_ARGS=" + args,
          "CNI_PATH=/opt/cni/bin:/usr/lib/cni",
          "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plugin exec benchmark: excluded-namespace ADD vs the exec floor vs Go portmap"};
  std::string plugin, floor, portmap = "/usr/lib/cni/portmap", json_out, md_out, netns;
  int runs = 300;
  app.add_option("--plugin", plugin, "ambient-cni binary")->required();
  app.add_option("--floor", floor, "exec-floor binary")->required();
  std::string floor_dynamic;
  app.add_option("--floor-dynamic", floor_dynamic, "the exec floor linked like the plugin");
  app.add_option("--portmap", portmap, "Go reference plugin (no-op ADD)");
  app.add_option("--netns", netns, "an existing network namespace path (not ours)")->required();
  app.add_option("--runs", runs, "executions per subject");
  app.add_option("--json", json_out, "write results as JSON");
  app.add_option("--markdown", md_out, "write a markdown table");
  CLI11_PARSE(app, argc, argv);

  const std::string args_excluded =
      "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-abc;K8S_POD_UID=u1";
  const std::string conf =
      R"({"cniVersion":"1.0.0","name":"k8s","type":"ambient-cni","prevResult":)" + prev_result() +
      "}";
  const std::string portmap_conf =
      R"({"cniVersion":"1.0.0","name":"k8s","type":"portmap","capabilities":{"portMappings":true},"prevResult":)" +
      prev_result() + "}";

  std::vector<Subject> subjects = {
      {"exec floor (static C++ echo)", {floor}, cni_env(netns, args_excluded), conf, {}},
      {"ambient-cni ADD, excluded namespace", {plugin}, cni_env(netns, args_excluded), conf, {}},
      {"Go portmap ADD, no mappings", {portmap}, cni_env(netns, args_excluded), portmap_conf, {}},
  };
  if (!floor_dynamic.empty()) {
    subjects.insert(subjects.begin() + 1,
                    Subject{"exec floor, dynamic libc (linked like the plugin)",
                            {floor_dynamic},
                            cni_env(netns, args_excluded),
                            conf,
                            {}});
  }
  for (auto& s : subjects) {  // warm the page cache and check each subject works
    const Execution x = ambient::testing::run(s.argv, s.env, s.input);
    if (x.exit_code != 0) {
      std::cerr << s.name << " failed (exit " << x.exit_code << "): " << x.out << x.err << '\n';
      return 1;
    }
  }
  for (int i = 0; i < runs; ++i) {
    for (auto& s : subjects) {  // interleaved, so machine noise hits every subject alike
      const Execution x = ambient::testing::run(s.argv, s.env, s.input);
      s.ms.push_back(std::chrono::duration<double, std::milli>(x.elapsed).count());
    }
  }

  const double floor_ms = ambient::testing::median_ms(subjects[0].ms);
  nlohmann::json j = nlohmann::json::array();
  // No RSS column: a child's ru_maxrss starts from this process's image (node_bench measures
  // memory through the static rss_probe instead).
  std::string md = "| subject | median ms | p99 ms | × exec floor |\n|---|---|---|---|\n";
  for (const auto& s : subjects) {
    const double med = ambient::testing::median_ms(s.ms);
    const double p99 = ambient::testing::percentile_ms(s.ms, 99);
    j.push_back({{"subject", s.name},
                 {"median_ms", med},
                 {"p99_ms", p99},
                 {"ratio_to_floor", med / floor_ms},
                 {"runs", runs}});
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %.2f | %.2f | %.2f |\n", s.name.c_str(), med, p99,
                  med / floor_ms);
    md += line;
  }
  std::cout << md;
  if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << '\n';
  if (!md_out.empty()) std::ofstream(md_out) << md;
  return 0;
}
