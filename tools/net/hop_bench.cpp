// One network hop as segpipe's multi-host runs would use it: MPI point-to-point between two ranks (on
// two hosts, or two simulated hosts), for the sizes a pipeline sends: a decode step's hidden state, a
// prefill's, a bank exchange's. Prints, per size, the one-way time (half the round trip, median of the
// repetitions) and the bandwidth it implies, and beside them the link's ceiling measured in the same run
// (the largest message's bandwidth) and its latency floor (a 1-byte message).
//
//   mpirun -np 2 --host A,B segpipe_hop_bench [--json FILE] [--hidden H] [--reps N]
//
// Sizes: 1 byte; H float32 (one token's hidden state, a decode step); 8 H, 64 H, 512 H, 2048 H float32
// (prefills of 8 ... 2048 tokens). H defaults to 2048 (the Qwen3-Omni thinker).
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Half the round trip of `bytes` there and `bytes` back, median over `reps` after 2 warm-ups.
double one_way_s(int rank, std::vector<char>& buf, size_t bytes, int reps) {
  std::vector<double> t;
  for (int i = 0; i < reps + 2; i++) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double a = MPI_Wtime();
    const int count = static_cast<int>(bytes);
    if (rank == 0) {
      MPI_Send(buf.data(), count, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(buf.data(), count, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(buf.data(), count, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf.data(), count, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
    }
    if (i >= 2) t.push_back((MPI_Wtime() - a) / 2);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::string json;
  long hidden = 2048;
  int reps = 21;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json = argv[++i];
    else if (a == "--hidden" && i + 1 < argc) hidden = std::atol(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      if (rank == 0) std::fprintf(stderr, "usage: segpipe_hop_bench [--json FILE] [--hidden H] [--reps N]\n");
      MPI_Finalize();
      return 2;
    }
  }
  // Rank 0's settings hold for both (a launcher may hand the ranks different arguments).
  long settings[2] = {hidden, reps};
  MPI_Bcast(settings, 2, MPI_LONG, 0, MPI_COMM_WORLD);
  hidden = settings[0];
  reps = static_cast<int>(settings[1]);
  if (size != 2 || hidden < 1 || hidden > (1 << 16) || reps < 1 || reps > 10000) {
    if (rank == 0) std::fprintf(stderr, "segpipe_hop_bench: needs exactly 2 ranks, 1 <= H <= 65536, 1 <= reps\n");
    MPI_Finalize();
    return 2;
  }
  const std::vector<long> tokens = {0, 1, 8, 64, 512, 2048};
  std::vector<char> buf(static_cast<size_t>(2048 * hidden * 4));
  char me[MPI_MAX_PROCESSOR_NAME] = {}, peer[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(me, &len);
  MPI_Sendrecv(me, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1 - rank, 1, peer, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1 - rank, 1,
               MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  std::vector<double> secs;
  for (long t : tokens) {
    const size_t bytes = t == 0 ? 1 : static_cast<size_t>(t * hidden * 4);
    // Fewer repetitions for the big messages on a slow link: a 16 MiB message at 1 Gbit/s takes 0.13 s.
    secs.push_back(one_way_s(rank, buf, bytes, t >= 512 ? std::max(3, reps / 4) : reps));
  }
  if (rank == 0) {
    const double ceiling_gbs = double(2048 * hidden * 4) / secs.back() / 1e9;
    std::printf("hop %s -> %s, hidden %ld (float32); latency floor %.1f us, bandwidth ceiling %.3f GB/s\n", me, peer,
                hidden, secs[0] * 1e6, ceiling_gbs);
    std::printf("%10s %12s %12s %10s %s\n", "tokens", "bytes", "one-way us", "GB/s", "share of the ceiling");
    std::string rows;
    for (size_t i = 0; i < tokens.size(); i++) {
      const size_t bytes = tokens[i] == 0 ? 1 : static_cast<size_t>(tokens[i] * hidden * 4);
      const double gbs = double(bytes) / secs[i] / 1e9;
      std::printf("%10ld %12zu %12.1f %10.3f %.2f\n", tokens[i], bytes, secs[i] * 1e6, gbs, gbs / ceiling_gbs);
      rows += std::string(rows.empty() ? "" : ",") + "{\"tokens\":" + std::to_string(tokens[i]) +
              ",\"bytes\":" + std::to_string(bytes) + ",\"one_way_us\":" + std::to_string(secs[i] * 1e6) + "}";
    }
    if (!json.empty()) {
      std::ofstream f(json);
      f << "{\"from\":\"" << me << "\",\"to\":\"" << peer << "\",\"hidden\":" << hidden
        << ",\"latency_floor_us\":" << secs[0] * 1e6 << ",\"ceiling_gbs\":" << ceiling_gbs << ",\"sizes\":[" << rows
        << "]}\n";
      if (!f) {
        std::fprintf(stderr, "segpipe_hop_bench: cannot write %s\n", json.c_str());
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
    }
  }
  MPI_Finalize();
  return 0;
}
