// meshgate's --event and --fault arguments -> the data plane's Event and Fault. False with *err (saying the
// expected form) on anything else.
#pragma once

#include <string>

#include "config/config.h"
#include "dataplane/dataplane.h"

namespace mg::app {

// "2.5:instance gw-a maintenance", "p10000:tunnel a-1 drain" (meshgatectl's words; p = after that many inside
// packets), or the older "2.5:instance:gw-a:down", "p10000:tunnel:a-1:drain".
bool parse_event(const std::string& s, const config::Gateway& g, dp::Event* out, std::string* err);
// "2.5:a-1:blackhole", "4:a-1:heal".
bool parse_fault(const std::string& s, const config::Gateway& g, dp::Fault* out, std::string* err);

}  // namespace mg::app
