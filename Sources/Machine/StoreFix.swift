import CUnicornStoreFix

/// Unicorn 2.0.1's guest-store slow path, removed in this process: Unicorn 2.1's
/// page_collection_lock/unlock, defined in the executable so that libunicorn's own calls bind
/// to them (Sources/CUnicornStoreFix/store_fix.c says why, how, for which versions, and what
/// is and is not changed). Every call into that C target is in this file.
///
/// The fix is on unless PURGATORY_HARNESS_STORE_FIX=0 was set when the process started, or
/// `setEnabled(false)` turned it off. Whether it actually takes effect is checked once, on
/// first use of `status` or `check`: a tiny guest makes one store and the interposed function
/// must see the call.
public enum StoreFix {
    public enum Status: String, Sendable, Codable, CaseIterable {
        /// Interposed and enabled: guest stores take Unicorn 2.1's path.
        case on
        /// Interposed, disabled (PURGATORY_HARNESS_STORE_FIX=0 at start, or `setEnabled(false)`):
        /// every call forwards to the library's own functions, so stores behave as in stock 2.0.1.
        case off
        /// The library has the symbols, but its calls do not reach ours: stock behaviour.
        case notInterposed = "not-interposed"
        /// Nothing to fix: the library reports 2.1 or later (which has the change) or lacks the symbols.
        case notApplicable = "not-applicable"
    }

    /// What the one-time check found.
    public struct Check: Sendable, Equatable {
        /// `uc_version` of the library this process runs with.
        public var unicornVersion: String
        /// dlsym(RTLD_NEXT) found libunicorn's page_collection_lock_x86_64 and _unlock_x86_64.
        public var libraryHasSymbols: Bool
        /// dlsym(RTLD_DEFAULT) resolves both names to this process's definitions.
        public var resolvesHere: Bool
        /// Calls of the interposed page_collection_lock during the probe (a guest run with one store).
        public var probeCalls: UInt64
        /// Why the status is not-interposed or not-applicable; nil when interposed.
        public var problem: String?

        public var applicable: Bool { libraryHasSymbols && !Self.hasTheFixItself(unicornVersion) }
        public var interposed: Bool { applicable && resolvesHere && probeCalls > 0 }

        /// Unicorn 2.1.0 and later ship commit 75d26b77 themselves.
        static func hasTheFixItself(_ version: String) -> Bool {
            let parts = version.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
            return parts.count == 2 && (parts[0], parts[1]) >= (2, 1)
        }
    }

    /// Run once, on first use, on the calling thread (a Swift static: thread-safe).
    public static let check: Check = runCheck()

    /// The state now: `check` decides whether the fix can act at all, the switch whether it does.
    public static var status: Status {
        let check = check
        if !check.applicable { return .notApplicable }
        if !check.interposed { return .notInterposed }
        return isEnabled ? .on : .off
    }

    /// `status` with its reason, for people: "on", "off (PURGATORY_HARNESS_STORE_FIX=0)", …
    public static var statusDescription: String {
        let status = status
        switch status {
        case .on: return "on"
        case .off: return disabledByEnvironment ? "off (PURGATORY_HARNESS_STORE_FIX=0)" : "off (switched off in process)"
        case .notInterposed, .notApplicable: return "\(status.rawValue) (\(check.problem ?? "?"))"
        }
    }

    /// Whether the interposed functions take 2.1's path (when interposed at all).
    public static var isEnabled: Bool { ph_store_fix_is_enabled() }

    /// PURGATORY_HARNESS_STORE_FIX=0 was in the environment when the process started.
    public static var disabledByEnvironment: Bool { ph_store_fix_disabled_by_environment() }

    /// Turns the fix on or off for the whole process, from the next guest store on: for A/B
    /// measurements and tests, between runs. Without effect unless `status` is on or off.
    public static func setEnabled(_ enabled: Bool) { ph_store_fix_set_enabled(enabled) }

    /// Calls of the interposed page_collection_lock made on the calling thread so far.
    public struct Calls: Sendable, Equatable {
        /// Answered with NULL (fix on).
        public var skipped: UInt64
        /// Forwarded to libunicorn's own (fix off).
        public var forwarded: UInt64
        public var total: UInt64 { skipped + forwarded }
        public init(skipped: UInt64, forwarded: UInt64) {
            self.skipped = skipped
            self.forwarded = forwarded
        }
    }

    /// Engines run on the thread that calls `run`, so this counts that thread's guest stores
    /// (the calls, not the stores: Unicorn makes one per store to RAM).
    public static func callsOnThisThread() -> Calls {
        let calls = ph_store_fix_calls_on_this_thread()
        return Calls(skipped: calls.skipped, forwarded: calls.forwarded)
    }

    // MARK: The check

    private static func runCheck() -> Check {
        let binding = ph_store_fix_binding_now()
        var check = Check(unicornVersion: LongModeMachine.unicornVersion,
                          libraryHasSymbols: binding.library_has_lock && binding.library_has_unlock,
                          resolvesHere: binding.lock_resolves_here && binding.unlock_resolves_here,
                          probeCalls: 0, problem: nil)
        if Check.hasTheFixItself(check.unicornVersion) {
            check.problem = "Unicorn \(check.unicornVersion) has the change itself (since 2.1.0)"
            return check
        }
        if !check.libraryHasSymbols {
            check.problem = "libunicorn has no page_collection_lock_x86_64/page_collection_unlock_x86_64"
            return check
        }
        if !check.resolvesHere {
            check.problem = "the executable does not export page_collection_lock_x86_64/page_collection_unlock_x86_64"
            return check
        }
        switch probe() {
        case .success(let calls):
            check.probeCalls = calls
            if calls == 0 { check.problem = "a guest store did not call the interposed page_collection_lock" }
        case .failure(let error):
            check.problem = "the probe run failed: \(error.description)"
        }
        return check
    }

    /// One guest store, `mov byte [0x1800], 0x5a` (rip-relative), in the kexec entry state;
    /// returns the calls of our page_collection_lock the run made on this thread: one for the
    /// store and others for Unicorn's own writes during the run (3 in all with Debian's 2.0.1),
    /// so at least 1 when the interposition works.
    private static func probe() -> Result<UInt64, MachineError> {
        let code: [UInt8] = [0xc6, 0x05, 0xf9, 0x07, 0x00, 0x00, 0x5a]  // at 0x1000; next rip 0x1007
        do throws(MachineError) {
            let machine = try LongModeMachine()
            defer { machine.close() }
            try machine.map("probe", at: 0x1000, size: 0x1000, contents: code)
            let cr3 = try machine.mapWithPageTables("tables", at: 0x2000, size: 0x2000, tablesOffset: 0)
            try machine.setEntryState(cr3: cr3, rip: 0x1000, rsp: 0x1ff8)
            let before = callsOnThisThread()
            let outcome = try machine.run(until: 0x1007, budget: 16)
            let calls = callsOnThisThread().total - before.total
            guard outcome.reason == .reachedSentinel, machine.read(at: 0x1800, count: 1) == [0x5a] else {
                throw MachineError(operation: "store-fix probe", reason: "the one-store guest did not complete (\(outcome.reason))")
            }
            return .success(calls)
        } catch {
            return .failure(error)
        }
    }
}
