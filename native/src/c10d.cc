// c10d bindings: TCPStore rendezvous and ProcessGroupGloo collectives (filled in by the distributed work).
#include "handle.h"

namespace plsc {
void initC10d(Napi::Env env, Napi::Object exports) {}
}  // namespace plsc
