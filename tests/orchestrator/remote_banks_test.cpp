// A layers worker whose expert bank dies during a request: its error names the bank (it used to say
// only "expert segment #3 died during a request", which then reached the user as the message).
#include "workers/remote_banks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <span>

#include "segments/core/errors.h"
#include "shm/arena.h"
#include "shm/arena_name.h"
#include "shm/layout.h"

namespace segpipe {
namespace {

TEST(BankCaller, ABankMarkedDeadIsNamedInTheError) {
  shm::ArenaLayout layout;
  const uint32_t status = layout.add_block(shm::BlockKind::kBytes, 4 * sizeof(proto::SegmentStatus), 64, "status");
  const uint32_t channel = layout.add_channel("ch.bank-lo");
  shm::Arena arena = shm::Arena::create(shm::make_arena_name(), layout);
  proto::SegmentStatus* table = arena.payload_span<proto::SegmentStatus>(status).data();
  proto::WorkerSpec spec;
  spec.bank_list.push_back({3, channel, 2, 4, "bank-lo"});
  BankCaller caller(spec, arena, table);
  std::atomic_ref<int32_t>(table[3].dead).store(1);  // as the orchestrator marks a bank it reaped
  proto::ExpertArgs args{3, 2, 1};
  try {
    caller.call(3, std::as_bytes(std::span<const proto::ExpertArgs>(&args, 1)));
    ADD_FAILURE() << "a dead bank must end the call";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("expert bank 'bank-lo' (segment #3)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace segpipe
