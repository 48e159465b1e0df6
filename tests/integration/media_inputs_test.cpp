// generate --audio / --image: what is refused before anything runs (exit 2, one line naming the file,
// segment or key), and one process per segment against the in-process run. The numbers of a prompt with
// media are checked against transformers' goldens (thinker_media_test, verify --golden on the
// tiny-qwen3-omni-mm checkpoints).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "process_harness.h"

namespace segpipe::test {
namespace {

std::string omni_pipeline(const std::string& transport, const std::string& encoders) {
  std::string path = temp_dir() + "/p.yaml";
  write_file(path, "version: 1\nmodel: " + source_path("models/tiny-qwen3-omni") + "\n" + transport + "segments:\n" +
                       encoders +
                       "  - {name: embed, kind: embeddings}\n"
                       "  - {name: layers, kind: layers, layers: [0, 2]}\n"
                       "  - {name: head, kind: lm_head}\n");
  return path;
}

RunResult generate_with(const std::string& yaml, const std::vector<std::string>& media) {
  std::vector<std::string> args = {"generate", "--pipeline", yaml, "--tokens", "1 2 3", "--ids", "--max-new-tokens", "2"};
  args.insert(args.end(), media.begin(), media.end());
  return run_segpipe(args);
}

TEST(MediaInputs, BadFilesAreExit2NamingTheFile) {
  const std::string yaml = omni_pipeline("transport: inproc\n", "  - {name: audio, kind: audio_encoder}\n");
  const std::string dir = temp_dir();
  write_file(dir + "/empty.wav", "");
  write_file(dir + "/text.png", "not a png at all");
  for (const auto& [flag, file] : std::vector<std::pair<std::string, std::string>>{
           {"--audio", dir + "/missing.wav"}, {"--audio", dir + "/empty.wav"}, {"--image", dir + "/text.png"}}) {
    RunResult r = generate_with(yaml, {flag, file});
    EXPECT_EQ(r.rc, 2) << flag << " " << file << ": " << r.err;
    EXPECT_NE(r.err.find(file), std::string::npos) << r.err;
  }
}

TEST(MediaInputs, EncodersNeedAnOmniCheckpointAndTheCpu) {
  std::string path = temp_dir() + "/p.yaml";
  write_file(path, "version: 1\nmodel: " + source_path("models/tiny-qwen3-moe") +
                       "\nsegments:\n  - {name: vision, kind: vision_encoder}\n  - {name: embed, kind: embeddings}\n"
                       "  - {name: layers, kind: layers, layers: [0, 4]}\n  - {name: head, kind: lm_head}\n");
  RunResult r = run_segpipe({"generate", "--pipeline", path, "--tokens", "1 2", "--ids", "--max-new-tokens", "1"});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("segment 'vision' (vision_encoder) needs a Qwen3-Omni checkpoint"), std::string::npos) << r.err;
}

TEST(MediaInputs, MediaThatCannotBePlacedIsExit2) {
  const std::string media = source_path("tests/data/media/shapes.png");
  // The committed Omni checkpoint's config has no vision start/end ids: an image cannot be placed.
  RunResult r = generate_with(omni_pipeline("transport: inproc\n", "  - {name: vision, kind: vision_encoder}\n"),
                              {"--image", media});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("no vision start/end token ids"), std::string::npos) << r.err;
  // A text-only prompt runs through a pipeline with encoders, which it never calls.
  RunResult t = generate_with(omni_pipeline("", "  - {name: vision, kind: vision_encoder}\n"), {});
  EXPECT_EQ(t.rc, 0) << t.err;
}

// The committed Omni checkpoint with its thinker's media token ids moved inside its small vocabulary and
// the audio windows the processor assumes (n_window 50): a prompt with media can be placed and run. Only
// what is refused or that it runs at all is checked here; its numbers are the goldens' business.
std::string placeable_omni() {
  namespace fs = std::filesystem;
  const std::string dir = temp_dir() + "/omni";
  fs::copy(source_path("models/tiny-qwen3-omni"), dir, fs::copy_options::recursive);
  fs::remove_all(dir + "/goldens");
  nlohmann::json c = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  auto& t = c["thinker_config"];
  t["audio_token_id"] = 1190;
  t["image_token_id"] = 1191;
  t["video_token_id"] = 1192;
  t["audio_start_token_id"] = 1193;
  t["audio_end_token_id"] = 1194;
  t["vision_start_token_id"] = 1195;
  t["vision_end_token_id"] = 1196;
  t["audio_config"]["n_window"] = 50;
  t["audio_config"]["n_window_infer"] = 200;
  std::ofstream(dir + "/config.json") << c.dump(1);
  return dir;
}

