#include "tests/runtime/cri_client.h"

#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>

#include "cri.grpc.pb.h"

namespace ambient::runtime_test {
namespace {

namespace cri = ::runtime::v1;

void check(const grpc::Status& status, const std::string& what) {
  if (!status.ok()) {
    throw CriError(static_cast<int>(status.error_code()), what + ": " + status.error_message());
  }
}

// containerd's verbose sandbox info: {"pid": N, "runtimeSpec": {"linux": {"namespaces":
// [{"type": "network", "path": "..."}]}}, ...}
void read_info(const std::string& info, SandboxStatus& out) {
  const auto j = nlohmann::json::parse(info, nullptr, false);
  if (!j.is_object()) return;
  out.pid = j.value("pid", 0);
  const auto spec = j.find("runtimeSpec");
  if (spec == j.end() || !spec->contains("linux")) return;
  for (const auto& ns : (*spec)["linux"].value("namespaces", nlohmann::json::array())) {
    if (ns.value("type", "") == "network") out.netns = ns.value("path", "");
  }
}

}  // namespace

struct CriClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<cri::RuntimeService::Stub> stub;
  std::unique_ptr<cri::ImageService::Stub> images;
  std::chrono::milliseconds deadline;

  std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds d) const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + d);
    return c;
  }
};

CriClient::CriClient(const std::string& socket, std::chrono::milliseconds deadline)
    : impl_(std::make_unique<Impl>()) {
  impl_->channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
  impl_->stub = cri::RuntimeService::NewStub(impl_->channel);
  impl_->images = cri::ImageService::NewStub(impl_->channel);
  impl_->deadline = deadline;
}

CriClient::~CriClient() = default;

std::string CriClient::version(std::chrono::milliseconds deadline) {
  cri::VersionRequest req;
  req.set_version("v1");
  cri::VersionResponse resp;
  const auto ctx = impl_->context(deadline);
  check(impl_->stub->Version(ctx.get(), req, &resp), "Version");
  return resp.runtime_name() + " " + resp.runtime_version();
}

std::string CriClient::run_pod_sandbox(const SandboxSpec& spec) {
  cri::RunPodSandboxRequest req;
  auto* config = req.mutable_config();
  auto* meta = config->mutable_metadata();
  meta->set_name(spec.name);
  meta->set_namespace_(spec.ns);
  meta->set_uid(spec.uid);
  meta->set_attempt(spec.attempt);
  config->set_hostname(spec.name);
  for (const auto& [k, v] : spec.labels) (*config->mutable_labels())[k] = v;
  for (const auto& [k, v] : spec.annotations) (*config->mutable_annotations())[k] = v;
  if (!spec.cgroup_parent.empty()) config->mutable_linux()->set_cgroup_parent(spec.cgroup_parent);
  cri::RunPodSandboxResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->stub->RunPodSandbox(ctx.get(), req, &resp),
        "RunPodSandbox " + spec.ns + "/" + spec.name);
  return resp.pod_sandbox_id();
}

void CriClient::stop_pod_sandbox(const std::string& id) {
  cri::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  cri::StopPodSandboxResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->stub->StopPodSandbox(ctx.get(), req, &resp), "StopPodSandbox " + id);
}

void CriClient::remove_pod_sandbox(const std::string& id) {
  cri::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  cri::RemovePodSandboxResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->stub->RemovePodSandbox(ctx.get(), req, &resp), "RemovePodSandbox " + id);
}

SandboxStatus CriClient::pod_sandbox_status(const std::string& id) {
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  req.set_verbose(true);
  cri::PodSandboxStatusResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->stub->PodSandboxStatus(ctx.get(), req, &resp), "PodSandboxStatus " + id);
  SandboxStatus s;
  const auto& st = resp.status();
  s.id = st.id();
  s.ready = st.state() == cri::SANDBOX_READY;
  s.ip = st.network().ip();
  s.labels = {st.labels().begin(), st.labels().end()};
  s.annotations = {st.annotations().begin(), st.annotations().end()};
  if (const auto it = resp.info().find("info"); it != resp.info().end()) read_info(it->second, s);
  return s;
}

std::vector<std::string> CriClient::list_pod_sandboxes() {
  cri::ListPodSandboxRequest req;
  cri::ListPodSandboxResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->stub->ListPodSandbox(ctx.get(), req, &resp), "ListPodSandbox");
  std::vector<std::string> ids;
  for (const auto& item : resp.items()) ids.push_back(item.id());
  return ids;
}

bool CriClient::image_present(const std::string& ref) {
  cri::ImageStatusRequest req;
  req.mutable_image()->set_image(ref);
  cri::ImageStatusResponse resp;
  const auto ctx = impl_->context(impl_->deadline);
  check(impl_->images->ImageStatus(ctx.get(), req, &resp), "ImageStatus " + ref);
  return resp.has_image() && !resp.image().id().empty();
}

}  // namespace ambient::runtime_test
