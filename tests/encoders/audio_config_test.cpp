// thinker_config.audio_config: read from both committed Omni checkpoints (both config spellings), and
// every missing, mistyped or contradictory field refused with config.json and the key named.
#include <gtest/gtest.h>

#include <string>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/audio_config.h"

namespace segpipe {
namespace {

std::string model_dir(const std::string& name) { return std::string(SEGPIPE_SOURCE_DIR) + "/models/" + name; }

TEST(AudioEncoderConfig, ReadsBothSpellings) {
  for (const char* name : {"tiny-qwen3-omni", "tiny-qwen3-omni-v5"}) {
    SCOPED_TRACE(name);
    const nlohmann::json j = read_json_file(model_dir(name) + "/config.json");
    const AudioEncoderConfig c = parse_audio_encoder_config(j, model_dir(name) + "/config.json");
    // Every field equals the file's own value (the file is the reference here).
    const nlohmann::json& a = j["thinker_config"]["audio_config"];
    EXPECT_EQ(c.num_mel_bins, a["num_mel_bins"].get<int>());
    EXPECT_EQ(c.d_model, a["d_model"].get<int>());
    EXPECT_EQ(c.encoder_layers, a["encoder_layers"].get<int>());
    EXPECT_EQ(c.encoder_attention_heads, a["encoder_attention_heads"].get<int>());
    EXPECT_EQ(c.encoder_ffn_dim, a["encoder_ffn_dim"].get<int>());
    EXPECT_EQ(c.downsample_hidden_size, a["downsample_hidden_size"].get<int>());
    EXPECT_EQ(c.output_dim, a["output_dim"].get<int>());
    EXPECT_EQ(c.output_dim, j["thinker_config"]["text_config"]["hidden_size"].get<int>());
    EXPECT_EQ(c.max_source_positions, a["max_source_positions"].get<int>());
    EXPECT_EQ(c.n_window, a["n_window"].get<int>());
    EXPECT_EQ(c.n_window_infer, a["n_window_infer"].get<int>());
    EXPECT_EQ(c.activation_function, "gelu");
  }
}

class AudioConfigErrors : public ::testing::Test {
 protected:
  void SetUp() override { j_ = read_json_file(model_dir("tiny-qwen3-omni") + "/config.json"); }
  nlohmann::json& audio() { return j_["thinker_config"]["audio_config"]; }
  void expect_error(const std::string& key_in_message) {
    try {
      parse_audio_encoder_config(j_, "X/config.json");
      ADD_FAILURE() << "accepted; expected an error about " << key_in_message;
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("X/config.json: ", 0), 0u) << m;
      EXPECT_NE(m.find(key_in_message), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
  nlohmann::json j_;
};

TEST_F(AudioConfigErrors, MissingSections) {
  j_["thinker_config"].erase("audio_config");
  expect_error("thinker_config.audio_config");
  j_.erase("thinker_config");
  expect_error("thinker_config");
}

TEST_F(AudioConfigErrors, MissingOrMistypedKeys) {
  for (const char* key : {"num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
                          "downsample_hidden_size", "output_dim", "max_source_positions", "n_window", "n_window_infer"}) {
    SCOPED_TRACE(key);
    const nlohmann::json saved = audio()[key];
    audio().erase(key);
    expect_error(std::string("thinker_config.audio_config.") + key + ": missing");
    audio()[key] = "8";
    expect_error(std::string("thinker_config.audio_config.") + key + ": must be an integer");
    audio()[key] = -3;
    expect_error(std::string("thinker_config.audio_config.") + key);
    audio()[key] = saved;
  }
}

TEST_F(AudioConfigErrors, Contradictions) {
  audio()["encoder_attention_heads"] = 3;  // d_model 32
  expect_error("encoder_attention_heads");
  audio()["encoder_attention_heads"] = 2;
  audio()["d_model"] = 34;
  audio()["encoder_attention_heads"] = 17;  // divides, but odd head count is fine; d_model even: accepted
  EXPECT_NO_THROW(parse_audio_encoder_config(j_, "X/config.json"));
  audio()["d_model"] = 33;
  audio()["encoder_attention_heads"] = 3;
  expect_error("d_model");
  audio()["d_model"] = 32;
  audio()["encoder_attention_heads"] = 2;
  audio()["n_window_infer"] = 15;  // a chunk is 16 frames
  expect_error("n_window_infer");
  audio()["n_window_infer"] = 32;
  audio()["max_source_positions"] = 1;  // a 16-frame chunk makes 2 tokens
  expect_error("max_source_positions");
  audio()["max_source_positions"] = 64;
  audio()["activation_function"] = "relu";
  expect_error("activation_function");
}

}  // namespace
}  // namespace segpipe
