// ztunnel-standin: the ZDS client for the demo and process-level tests. Logs every proxied
// connection as a JSON line (to --log or stdout) until SIGTERM/SIGINT.
#include <signal.h>

#include <fstream>
#include <iostream>
#include <mutex>

#include <CLI/CLI.hpp>

#include "tests/standins/ztunnel/ztunnel_standin.h"

int main(int argc, char** argv) {
  CLI::App app{"ztunnel stand-in: ZDS client + in-pod L4 proxy per pod"};
  std::string socket_path = "/var/run/ztunnel/ztunnel.sock";
  std::string log_path;
  app.add_option("--socket", socket_path, "the node agent's ZDS socket")->capture_default_str();
  app.add_option("--log", log_path, "append proxied connections (JSON lines) here");
  CLI11_PARSE(app, argc, argv);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::mutex out_mu;
  std::ofstream file;
  if (!log_path.empty()) file.open(log_path, std::ios::app);
  std::ostream& out = log_path.empty() ? std::cout : file;
  ambient::standins::ZtunnelStandin z({socket_path}, [&](const std::string& line) {
    std::lock_guard g(out_mu);
    out << line << std::endl;
  });
  z.start();
  int sig = 0;
  sigwait(&set, &sig);
  z.stop();
  return 0;
}