std::string omni_split_pipeline(const std::string& model, const std::string& transport) {
  std::string path = temp_dir() + "/p.yaml";
  write_file(path, "version: 1\nmodel: " + model + "\n" + transport +
                       "segments:\n  - {name: vision, kind: vision_encoder}\n  - {name: audio, kind: audio_encoder}\n"
                       "  - {name: embed, kind: embeddings}\n  - {name: early, kind: layers, layers: [0, 0]}\n"
                       "  - {name: late, kind: layers, layers: [1, 2]}\n  - {name: head, kind: lm_head}\n");
  return path;
}

// One process per segment carries a prompt's media as the in-process run does: the encoders' rows, the
// rows over the embeddings, the 3-D positions and DeepStack rows across a split of the layers, and the
// rope delta of the decode steps, bit for bit (verify compares every boundary and decode step).
TEST(MediaInputs, OverProcessesEqualsInProcessBitForBit) {
  const std::string model = placeable_omni();
  RunResult v = run_segpipe({"verify", "--pipeline", omni_split_pipeline(model, ""), "--tokens", "1 2 3", "--image",
                             source_path("tests/data/media/shapes.png"), "--audio", source_path("tests/data/media/speech.wav")});
  EXPECT_EQ(v.rc, 0) << v.out << v.err;
  for (const char* row : {"vision_encoder.0", "audio_encoder.1", "layers.1.output", "logits"}) {
    const size_t at = v.out.find(std::string("  ") + row + " ");
    ASSERT_NE(at, std::string::npos) << row << "\n" << v.out;
    EXPECT_NE(v.out.substr(at, v.out.find('\n', at) - at).find("identical"), std::string::npos) << v.out;
  }
  EXPECT_NE(v.out.find("decode logits bitwise equal"), std::string::npos) << v.out;
  // A prompt longer than one step (the photo alone is over a thousand placeholders): prefilled in chunks
  // over processes, in one step in-process; the same tokens.
  const std::vector<std::string> media = {"--image", source_path("tests/data/media/photo.jpg"), "--audio",
                                          source_path("tests/data/media/speech.wav")};
  RunResult in = generate_with(omni_split_pipeline(model, "transport: inproc\n"), media);
  RunResult shm = generate_with(omni_split_pipeline(model, ""), media);
  EXPECT_EQ(in.rc, 0) << in.err;
  EXPECT_EQ(shm.rc, 0) << shm.err;
  EXPECT_NE(shm.err.find("generated 2 tokens"), std::string::npos) << shm.err;
  EXPECT_GT(std::stoi(shm.err.substr(shm.err.find("prompt ") + 7)), 512) << shm.err;
  EXPECT_EQ(in.out, shm.out);
  // More media than the pipeline has encoders for: an image without a vision_encoder segment.
  std::string no_vision = temp_dir() + "/nv.yaml";
  write_file(no_vision, "version: 1\nmodel: " + model + "\nsegments:\n"
                        "  - {name: embed, kind: embeddings}\n  - {name: layers, kind: layers, layers: [0, 2]}\n"
                        "  - {name: head, kind: lm_head}\n");
  RunResult nv = generate_with(no_vision, {"--image", source_path("tests/data/media/shapes.png")});
  EXPECT_EQ(nv.rc, 2) << nv.err;
  EXPECT_NE(nv.err.find("no vision_encoder segment"), std::string::npos) << nv.err;
}

