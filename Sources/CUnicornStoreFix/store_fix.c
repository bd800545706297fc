// The store fix: Unicorn 2.1's page_collection_lock/unlock, for Unicorn 2.0.x.
//
// WHY. In Unicorn 2.0.1 (QEMU 5.0's softmmu) cpu_physical_memory_is_clean() always answers
// true, so every writable RAM page enters the TLB with TLB_NOTDIRTY and EVERY guest store
// leaves the fast path for notdirty_write(), which does
//
//     pages = page_collection_lock(uc, addr, addr + size);   // g_malloc, g_tree_new_full,
//                                                            // page_find per page and per TB
//     tb_invalidate_phys_page_fast(uc, pages, addr, size, retaddr);
//     page_collection_unlock(pages);                         // g_tree_destroy, g_free
//
// The page collection exists only to take QEMU's per-page locks in order, and Unicorn
// compiled those locks out (`#if 0` around page_entry_lock and friends): the tree is built
// and torn down for nothing. Measured on this project's machine: a store costs ≈81 ns
// against ≈0.6 ns for a load, and this path is 84 % of the emulation time of Debian's 6.12
// purgatory (perf), whose SHA-256 keeps its message schedule and state on the stack.
// Upstream removed it in commit 75d26b77 "Ignore page_collection_lock" (pull request 1838,
// May 2023, first released in 2.1.0): page_collection_lock returns NULL and
// page_collection_unlock does nothing. The two definitions below are that change.
//
// HOW. QEMU renames its functions per target, and Debian's libunicorn.so.2 (2.0.1.post1)
// exports page_collection_lock_x86_64 and page_collection_unlock_x86_64 and calls them
// through its PLT at every call site (notdirty_write, tb_invalidate_phys_range,
// tb_invalidate_phys_page_range, and the precise-SMC exit of
// tb_invalidate_phys_page_range__locked). The library is linked BIND_NOW without
// -Bsymbolic, so the dynamic linker resolves those PLT slots in global scope order, the
// executable first: a definition in the executable's dynamic symbol table replaces the
// library's own, for the library itself. The linker (gold, as swiftc drives it on Linux;
// bfd and lld do the same) puts an executable's definition in .dynsym whenever a shared
// library it links against references the name, so every executable that links the
// Machine module -- the CLI and the test runner -- exports both without any flag (`nm -D`
// on both: docs/performance.md), and StoreFix.swift checks at run time that libunicorn's
// calls land here. Nothing is patched, preloaded or rebuilt: the dependency stays
// Debian's library, unmodified.
//
// WHICH VERSIONS. Unicorn 2.0.x (2.0.0 to 2.0.1.post1) has the slow path; this file is for
// them. From 2.1.0 the library's own functions already do what ours do, so the fix is moot:
// if a 2.1 library still exports the symbols and calls them through the PLT, "on" does what
// its own code does and "off" forwards to its no-ops; if it does not, nothing calls these
// definitions. The harness says so rather than guess (Sources/Machine/StoreFix.swift):
// not-applicable for a library that reports 2.1 or later (uc_version) or lacks the symbols
// (Unicorn 1.x, a build with hidden symbols); not-interposed when the symbols exist but a
// probe store does not land here (a -Bsymbolic or LTO build, an executable that does not
// export them). Anything but "on" is the library's stock behaviour.
//
// WHAT CHANGES, AND WHAT DOES NOT. Only the page-collection set is no longer built.
// tb_invalidate_phys_page_fast still runs on every store, with pages == NULL exactly as in
// 2.1: a write into translated code still invalidates the blocks it touches (the code
// bitmap and its threshold unchanged), and a write into the block being executed still
// ends it after the store and re-translates (precise SMC): that path calls
// page_collection_unlock(pages) with our NULL, which the unlock below ignores. TLB and
// dirty handling, every other function, and the engine's state are untouched. Verdicts,
// instruction counts and the whole report minus timings are identical with the fix on and
// off (Tests/HarnessTests/StoreFixTests.swift, for every purgatory this project runs, and a
// self-modifying guest).
//
// ON AND OFF. PURGATORY_HARNESS_STORE_FIX=0 in the environment at start (read once, before
// main) or ph_store_fix_set_enabled(false) turn it off: the lock then forwards to
// libunicorn's original, looked up once with dlsym(RTLD_NEXT, …), so behaviour is exactly
// 2.0.1's. The unlock decides by its argument, not by the flag: NULL can only come from our
// fast path (nothing to free, as in 2.1), anything else came from the original lock and goes
// to the original unlock, so flipping the flag while another thread's engine is between
// lock and unlock is harmless. The bookkeeping per store: a relaxed atomic load and a
// thread-local increment (the calls counted for the probe and the tests).
#define _GNU_SOURCE
#include "store_fix.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// QEMU's types, as far as the ABI goes: struct uc_struct *, tb_page_addr_t (ram_addr_t,
// uintptr_t on a 64-bit host), struct page_collection *.
typedef void *(*lock_fn)(void *uc, uintptr_t start, uintptr_t end);
typedef void (*unlock_fn)(void *set);

