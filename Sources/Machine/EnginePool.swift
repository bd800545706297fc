import CUnicorn
#if canImport(Glibc)
import Glibc
#endif

/// Unicorn engines kept between runs, so that a run of many small placements (a fuzz campaign)
/// does not pay for an engine each time: `uc_open` defers QEMU's machine initialisation (TCG
/// contexts, the 1 GiB code buffer and its first huge page, zeroed by the kernel) to the first
/// `uc_mem_map`, and `uc_close` tears it all down again — together a quarter of a small
/// placement's time (perf, docs/performance.md).
///
/// What makes a recycled engine the same as a fresh one (`LongModeMachine.close`):
/// - every run's hooks are deleted (Unicorn then drops the code translated under them), and
///   each region's translations are dropped again explicitly before it is unmapped; unmapping
///   flushes the TLB entries of every page of the region (the only pages any entry can hold);
/// - the CPU is put back in the state the engine had before its first run: the context saved
///   then (registers, segments, control registers, MSRs, FPU/SSE state) is restored; Unicorn
///   itself clears `halted`, the exit request and the exception index at every start;
/// - only engines whose runs used the same hook types are pooled — exact counting (block,
///   interrupt, invalid-memory and port hooks): a per-instruction hook (`.crossCheck`) or none
///   (`.off`) changes how Unicorn translates code, so those runs use fresh engines;
/// - an engine is closed after `maximumUses` runs, long before its code buffer could fill
///   (QEMU's flush of a full buffer is slow in 2.0.1).
/// `PURGATORY_HARNESS_ENGINE_REUSE=0` at start turns the pool off (a fresh engine every run).
final class EnginePool: @unchecked Sendable {
    struct Engine {
        var handle: OpaquePointer
        /// The CPU as it was before the engine's first run.
        var pristine: OpaquePointer
        var uses: Int
    }

    static let shared = EnginePool()
    static let maximumUses = 256

    private var lock = pthread_mutex_t()
    private var idle: [Engine] = []
    private var on = getenv("PURGATORY_HARNESS_ENGINE_REUSE").map { String(cString: $0) != "0" } ?? true

    /// Whether new machines asking for reuse get pooled engines (on unless
    /// PURGATORY_HARNESS_ENGINE_REUSE=0 at start). Turning it off closes the idle engines.
    var enabled: Bool {
        get {
            pthread_mutex_lock(&lock)
            defer { pthread_mutex_unlock(&lock) }
            return on
        }
        set {
            pthread_mutex_lock(&lock)
            on = newValue
            let closing = newValue ? [] : idle
            if !newValue { idle = [] }
            pthread_mutex_unlock(&lock)
            closing.forEach(Self.close)
        }
    }

    private init() { pthread_mutex_init(&lock, nil) }

    func take() -> Engine? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return idle.popLast()
    }

    func give(_ engine: Engine) {
        pthread_mutex_lock(&lock)
        idle.append(engine)
        pthread_mutex_unlock(&lock)
    }

    /// A new engine with its pristine context saved (this initialises it: the cost the first
    /// uc_mem_map would otherwise pay).
    static func open() throws(MachineError) -> Engine {
        var handle: OpaquePointer?
        let err = uc_open(UC_ARCH_X86, UC_MODE_64, &handle)
        guard err == UC_ERR_OK, let handle else { throw MachineError(operation: "uc_open", reason: LongModeMachine.text(err)) }
        var context: OpaquePointer?
        let err2 = uc_context_alloc(handle, &context)
        guard err2 == UC_ERR_OK, let context, uc_context_save(handle, context) == UC_ERR_OK else {
            if let context { uc_context_free(context) }
            uc_close(handle)
            throw MachineError(operation: "uc_context_save", reason: LongModeMachine.text(err2))
        }
        return Engine(handle: handle, pristine: context, uses: 0)
    }

    static func close(_ engine: Engine) {
        uc_context_free(engine.pristine)
        uc_close(engine.handle)
    }
}