// dump with audio and an image writes each encoder's input and rows and the media each segment takes;
// run-segment reruns every one of them alone, bit for bit, the decode step's KV cache rebuilt from the
// prompt's M-RoPE positions and DeepStack rows.
TEST(MediaInputs, DumpAndRunSegmentWithMedia) {
  const std::string model = placeable_omni();
  const std::string yaml = omni_split_pipeline(model, "");
  const std::string dir = temp_dir() + "/dump";
  RunResult d = run_segpipe({"dump", "--pipeline", yaml, "--tokens", "1 2 3", "--out", dir, "--max-new-tokens", "1",
                             "--image", source_path("tests/data/media/shapes.png"), "--audio",
                             source_path("tests/data/media/speech.wav")});
  ASSERT_EQ(d.rc, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("bit-identical at every boundary"), std::string::npos) << d.out;
  for (const std::string f : {"vision.media-0", "audio.media-0", "embed", "early", "late", "decode-1/early", "decode-1/late"}) {
    std::string seg = f.substr(f.find('/') + 1);  // npos + 1: the whole name
    seg = seg.substr(0, seg.find('.'));
    RunResult r = run_segpipe({"run-segment", "--pipeline", yaml, "--segment", seg, "--input", dir + "/" + f + ".input.safetensors",
                               "--output", temp_dir() + "/o.safetensors", "--expect", dir + "/" + f + ".output.safetensors"});
    EXPECT_EQ(r.rc, 0) << f << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("run-segment: PASS"), std::string::npos) << f << ": " << r.out;
  }
  // An audio's features given to the vision encoder: exit 2 naming the field it lacks.
  RunResult bad = run_segpipe({"run-segment", "--pipeline", yaml, "--segment", "vision", "--input",
                               dir + "/audio.media-0.input.safetensors", "--output", temp_dir() + "/o.safetensors"});
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_NE(bad.err.find("pixel_values"), std::string::npos) << bad.err;
}

// Changes one value of a tensor in a copy of a checkpoint (the shard the index names): a split that
// lost a bit, for bisect to find.
void perturb_tensor(const std::string& dir, const std::string& tensor) {
  const nlohmann::json index = nlohmann::json::parse(std::ifstream(dir + "/model.safetensors.index.json"));
  const std::string shard = dir + "/" + index.at("weight_map").at(tensor).get<std::string>();
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const int64_t at = 8 + static_cast<int64_t>(n) + nlohmann::json::parse(header).at(tensor).at("data_offsets").at(0).get<int64_t>();
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x40);
  f.seekp(at);
  f.write(&c, 1);
}

// verify --bisect with media: against the same pipeline in-process nothing diverges; against a reference
// whose vision tower differs by one value, the first divergence is that encoder's rows.
TEST(MediaInputs, BisectWithMediaNamesTheEncoder) {
  const std::string model = placeable_omni();
  const std::string yaml = omni_split_pipeline(model, "");
  const std::vector<std::string> media = {"--image", source_path("tests/data/media/shapes.png"), "--audio",
                                          source_path("tests/data/media/speech.wav")};
  std::vector<std::string> args = {"verify", "--pipeline", yaml, "--bisect", "--tokens", "1 2 3"};
  args.insert(args.end(), media.begin(), media.end());
  RunResult same = run_segpipe(args);
  EXPECT_EQ(same.rc, 0) << same.out << same.err;
  EXPECT_NE(same.out.find("bisect: no divergence"), std::string::npos) << same.out;
  // The reference: the same pipeline over a checkpoint whose vision tower lost a bit.
  namespace fs = std::filesystem;
  const std::string other = temp_dir() + "/omni-other";
  fs::copy(model, other, fs::copy_options::recursive);
  perturb_tensor(other, "thinker.visual.blocks.0.attn.qkv.weight");
  const std::string ref = temp_dir() + "/ref.yaml";
  write_file(ref, "version: 1\nmodel: " + other + "\ntransport: inproc\nsegments:\n  - {name: vision, kind: vision_encoder}\n"
                  "  - {name: audio, kind: audio_encoder}\n  - {name: embed, kind: embeddings}\n"
                  "  - {name: layers, kind: layers, layers: [0, 2]}\n  - {name: head, kind: lm_head}\n");
  args.insert(args.end(), {"--reference", ref});
  RunResult diff = run_segpipe(args);
  EXPECT_EQ(diff.rc, 1) << diff.out << diff.err;
  EXPECT_NE(diff.out.find("first divergence in segment 'vision' (vision_encoder)"), std::string::npos) << diff.out;
  // A golden carries its own media.
  RunResult g = run_segpipe({"verify", "--pipeline", yaml, "--golden", source_path("models/tiny-qwen3-omni/goldens/short.safetensors"),
                             "--image", source_path("tests/data/media/shapes.png")});
  EXPECT_EQ(g.rc, 2) << g.err;
  EXPECT_NE(g.err.find("a multimodal golden carries its own media"), std::string::npos) << g.err;
}

}  // namespace
}  // namespace segpipe::test
