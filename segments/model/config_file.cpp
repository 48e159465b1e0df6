#include "segments/model/config_file.h"

#include "segments/checkpoint/checkpoint.h"

namespace segpipe {

ModelConfig read_model_config(const std::string& model_dir) {
  std::string path = model_dir + "/config.json";
  return parse_model_config(read_json_file(path), path);
}

}  // namespace segpipe
