// kube-apiserver-standin: the API stand-in as a process, for the demo, kubectl and tests that
// exec binaries. Runs until SIGTERM or SIGINT.
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "tests/standins/apiserver/apiserver.h"

namespace {

void usage(std::ostream& out) {
  out << "usage: kube-apiserver-standin [--port N] [--bind ADDR] [--token T]\n"
         "         [--objects FILE.json] [--kubeconfig-out PATH] [--ready-file PATH]\n"
         "         [--log-requests]\n"
         "  --port N              listen port; 0 (default) picks a free one\n"
         "  --bind ADDR           listen address (default 127.0.0.1)\n"
         "  --token T             the bearer token clients must send (default test-token)\n"
         "  --objects FILE        a JSON array or List of Namespaces/Pods to preload\n"
         "  --kubeconfig-out PATH write a kubeconfig (inline CA and token) for clients\n"
         "  --ready-file PATH     written with the port once the server accepts connections\n"
         "  --log-requests        one line per request on stderr\n";
}

}  // namespace

int main(int argc, char** argv) {
  ambient::testing::ApiServerStandin::Options options;
  std::string objects_file, kubeconfig_out, ready_file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "kube-apiserver-standin: " << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--port") {
      const std::string text = value();
      char* end = nullptr;
      const long port = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || port < 0 || port > 65535) {
        std::cerr << "kube-apiserver-standin: --port: \"" << text << "\" is not a port\n";
        return 2;
      }
      options.port = static_cast<int>(port);
    } else if (arg == "--bind") {
      options.bind_address = value();
    } else if (arg == "--token") {
      options.token = value();
    } else if (arg == "--objects") {
      objects_file = value();
    } else if (arg == "--kubeconfig-out") {
      kubeconfig_out = value();
    } else if (arg == "--ready-file") {
      ready_file = value();
    } else if (arg == "--log-requests") {
      options.log_requests = true;
    } else if (arg == "--help" || arg == "-h") {
      usage(std::cout);
      return 0;
    } else {
      std::cerr << "kube-apiserver-standin: unknown argument " << arg << "\n";
      usage(std::cerr);
      return 2;
    }
  }

  // Block the stop signals before any thread exists, so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    ambient::testing::ApiServerStandin server(options);
    if (!objects_file.empty()) {
      std::ifstream in(objects_file);
      if (!in) throw std::runtime_error("cannot read " + objects_file);
      const auto objects = nlohmann::json::parse(in, nullptr, false);
      if (objects.is_discarded()) throw std::runtime_error(objects_file + " is not JSON");
      server.load_objects(objects);
    }
    server.start();
    if (!kubeconfig_out.empty()) server.write_kubeconfig(kubeconfig_out);
    if (!ready_file.empty()) {
      // Written last and atomically: a reader that sees the file can connect.
      const std::string temp = ready_file + ".tmp";
      std::ofstream(temp) << server.port() << "\n";
      std::filesystem::rename(temp, ready_file);
    }
    std::cerr << "kube-apiserver-standin: serving " << server.url() << "\n";
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    std::cerr << "kube-apiserver-standin: " << strsignal(signal_number) << ", stopping\n";
    server.stop();
  } catch (const std::exception& e) {
    std::cerr << "kube-apiserver-standin: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
