// Argument checks shared by the two addons: a wrong call from JS throws a TypeError
// or RangeError with a message naming the argument, never crashes.
#ifndef COMMLOOP_ARGS_H
#define COMMLOOP_ARGS_H

#include <napi.h>

#include <cstdint>
#include <string>

namespace commloop {

// An integer in [min, max]: TypeError when not a number, RangeError otherwise.
inline int32_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min, int64_t max) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(min) && v <= static_cast<double>(max)) || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer from " + std::to_string(min) + " to " +
                                                std::to_string(max));
  }
  return static_cast<int32_t>(v);
}

}  // namespace commloop

#endif
