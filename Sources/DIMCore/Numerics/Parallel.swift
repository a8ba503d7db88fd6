import Foundation

/// Calls `body(range)` on disjoint ranges that cover `0..<count`, on the rank's compute threads
/// (as many as its BLAS threads) when it has several and every range gets at least `grain` items;
/// otherwise once, on this thread, with the whole range. The elementwise passes between GEMMs use
/// it: on one thread they would leave all cores but one idle while the GEMMs use them all. Callers
/// compute every item the same way whatever range it falls in, so results do not depend on the
/// thread count.
public func parallelRanges(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let pieces = min(blasThreads(), count / max(grain, 1))
    guard pieces > 1 else {
        if count > 0 { body(0..<count) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: pieces) { i in
        body((count * i / pieces)..<(count * (i + 1) / pieces))
    }
}

/// Items per range worth a hand-off to another thread, for a pass that touches `floatsPerItem`
/// floats per item: about 64 K floats (a quarter of a megabyte), some tens of microseconds of work.
@inline(__always)
public func parallelGrain(floatsPerItem: Int) -> Int { max(1, (1 << 16) / max(floatsPerItem, 1)) }
