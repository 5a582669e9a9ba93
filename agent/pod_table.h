// The agent's memory of enrolled pods: each pod's Enrolment and the netns fd it holds for ztunnel
// snapshots, persisted through the run-dir store (<run_dir>/enrolled/<uid>.json) so a restarted
// agent (or a rebooted node) knows which pods it owes ztunnel.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "netns/netns.h"
#include "rundir/records.h"
#include "rundir/store.h"

namespace ambient::agent {

struct EnrolledPod {
  rundir::Enrolment enrolment;
  std::shared_ptr<netns::NetnsHandle> netns;  // null after a restart found the netns gone
  // Its rules could not be (re-)applied: annotated "pending", retried, never passed off as
  // enrolled with no rules.
  bool pending = false;
  // Being released: left out of ztunnel snapshots from before its ZDS del on (in memory only),
  // so a ztunnel that connects while a release runs is never handed a pod nobody will delete.
  bool releasing = false;
  // Being enrolled: recorded (so a ztunnel connecting now gets it in its snapshot), but ztunnel's
  // ack or the annotation is still to come (in memory only): `status` and explain must not call
  // it enrolled yet.
  bool enrolling = false;

  const rundir::PodRecord& pod() const { return enrolment.pod; }
  const std::string& uid() const { return enrolment.pod.uid; }
};

class PodTable {
 public:
  explicit PodTable(rundir::RunDir dir) : dir_(std::move(dir)) {}

  // Holds one pod's lock; the lock's slot is reaped when the last holder lets go (per-pod state
  // must not grow with every pod that ever lived on the node).
  class PodLock {
   public:
    PodLock(PodTable& table, std::string uid);
    ~PodLock();
    PodLock(const PodLock&) = delete;
    PodLock& operator=(const PodLock&) = delete;

   private:
    PodTable& table_;
    std::string uid_;
  };
  // Serialises work on one pod (ADD, DEL, relabel) while other pods proceed.
  PodLock lock_pod(const std::string& uid) { return PodLock(*this, uid); }
  std::size_t lock_slots() const;  // per-pod locks held or waited for now (for tests)

  // Persists first (throws base::FileError, and then nothing changed), then keeps it.
  void put(EnrolledPod pod);
  // Keeps a pod whose state is already persisted (restored after a restart).
  void adopt(EnrolledPod pod);
  void erase(const std::string& uid);
  void mark_releasing(const std::string& uid);
  void mark_enrolled(const std::string& uid);  // its enrolment is complete (clears `enrolling`)
  std::optional<EnrolledPod> get(const std::string& uid) const;
  std::optional<EnrolledPod> find_by_container(const std::string& container_id) const;
  std::vector<EnrolledPod> all() const;
  std::size_t size() const;

  const rundir::RunDir& run_dir() const { return dir_; }

 private:
  rundir::RunDir dir_;
  mutable std::mutex mu_;
  std::map<std::string, EnrolledPod> pods_;
  struct Slot {
    std::mutex m;
    int users = 0;  // holders and waiters
  };
  mutable std::mutex locks_mu_;
  std::map<std::string, std::unique_ptr<Slot>> locks_;
};

}  // namespace ambient::agent