static atomic_bool enabled = true;
static bool disabled_by_environment = false;
static _Thread_local uint64_t calls_skipped, calls_forwarded;

static lock_fn original_lock;
static unlock_fn original_unlock;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve_originals(void) {
    // RTLD_NEXT: the next definition after this object (the executable) in search order,
    // i.e. libunicorn's. NULL when the library has no such symbol.
    original_lock = (lock_fn)dlsym(RTLD_NEXT, "page_collection_lock_x86_64");
    original_unlock = (unlock_fn)dlsym(RTLD_NEXT, "page_collection_unlock_x86_64");
}

__attribute__((constructor)) static void read_environment(void) {
    const char *value = getenv("PURGATORY_HARNESS_STORE_FIX");
    if (value != NULL && strcmp(value, "0") == 0) {
        disabled_by_environment = true;
        atomic_store_explicit(&enabled, false, memory_order_relaxed);
    }
    pthread_once(&resolved, resolve_originals);
}

__attribute__((visibility("default"), used))
void *page_collection_lock_x86_64(void *uc, uintptr_t start, uintptr_t end) {
    if (atomic_load_explicit(&enabled, memory_order_relaxed)) {
        calls_skipped++;
        return NULL;
    }
    calls_forwarded++;
    pthread_once(&resolved, resolve_originals);
    // Without an original (impossible while libunicorn is what calls us) 2.1's answer is safe.
    return original_lock != NULL ? original_lock(uc, start, end) : NULL;
}

__attribute__((visibility("default"), used))
void page_collection_unlock_x86_64(void *set) {
    if (set == NULL) return;
    pthread_once(&resolved, resolve_originals);
    if (original_unlock != NULL) original_unlock(set);
}

void ph_store_fix_set_enabled(bool on) { atomic_store_explicit(&enabled, on, memory_order_relaxed); }

bool ph_store_fix_is_enabled(void) { return atomic_load_explicit(&enabled, memory_order_relaxed); }

bool ph_store_fix_disabled_by_environment(void) { return disabled_by_environment; }

ph_store_fix_calls ph_store_fix_calls_on_this_thread(void) {
    return (ph_store_fix_calls){ .skipped = calls_skipped, .forwarded = calls_forwarded };
}

ph_store_fix_binding ph_store_fix_binding_now(void) {
    pthread_once(&resolved, resolve_originals);
    return (ph_store_fix_binding){
        .library_has_lock = original_lock != NULL,
        .library_has_unlock = original_unlock != NULL,
        .lock_resolves_here = dlsym(RTLD_DEFAULT, "page_collection_lock_x86_64") == (void *)page_collection_lock_x86_64,
        .unlock_resolves_here = dlsym(RTLD_DEFAULT, "page_collection_unlock_x86_64") == (void *)page_collection_unlock_x86_64,
    };
}
