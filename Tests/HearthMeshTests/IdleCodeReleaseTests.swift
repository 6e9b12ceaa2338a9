import Foundation
import Synchronization
import Testing

@testable import HearthMesh

/// An idle process gives back its code pages (`IdleCodeRelease`, `CodePages`).
struct IdleCodeReleaseTests {
    @Test func onlyPrivateExecutableFileMappingsAreGivenBack() {
        let maps = """
            55d0c0000000-55d0c0400000 r--p 00000000 08:01 1234   /usr/bin/hearth
            55d0c0400000-55d0c1800000 r-xp 00400000 08:01 1234   /usr/bin/hearth
            55d0c1800000-55d0c1900000 rw-p 01800000 08:01 1234   /usr/bin/hearth
            7f0000000000-7f0000100000 rw-p 00000000 00:00 0
            7f0000200000-7f0000300000 r-xs 00000000 08:01 99     /dev/shm/shared
            7f0000400000-7f0000500000 r-xp 00000000 08:01 77     /usr/lib/libswiftCore.so
            7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0      [vdso]
            7ffd00003000-7ffd00004000 r-xp 00000000 00:00 0
            """
        #expect(
            CodePages.executable(in: maps) == [
                .init(start: 0x55d0_c040_0000, end: 0x55d0_c180_0000), .init(start: 0x7f00_0040_0000, end: 0x7f00_0050_0000),
            ]
        )
    }

    /// In this process: its code is mapped again as it runs, from the same bytes (the test goes on running), and what
    /// was resident of it is no longer (`RssFile` falls).
    @Test func releasingTheCodePagesLowersTheFilePagesResident() throws {
        func fileResident() throws -> Int {
            let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssFile:") })
            return try #require(Int(line.split(separator: " ").dropFirst().first ?? ""))
        }
        let before = try fileResident()
        let released = CodePages.release()
        let after = try fileResident()
        #expect(released > 0)
        #expect(after < before, "RssFile \(before) kB before, \(after) kB after")
    }

    /// Every executable mapping is given back, the last ones listed too: this process's maps (the test runner, its
    /// libraries and the Swift runtime's) are longer than one read of procfs, which used to be all that was read.
    @Test func everyExecutableMappingIsGivenBackHoweverLongTheMaps() throws {
        let maps = try #require(CodePages.maps())
        #expect(maps.utf8.count > 4096, "this process's maps fit in one read: the test proves nothing")
        let mappings = CodePages.executable(in: maps)
        let last = try #require(maps.split(separator: "\n").last { $0.split(separator: " ").dropFirst().first == "r-xp" && $0.contains("/") })
        #expect(mappings.contains { $0.start == UInt(last.prefix { $0 != "-" }, radix: 16) }, "the last executable mapping: \(last)")
        let total = mappings.reduce(0) { $0 + Int($1.end - $1.start) }
        #expect(CodePages.release() == total)
    }

    @Test func givesBackOnceAfterAQuietSpellAndAgainOnlyAfterRequests() async throws {
        let activity = Activity()
        let releases = Atomic<Int>(0)
        let service = IdleCodeRelease(activity: activity, after: .milliseconds(50)) { releases.add(1, ordering: .relaxed) }
        let running = Task { try await service.run() }
        defer { running.cancel() }
        func eventually(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while releases.load(ordering: .relaxed) < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(releases.load(ordering: .relaxed) == count)
        }
        try await eventually(1)
        // A request in flight holds it off, however long it takes (a window for the wrong thing to happen: nothing to
        // wait on, the point is that nothing happens).
        activity.begin()
        try await Task.sleep(for: .milliseconds(400))
        #expect(releases.load(ordering: .relaxed) == 1, "code pages were given back while a request was in flight")
        activity.end()
        try await eventually(2)
        // Idle on, with nothing new to give back: no more.
        try await Task.sleep(for: .milliseconds(400))
        #expect(releases.load(ordering: .relaxed) == 2, "an idle process gave its pages back again without a request between")
        activity.begin()
        activity.end()
        try await eventually(3)
    }
}
