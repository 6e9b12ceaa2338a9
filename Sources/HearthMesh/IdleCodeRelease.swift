import Foundation
import HearthCore
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The requests a process is serving, for `IdleCodeRelease`: a gateway counts its API's requests, a node its
/// engines'.
package final class Activity: Sendable {
    private let counts = Mutex((inFlight: 0, begun: UInt64(0), idleSince: ContinuousClock.now))
    /// Rung when a request begins and when the last one in flight ends.
    let changes = ChangeSignal()

    package init() {}

    package func begin() {
        counts.withLock {
            $0.inFlight += 1
            $0.begun &+= 1
        }
        changes.notify()
    }

    package func end() {
        let idle = counts.withLock { counts -> Bool in
            counts.inFlight -= 1
            guard counts.inFlight == 0 else { return false }
            counts.idleSince = .now
            return true
        }
        if idle { changes.notify() }
    }

    /// Requests in flight now.
    package var inFlight: Int { counts.withLock { $0.inFlight } }

    /// Requests in flight, how many have begun so far, and when the last one in flight ended.
    var now: (inFlight: Int, begun: UInt64, idleSince: ContinuousClock.Instant) { counts.withLock { $0 } }
}

/// Gives back the code pages an idle process holds. A started gateway or node had about 48 MiB resident, 42 MiB of
/// it pages of its executable and of the Swift and Foundation libraries mapped from the page cache, while serving
/// touched 11 MiB of them (`/proc/<pid>/smaps` `Referenced`, after `clear_refs`, over a load): the rest was starting up
/// (argument parsing, migrations, keys, Foundation's set-up), and the kernel's fault-around, which maps 64 KiB around
/// every page used. Once the process has had no request for `after`, its executable mappings are dropped from its
/// page tables (`CodePages.release`); what it runs next is mapped again on first use, from the page cache (a minor
/// fault each, no disk read; a few milliseconds on the first request after an idle spell). The pages stay in the
/// cache, where the kernel reclaims them first when memory is short; other processes' mappings are untouched.
///
/// The link's polls (every 5 s) map their own code again: a minute after the release an idle gateway had 23 MiB
/// resident and its node 26 (`bench/README.md`, nineteenth pass; 33 and 31 while only the first 4 KiB of the maps were
/// read). The service waits on `Activity`'s signal, not on a timer: once it has given the pages back it wakes again
/// only after requests have come.
package struct IdleCodeRelease: Service {
    let activity: Activity
    let after: Duration
    /// What giving back is (`CodePages.release`; tests count the calls).
    let release: @Sendable () -> Void

    package init(activity: Activity, after: Duration = .seconds(30), release: @escaping @Sendable () -> Void = { CodePages.release() }) {
        self.activity = activity
        self.after = after
        self.release = release
    }

    package func run() async throws {
        let activity = self.activity
        let release = self.release
        let never = ContinuousClock.now + .seconds(100 * 365 * 86_400)
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await activity.changes.wait(until: never) { activity.now.inFlight == 0 }
                let quiet = activity.now
                try await Task.sleep(until: quiet.idleSince + after)
                let woke = activity.now
                guard woke.inFlight == 0, woke.begun == quiet.begun else { continue }
                release()
                // Nothing more to give back until requests have come again.
                await activity.changes.wait(until: never) { activity.now.begun != quiet.begun }
            }
        }
    }
}

/// This process's executable file mappings, and their release.
package enum CodePages {
    /// A mapping of `/proc/self/maps` that may be dropped.
    package struct Mapping: Equatable {
        package var start: UInt
        package var end: UInt
    }

    /// The private, executable, not writable file mappings among `maps` (the text of `/proc/self/maps`): `r-xp` with a
    /// path, not `[vdso]`. Their pages are never written, so mapping them again gives the same bytes. Writable or
    /// relocated data (`rw-p`, and `r--p`, which holds relocations made read-only after loading) is left alone.
    package static func executable(in maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "r-xp", fields[5].hasPrefix("/") else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start else {
                return nil
            }
            return Mapping(start: start, end: end)
        }
    }

    /// This process's `/proc/self/maps`, read to its end: procfs gives a file of no size, which
    /// `String(contentsOfFile:)` reads once, 4 KiB of a gateway's 13 (its own executable and the first few libraries;
    /// the Swift runtime, Foundation and SQLite were never given back).
    package static func maps() -> String? {
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/maps") else { return nil }
        defer { try? handle.close() }
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Drops this process's executable file mappings from its page tables (`MADV_DONTNEED`); returns the bytes of
    /// address space given back (0 where `/proc` cannot be read).
    @discardableResult
    package static func release() -> Int {
        #if os(Linux)
        guard let maps = maps() else { return 0 }
        var released = 0
        for mapping in executable(in: maps) {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_DONTNEED) == 0 { released += length }
        }
        return released
        #else
        return 0
        #endif
    }
}
