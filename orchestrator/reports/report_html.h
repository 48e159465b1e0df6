// One self-contained HTML page (inline SVG drawn by inline JS, no network) for `segpipe memory`:
// memory per segment process, the sweeps over cuts and over resident experts, the expert-usage heat
// map, and the numbers. When the page has drawn everything it adds an element id="render-ok"
// (data-charts = number of charts); script errors are listed in id="render-errors".
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace segpipe {

// memory: a `segpipe memory` report (may be empty); sweep: a `memory --sweep` result (may be empty).
std::string render_report_html(const nlohmann::json& memory, const nlohmann::json& sweep);

}  // namespace segpipe
