// The rendezvous store's listening address. libtorch 1.13's TCPStore server always listens on every
// interface (a passive getaddrinfo with no host) and has no option to change that. plsc rewrites
// libtorch's GOT entry for getaddrinfo to a wrapper: while a StoreBindAddress is alive on the calling
// thread, a passive lookup resolves the host the job was told (MASTER_ADDR) first, followed by the
// wildcard addresses. TCPStore listens on the first address that works, so a single-node job
// (MASTER_ADDR=127.0.0.1) listens on loopback only; a name this machine cannot bind (say, a service
// address in front of it) still falls back to every interface.
#include "lifeline.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <netdb.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <string>

namespace plsc {

namespace {

using GetaddrinfoFn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);

GetaddrinfoFn realGetaddrinfo = ::getaddrinfo;
thread_local const std::string* passiveHost = nullptr;

int storeGetaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
  if (node != nullptr || passiveHost == nullptr || hints == nullptr || (hints->ai_flags & AI_PASSIVE) == 0) {
    return realGetaddrinfo(node, service, hints, res);
  }
  // TCPStore asks per address family (IPv6 first); the told host is resolved in any family.
  struct addrinfo told = *hints;
  told.ai_flags &= ~AI_PASSIVE;
  told.ai_family = AF_UNSPEC;
  struct addrinfo* first = nullptr;
  if (realGetaddrinfo(passiveHost->c_str(), service, &told, &first) != 0) first = nullptr;
  struct addrinfo* wildcard = nullptr;
  int status = realGetaddrinfo(node, service, hints, &wildcard);
  if (first == nullptr) {
    *res = wildcard;
    return status;
  }
  // glibc allocates every addrinfo node separately, so one freeaddrinfo() frees the joined list.
  struct addrinfo* last = first;
  while (last->ai_next != nullptr) last = last->ai_next;
  last->ai_next = status == 0 ? wildcard : nullptr;
  *res = first;
  return 0;
}

struct PatchResult {
  bool found = false;
  std::string error;
};

bool patchGot(uintptr_t slot) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  void* start = reinterpret_cast<void*>(slot & ~(page - 1));
  if (::mprotect(start, page, PROT_READ | PROT_WRITE) != 0) return false;
  *reinterpret_cast<GetaddrinfoFn*>(slot) = storeGetaddrinfo;
  ::mprotect(start, page, PROT_READ);
  return true;
}

// Rewrites getaddrinfo's GOT slots in the libtorch library that holds TCPStore.
int patchObject(struct dl_phdr_info* info, size_t, void* data) {
  auto* result = static_cast<PatchResult*>(data);
  if (info->dlpi_name == nullptr || strstr(info->dlpi_name, "libtorch_cpu") == nullptr) return 0;
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    }
  }
  if (dynamic == nullptr) return 0;
  const ElfW(Sym)* symbols = nullptr;
  const char* names = nullptr;
  const ElfW(Rela)* tables[2] = {nullptr, nullptr};
  size_t sizes[2] = {0, 0};
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB: symbols = reinterpret_cast<const ElfW(Sym)*>(d->d_un.d_ptr); break;
      case DT_STRTAB: names = reinterpret_cast<const char*>(d->d_un.d_ptr); break;
      case DT_JMPREL: tables[0] = reinterpret_cast<const ElfW(Rela)*>(d->d_un.d_ptr); break;
      case DT_PLTRELSZ: sizes[0] = d->d_un.d_val; break;
      case DT_RELA: tables[1] = reinterpret_cast<const ElfW(Rela)*>(d->d_un.d_ptr); break;
      case DT_RELASZ: sizes[1] = d->d_un.d_val; break;
      default: break;
    }
  }
  if (symbols == nullptr || names == nullptr) return 0;
  for (int t = 0; t < 2; ++t) {
    if (tables[t] == nullptr) continue;
    for (size_t i = 0; i < sizes[t] / sizeof(ElfW(Rela)); ++i) {
      const ElfW(Rela)& r = tables[t][i];
      const auto type = ELF64_R_TYPE(r.r_info);
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
      if (strcmp(names + symbols[ELF64_R_SYM(r.r_info)].st_name, "getaddrinfo") != 0) continue;
      if (patchGot(info->dlpi_addr + r.r_offset)) {
        result->found = true;
      } else {
        result->error = "mprotect of libtorch's GOT failed";
      }
    }
  }
  return result->found ? 1 : 0;
}

}  // namespace

StoreBindAddress::StoreBindAddress(const std::string& host) { passiveHost = new std::string(host); }

StoreBindAddress::~StoreBindAddress() {
  delete passiveHost;
  passiveHost = nullptr;
}

std::string installStoreBindHook() {
  static std::once_flag once;
  static std::string outcome;
  std::call_once(once, [] {
#if defined(__x86_64__) && defined(__linux__)
    PatchResult result;
    dl_iterate_phdr(patchObject, &result);
    if (!result.found) outcome = result.error.empty() ? "libtorch_cpu's getaddrinfo import was not found" : result.error;
#else
    outcome = "only implemented for x86-64 Linux";
#endif
  });
  return outcome;
}

}  // namespace plsc
