// The store fix's controls, for Sources/Machine/StoreFix.swift (its only user).
//
// The two functions the fix consists of, page_collection_lock_x86_64 and
// page_collection_unlock_x86_64, are deliberately NOT declared here: nothing in
// this project calls them; libunicorn does (see store_fix.c for why and how).
#ifndef PURGATORY_HARNESS_STORE_FIX_H
#define PURGATORY_HARNESS_STORE_FIX_H

#include <stdbool.h>
#include <stdint.h>

/// Whether the interposed page_collection_lock takes Unicorn 2.1's path (true) or
/// forwards to libunicorn's own (false). Process-wide; takes effect at the next guest store.
void ph_store_fix_set_enabled(bool enabled);
bool ph_store_fix_is_enabled(void);

/// True when PURGATORY_HARNESS_STORE_FIX=0 was in the environment at process start
/// (read once, before main).
bool ph_store_fix_disabled_by_environment(void);

/// Calls of the interposed page_collection_lock made on the calling thread so far:
/// answered with NULL (fix on) or forwarded to libunicorn's (fix off). Per thread, so a
/// probe on one thread is not disturbed by engines running on others.
typedef struct {
    uint64_t skipped;
    uint64_t forwarded;
} ph_store_fix_calls;

ph_store_fix_calls ph_store_fix_calls_on_this_thread(void);

/// How the two symbols resolve in this process.
typedef struct {
    /// dlsym(RTLD_NEXT, …) found libunicorn's originals (the library has the symbols).
    bool library_has_lock;
    bool library_has_unlock;
    /// dlsym(RTLD_DEFAULT, …) is the definition in store_fix.c: the executable exports it,
    /// so libunicorn's PLT calls bind to it.
    bool lock_resolves_here;
    bool unlock_resolves_here;
} ph_store_fix_binding;

ph_store_fix_binding ph_store_fix_binding_now(void);

#endif
