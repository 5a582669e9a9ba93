// ambient-cni: the chained CNI plugin. Only dispatch here; the flows live in plugin.cpp.
#include <unistd.h>

#include <iostream>
#include <iterator>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "plugin/plugin.h"

int main() {
  auto env = ambient::plugin::CniEnv::from_process();
  if (!env.command_set || env.command.empty()) {
    std::cerr << ambient::plugin::about_text() << '\n';
    return 0;
  }
  std::ios::sync_with_stdio(false);
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  ambient::plugin::PluginDeps deps;
  deps.log = std::make_shared<spdlog::logger>("ambient-cni",
                                              std::make_shared<spdlog::sinks::stderr_sink_st>());
  // UTC: local time would make every exec read /etc/localtime.
  deps.log->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l ambient-cni: %v", spdlog::pattern_time_type::utc);
  const int rc = ambient::plugin::run_plugin(env, input, std::cout, deps);
  std::cout.flush();
  return rc;
}
