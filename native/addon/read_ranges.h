#pragma once
#include <napi.h>

namespace mg {

// readRanges(fd, dests, plan, threads, cancel): see read_ranges.cc.
Napi::Value ReadRanges(const Napi::CallbackInfo &info);

}  // namespace mg
