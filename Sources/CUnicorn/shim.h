// Unicorn 2.0.1 (Debian libunicorn-dev) for the Machine module.
//
// Swift cannot call C variadic functions or expand function-like macros, so
// the few Unicorn entry points that are variadic (uc_hook_add, uc_ctl) or
// macros (uc_ctl_request_cache, uc_ctl_remove_cache, UC_HOOK_MEM_UNMAPPED)
// get a fixed-signature inline wrapper here. Nothing else belongs in this file.
#include <unicorn/unicorn.h>

typedef void (*ph_block_cb)(uc_engine *uc, uint64_t address, uint32_t size, void *user);
typedef void (*ph_intr_cb)(uc_engine *uc, uint32_t intno, void *user);
typedef bool (*ph_mem_invalid_cb)(uc_engine *uc, uc_mem_type type, uint64_t address,
                                  int size, int64_t value, void *user);
typedef uint32_t (*ph_in_cb)(uc_engine *uc, uint32_t port, int size, void *user);
typedef void (*ph_out_cb)(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user);

static const int PH_HOOK_MEM_INVALID = UC_HOOK_MEM_INVALID;

/// UC_HOOK_BLOCK or UC_HOOK_CODE (same callback shape) over [begin, end].
static inline uc_err ph_hook_add_trace(uc_engine *uc, uc_hook *hh, int type, ph_block_cb cb,
                                       void *user, uint64_t begin, uint64_t end) {
    return uc_hook_add(uc, hh, type, (void *)cb, user, begin, end);
}

static inline uc_err ph_hook_add_intr(uc_engine *uc, uc_hook *hh, ph_intr_cb cb, void *user) {
    return uc_hook_add(uc, hh, UC_HOOK_INTR, (void *)cb, user, 1, 0);
}

static inline uc_err ph_hook_add_mem_invalid(uc_engine *uc, uc_hook *hh, ph_mem_invalid_cb cb,
                                             void *user) {
    return uc_hook_add(uc, hh, UC_HOOK_MEM_INVALID, (void *)cb, user, 1, 0);
}

typedef void (*ph_mem_cb)(uc_engine *uc, uc_mem_type type, uint64_t address, int size,
                          int64_t value, void *user);

/// UC_HOOK_MEM_READ and/or UC_HOOK_MEM_WRITE (`types`, OR'ed) over every address.
static inline uc_err ph_hook_add_mem(uc_engine *uc, uc_hook *hh, int types, ph_mem_cb cb, void *user) {
    return uc_hook_add(uc, hh, types, (void *)cb, user, 1, 0);
}

static inline uc_err ph_hook_add_in(uc_engine *uc, uc_hook *hh, ph_in_cb cb, void *user) {
    return uc_hook_add(uc, hh, UC_HOOK_INSN, (void *)cb, user, 1, 0, UC_X86_INS_IN);
}

static inline uc_err ph_hook_add_out(uc_engine *uc, uc_hook *hh, ph_out_cb cb, void *user) {
    return uc_hook_add(uc, hh, UC_HOOK_INSN, (void *)cb, user, 1, 0, UC_X86_INS_OUT);
}

static inline uc_err ph_ctl_request_cache(uc_engine *uc, uint64_t address, uc_tb *tb) {
    return uc_ctl_request_cache(uc, address, tb);
}

static inline uc_err ph_ctl_remove_cache(uc_engine *uc, uint64_t begin, uint64_t end) {
    return uc_ctl_remove_cache(uc, begin, end);
}

static inline uc_err ph_ctl_set_cpu_model(uc_engine *uc, int model) {
    return uc_ctl_set_cpu_model(uc, model);
}
