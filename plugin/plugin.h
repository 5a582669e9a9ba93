// The plugin's verb flows. main() only builds the environment and calls run_plugin().
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string_view>

#include <spdlog/logger.h>

#include "config/plugin_config.h"
#include "plugin/agent_client.h"
#include "plugin/cni_env.h"
#include "plugin/pod_metadata.h"
#include "rundir/store.h"

namespace ambient::plugin {

struct PluginDeps {
  // The API, read by the plugin itself only when no node agent runs.
  std::function<std::unique_ptr<PodMetadataSource>(const config::PluginConfig&)> metadata =
      make_api_metadata_source;
  std::function<std::unique_ptr<AgentClient>(const config::PluginConfig&)> agent =
      [](const config::PluginConfig& c) {
        return make_socket_agent_client(rundir::RunDir(c.run_dir).agent_socket(),
                                        std::chrono::milliseconds(c.agent_timeout_ms));
      };
  std::shared_ptr<spdlog::logger> log;  // stderr; never stdout
};

// Runs one invocation. Writes the result or error object (and nothing else) to `out`; returns
// the process exit code. DEL always returns 0.
int run_plugin(const CniEnv& env, std::string_view stdin_text, std::ostream& out,
               const PluginDeps& deps);

// The text printed to stderr when run without CNI_COMMAND.
std::string about_text();

}  // namespace ambient::plugin
